"""The export's bounded-memory sort: kept rows spilled as sorted runs to temporary Arrow files, then gathered into
parquet parts in global order, one row group per chunk, so memory stays bounded at any experience file size."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.fileio import writing
from tradelab.grpo.rows import ABILITY, row_schema, with_reasoning

if TYPE_CHECKING:
    from tradelab.grpo.export_scan import Candidate

BATCH_ROWS = 256
"""Rows per record batch of a spilled run: what each run holds in memory while the parts are written (all runs
are read side by side, so this times the number of runs is the gather's memory)."""
CHUNK_ROWS = 4096
"""Rows per parquet write (one row group each): a part is written chunk by chunk, never held whole."""


def _spill_schema() -> Any:
    """Columns of a spilled run: what a row needs beyond the constants."""
    import pyarrow as pa

    return pa.schema([("prompt", row_schema().field("prompt").type), ("ground_truth", pa.string()),
                      ("experience_id", pa.string()), ("timestamp", pa.string())])


class Spill:
    """Kept candidates as sorted runs in temporary Arrow IPC files, their sort keys in memory.

    Each run is sorted by (timestamp, id, line) before it is written, so the parts read every run front to back one
    :data:`BATCH_ROWS` batch at a time; the global order is one numpy sort over the keys. The rows are those the
    in-memory export wrote (same prompts, ground truths, order), only never all in memory at once.

    Args:
        folder: A private temporary folder for the run files.
        instruction: ``dataset.reasoning_instruction``, applied to each prompt as it is spilled.
        system: The advisor's system message, for a prompt that has none (:func:`with_reasoning`).
    """

    def __init__(self, folder: Path, instruction: str | None, system: str) -> None:
        self.folder = folder
        self.instruction = instruction
        self.system = system
        self.files: list[Path] = []
        self.sizes: list[int] = []
        self._seconds: list[Any] = []
        self._ids: list[str] = []
        self._lines: list[Any] = []

    def add_run(self, items: list[tuple[tuple[float, str], int, Candidate]]) -> None:
        """Sort ``items`` (``(sort_key, line, candidate)``) and write them as one run (nothing when empty)."""
        import numpy as np
        import pyarrow as pa

        if not items:
            return
        items.sort(key=lambda t: t[:2])
        schema = _spill_schema()
        path = self.folder / f"run{len(self.files):05d}.arrow"
        # Converted BATCH_ROWS at a time: converting a whole run at once would cost several times its size.
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for start in range(0, len(items), BATCH_ROWS):
                part = [c for _, _, c in items[start:start + BATCH_ROWS]]
                writer.write_batch(pa.record_batch([
                    pa.array([with_reasoning(c.prompt, self.instruction, self.system) for c in part],
                             schema.field("prompt").type),
                    pa.array([c.ground_truth for c in part], pa.string()),
                    pa.array([c.experience_id for c in part], pa.string()),
                    pa.array([c.timestamp for c in part], pa.string()),
                ], schema=schema))
        self.files.append(path)
        self.sizes.append(len(items))
        self._seconds.append(np.array([key[0] for key, _, _ in items], dtype=np.float64))
        self._ids.extend(key[1] for key, _, _ in items)
        self._lines.append(np.array([line for _, line, _ in items], dtype=np.int64))

    def order(self) -> Any:
        """Global row numbers (run offset + row in run) sorted by (timestamp, id, line)."""
        import numpy as np

        if not self.sizes:
            return np.zeros(0, dtype=np.int64)
        _, id_rank = np.unique(np.array(self._ids, dtype=object), return_inverse=True)
        return np.lexsort((np.concatenate(self._lines), id_rank.reshape(-1), np.concatenate(self._seconds)))

    def write_part(self, path: Path, rows: Any, split: str, market: str, samples: list[dict[str, Any]],
                   samples_rows: int) -> None:
        """Write the rows ``rows`` (global row numbers, in output order) as the parquet file ``path`` (a temporary
        file the caller moves into place).

        Rows are gathered :data:`CHUNK_ROWS` at a time; each chunk is one row group. The first rows are appended
        to ``samples`` until it holds ``samples_rows``.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = row_schema()
        offsets = np.cumsum([0, *self.sizes])
        readers = [pa.ipc.open_file(pa.OSFile(str(f), "rb")) for f in self.files]
        loaded: dict[int, tuple[int, Any]] = {}

        def batch(run: int, index: int) -> Any:
            if run not in loaded or loaded[run][0] != index:
                loaded[run] = (index, readers[run].get_batch(index))
            return loaded[run][1]

        with writing(path), pq.ParquetWriter(str(path), schema) as writer:
            if len(rows) == 0:
                writer.write_table(schema.empty_table())
            for start in range(0, len(rows), CHUNK_ROWS):
                wanted = np.asarray(rows[start:start + CHUNK_ROWS])
                run_of = np.searchsorted(offsets, wanted, side="right") - 1
                in_run = wanted - offsets[run_of]
                group = run_of * (int(in_run.max()) // BATCH_ROWS + 1) + in_run // BATCH_ROWS
                placed = np.argsort(group, kind="stable")
                pieces = []
                for key in np.unique(group):
                    picked = in_run[group == key]
                    run, index = int(run_of[group == key][0]), int(picked[0]) // BATCH_ROWS
                    pieces.append(batch(run, index).take(pa.array(picked - index * BATCH_ROWS)))
                gathered = pa.Table.from_batches(pieces).take(pa.array(np.argsort(placed))).combine_chunks()
                count = len(gathered)
                extra = pa.StructArray.from_arrays(
                    [pa.array([split] * count, pa.string()),
                     pa.array(np.arange(start, start + count, dtype=np.int64)),
                     gathered["experience_id"].combine_chunks(), gathered["timestamp"].combine_chunks(),
                     pa.array([market] * count, pa.string())],
                    fields=list(schema.field("extra_info").type))
                reward = pa.StructArray.from_arrays(
                    [pa.array(["rule"] * count, pa.string()), gathered["ground_truth"].combine_chunks()],
                    fields=list(schema.field("reward_model").type))
                chunk = pa.Table.from_arrays(
                    [pa.array([f"tradelab/{market}"] * count, pa.string()), gathered["prompt"].combine_chunks(),
                     pa.array([ABILITY] * count, pa.string()), reward, extra], schema=schema)
                if len(samples) < samples_rows:
                    samples.extend(chunk.slice(0, samples_rows - len(samples)).to_pylist())
                writer.write_table(chunk)
