"""The Stage 2 export at a realistic buffer size: a 1,000,000-record experience file to verl parquet.

1. A pool of real experience records: the real NQ env (generated market) walked with random allowed actions, a
   query every few bars through :class:`tradelab.stage1.experience.ExperienceRecorder` (messages from the real prompt
   builder, the rule teacher's answer as the response), resolved by the env's own steps and appended by the
   recorder.
2. The big file: ``--records`` records appended through :func:`tradelab.fileio.append_jsonl`, the writer the
   recorder flushes with. Each is a pool record under a fresh id and run id, so the file holds several runs over the
   same bars, as a ``loop`` leaves it. The first and last 2% go in Stage 1's batches
   (``stage1.experience.flush_every_records``, one fsync each) and their records/s are printed: the append must
   not slow as the file grows. The middle is written from per-record templates (same text) to keep the bench short.
3. Resume's read: the experience count a Stage 1 start and end record in the manifest
   (:func:`tradelab.stage1.experience_count.count_experience_file`), first without an index (the whole file), then
   after one more batch (the tail only), with the bytes each read.
4. The export: :func:`tradelab.grpo.dataset.export_dataset` with the shipped config, timed, in a child process whose
   peak resident set is read back (``ru_maxrss``), so the bench's own memory does not count.

The headline ``export_1m_s`` (last line) is the export's wall time, whatever ``--records`` is. ``--smoke`` runs
300 records (the CI check that the bench still runs; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

MARKET = "NQ"
POOL_RECORDS = 4000
EDGE_FRACTION = 0.02
"""Share of the records appended, and timed, in Stage 1's batch size at the start and at the end of the file."""
FILL_BATCH = 8192
"""Records per write for the untimed middle of the file."""


def build_pool(root: Path, config: Any, *, n_records: int, seed: int) -> list[dict[str, Any]]:
    """Real experience records from the real env, written by the recorder; returned as parsed from its file."""
    from tradelab.advisor.parse import parse_advice
    from tradelab.advisor.prompts import build_messages
    from tradelab.advisor.teacher import teacher_response
    from tradelab.env import make_env
    from tradelab.env.tables import get_tables
    from tradelab.marketdata import generate_market, load_market_arrays
    from tradelab.markets import contract_spec
    from tradelab.stage1.advice import closed_trades
    from tradelab.stage1.experience import ExperienceRecorder, ForwardSlicer

    generate_market(root, MARKET, config, days=60, seed=seed)
    arrays = load_market_arrays(root, MARKET, config)
    env = make_env(MARKET, root, split="train", seed=seed, config=config, arrays=arrays)
    spec, rules_cfg = contract_spec(config, MARKET), config.env.rules
    tables = get_tables(arrays, window_bars=config.env.window_bars, entry_cutoff=rules_cfg.entry_cutoff,
                        flatten_time=rules_cfg.flatten_time, session_end=spec.session_end)
    slicer = ForwardSlicer(arrays, env.split_bounds[1], config.env.forward_horizon_bars, tables.forced_exit)
    contract = {k: float(getattr(spec, k)) for k in ("tick_size", "tick_value", "point_value",
                                                      "commission_per_side", "slippage_ticks")}
    rules = {"stop_atr": rules_cfg.stop_atr, "target_r": rules_cfg.target_r, "trail_atr": rules_cfg.trail_atr,
             "be_buffer_ticks": rules_cfg.be_buffer_ticks, "flatten_time": rules_cfg.flatten_time}
    pool_path = root / "pool.jsonl"
    recorder = ExperienceRecorder(pool_path, market=MARKET, run_id="pool", slicer=slicer, contract=contract,
                                  rules=rules, flush_every=config.stage1.experience.flush_every_records,
                                  recent_maxlen=16)
    rng = np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    while recorder.written < n_records:  # the recorder appends every flush_every resolved records
        context = info["market_context"]
        if rng.random() < 0.25:
            response = teacher_response(context)
            recorder.open_record(0, context=context, messages=build_messages(context, config), response=response,
                                 advice=parse_advice(response).to_dict(), adapter={"path": "bench", "sha256": "0"})
        allowed = np.flatnonzero(env.action_masks())
        action = int(rng.choice(allowed)) if rng.random() < 0.2 else 0
        recorder.on_actions(np.array([action]))
        _, reward, terminated, truncated, info = env.step(action)
        done = bool(terminated or truncated)
        position = info.get("position") or info["market_context"]["position"]
        recorder.on_step(0, reward=float(reward), done=done, closed_trades=closed_trades(info),
                         side_after=str(position.get("side", "flat")),
                         unrealized_after=float(position.get("unrealized_pnl", 0.0)))
        if done:
            _, info = env.reset()
    recorder.flush()
    with open(pool_path, "rb") as fh:
        return [json.loads(line) for line in fh]


def _chunk(pool: list[dict[str, Any]], first: int, count: int) -> list[dict[str, Any]]:
    """Pool records ``first .. first+count`` under fresh ids: record ``seq`` is pool record ``seq % len(pool)`` of run
    ``seq // len(pool)``."""
    per_run = len(pool)
    chunk = []
    for seq in range(first, first + count):
        run_id = f"s1-{MARKET}-bench{seq // per_run:04d}"
        record = dict(pool[seq % per_run])
        record["id"] = f"{run_id}-{seq % per_run + 1:07d}"
        record["run_id"] = run_id
        chunk.append(record)
    return chunk


def _timed_appends(path: Path, pool: list[dict[str, Any]], first: int, count: int, batch: int) -> float:
    """Append ``count`` records in batches of ``batch``; seconds spent inside :func:`append_jsonl` only."""
    from tradelab.fileio import append_jsonl

    spent = 0.0
    for start in range(first, first + count, batch):
        chunk = _chunk(pool, start, min(batch, first + count - start))
        t0 = time.perf_counter()
        append_jsonl(path, chunk)
        spent += time.perf_counter() - t0
    return spent


def _fill(path: Path, pool: list[dict[str, Any]], first: int, count: int) -> float:
    """Append ``count`` records fast, for the untimed middle of the file: each pool record is serialised once, as
    :func:`append_jsonl` does, and only its id and run id are substituted per line (checked against the writer's
    own text on the first line). Returns the seconds spent."""
    per_run = len(pool)
    templates = []
    for record in pool:
        line = json.dumps({**record, "id": "@@ID@@", "run_id": "@@RUN@@"}, separators=(",", ":"), default=str)
        templates.append(line + "\n")
    expected = json.dumps(_chunk(pool, first, 1)[0], separators=(",", ":"), default=str) + "\n"
    started = time.perf_counter()
    with open(path, "ab") as fh:
        for start in range(first, first + count, FILL_BATCH):
            lines = []
            for seq in range(start, min(start + FILL_BATCH, first + count)):
                run_id = f"s1-{MARKET}-bench{seq // per_run:04d}"
                line = templates[seq % per_run].replace("@@RUN@@", run_id, 1)
                lines.append(line.replace("@@ID@@", f"{run_id}-{seq % per_run + 1:07d}", 1))
            if start == first and lines and lines[0] != expected:
                raise AssertionError("the fill's text differs from append_jsonl's")
            fh.write("".join(lines).encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())  # so the timed appends after it do not pay for flushing the fill
    return time.perf_counter() - started


def append_records(path: Path, pool: list[dict[str, Any]], *, records: int, batch: int) -> dict[str, float]:
    """Append ``records`` records: the first and last :data:`EDGE_FRACTION` through :func:`append_jsonl` in Stage 1's
    batches (each appended, fsynced batch timed); the middle by :func:`_fill`, to keep the bench short (an append's
    cost does not depend on what is already in the file, which the two timed ends show)."""
    edge = max(batch, int(records * EDGE_FRACTION) // batch * batch)
    edge = min(edge, records // 2)
    started = time.perf_counter()
    first_s = _timed_appends(path, pool, 0, edge, batch)
    middle = records - 2 * edge
    fill_s = _fill(path, pool, edge, middle)
    last_s = _timed_appends(path, pool, edge + middle, edge, batch)
    return {"records": records, "total_s": time.perf_counter() - started, "edge_records": edge,
            "start_rps": edge / first_s, "end_rps": edge / last_s, "fill_rps": middle / fill_s if middle else 0.0,
            "bytes": path.stat().st_size}


def _child_export(root: str) -> None:
    """Run in a child process: export, then print the wall time and this process's peak RSS as JSON."""
    from tradelab.config import load_config
    from tradelab.grpo.dataset import export_dataset

    config = load_config()
    started = time.perf_counter()
    meta = export_dataset(root, MARKET, config)
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = usage.ru_maxrss / 1024
    print(json.dumps({"export_s": elapsed, "peak_rss_mb": peak_mb, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "counts": meta["counts"],
                      "files": {k: v["rows"] for k, v in meta["files"].items()}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="experience records in the file")
    parser.add_argument("--keep", action="store_true", help="keep the workspace (its path is printed)")
    parser.add_argument("--child-export", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.records = 300
    if args.child_export:
        _child_export(args.child_export)
        return

    from tradelab.config import load_config
    from tradelab.paths import Workspace
    from tradelab.stage1.experience_count import count_experience_file

    config = load_config()
    tmp = tempfile.mkdtemp(prefix="export_scale_")
    root = Path(tmp)
    t0 = time.perf_counter()
    pool = build_pool(root, config, n_records=min(POOL_RECORDS, args.records), seed=11)
    print(f"pool_records={len(pool)} pool_build_s={time.perf_counter() - t0:.1f} "
          f"mean_record_bytes={os.path.getsize(root / 'pool.jsonl') / len(pool):.0f}")

    path = Workspace.at(root).experience_path(MARKET)
    batch = config.stage1.experience.flush_every_records
    app = append_records(path, pool, records=args.records, batch=batch)
    print(f"append_records={app['records']} append_total_s={app['total_s']:.1f} file_mb={app['bytes'] / 1e6:.0f} "
          f"(middle {app['records'] - 2 * app['edge_records']} by template: {app['fill_rps']:.0f} records/s)")
    print(f"append_start_records_per_s={app['start_rps']:.0f} (first {app['edge_records']}, batches of {batch}, "
          f"fsync each)")
    print(f"append_end_records_per_s={app['end_rps']:.0f} (last {app['edge_records']}, batches of {batch}, "
          f"fsync each)")

    t0 = time.perf_counter()
    cold = count_experience_file(path)
    cold_s = time.perf_counter() - t0
    _timed_appends(path, pool, args.records, batch, batch)
    t0 = time.perf_counter()
    warm = count_experience_file(path)
    warm_s = time.perf_counter() - t0
    print(f"resume_count_first_s={cold_s:.2f} read_mb={cold.bytes_read / 1e6:.0f} records={cold.records} "
          f"(no index yet: the whole file)")
    print(f"resume_count_after_one_batch_s={warm_s:.4f} read_kb={warm.bytes_read / 1e3:.0f} "
          f"records={warm.records} (the appended tail only)")

    out = subprocess.run([sys.executable, __file__, "--child-export", str(root)], check=True, capture_output=True,
                         text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"export_rows_train={result['files']['train']} export_rows_val={result['files']['val']} "
          f"kept={result['counts']['kept']} lines={result['counts']['lines']}")
    print(f"export_peak_rss_mb={result['peak_rss_mb']:.0f}")
    print(f"export_cpu_s={result['cpu_s']:.1f} (the export process's user+sys CPU, imports included; the wall time "
          f"below is longer when the machine is shared)")
    if args.keep:
        print(f"workspace={root}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    print(f"export_1m_s={result['export_s']:.2f}")


if __name__ == "__main__":
    main()
