"""The argparse tree (ARCHITECTURE.md §3). Building it imports nothing heavy."""

from __future__ import annotations

import argparse

from tradelab.grpo import ENGINES


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises instead of exiting, so the CLI boundary prints one line and returns 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


class UsageError(Exception):
    """A bad command line (unknown option, missing argument)."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python main.py",
        description="tradelab: research workbench for futures-trading agents. Without a command: the menu.",
    )
    parser.add_argument("--root", default=".", help="workspace root (default: current directory)")
    parser.add_argument("--config-dir", default=None, help="config directory (default: <root>/config or shipped)")
    parser.add_argument("--test", action="store_true", help="run the whole pipeline in test mode, non-interactive")
    parser.add_argument("--market", default=None, help="market for --test (default: app.default_market)")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    data = sub.add_parser("data", help="market data: generate, import, list")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    gen = data_sub.add_parser("generate", help="write a seeded synthetic market")
    gen.add_argument("--market", required=True)
    gen.add_argument("--days", type=int, default=None, help="trading days (default: app.synthetic_days)")
    gen.add_argument("--seed", type=int, default=None, help="seed (default: app.seed)")
    gen.add_argument("--edge", type=float, default=None,
                     help="planted momentum edge in bar volatilities, 0-1 (default: app.synthetic_edge; 0 = null)")
    imp = data_sub.add_parser("import", help="import a Databento GLBX OHLCV-1m export or an OHLCV CSV/parquet")
    imp.add_argument("path")
    imp.add_argument("--market", required=True)
    data_sub.add_parser("list", help="markets with data: range, rows, source")

    s1 = sub.add_parser("stage1", help="Phase 3 Stage 1: hybrid MaskablePPO + LoRA LLM advisor")
    s1.add_argument("--market", required=True)
    s1.add_argument("--test", action="store_true", help="small PPO with the tiny advisor (minutes on a CPU)")
    s1.add_argument("--timesteps", type=int, default=None)
    s1.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    s1.add_argument("--init-ppo", default=None, metavar="PATH|last",
                    help="continue training this PPO model (final.zip, vecnormalize.pkl beside it) instead of a "
                         "fresh one; 'last' = the market's own ppo/final.zip")
    s1.add_argument("--adapter", default=None,
                    help="advisor adapter to start from instead of the warm start: a PEFT folder, or 'soft_grpo' "
                         "for the Stage 2 adapter (closes the loop)")

    s2 = sub.add_parser("stage2", help="Phase 3 Stage 2: GRPO datasets, preflight and launch")
    s2.add_argument("--market", required=True)
    s2.add_argument("--engine", choices=ENGINES, default="verl")
    s2.add_argument("--test", action="store_true", help="apply the engine's test overrides")
    s2.add_argument("--dataset-only", action="store_true", help="export the datasets and stop")
    s2.add_argument("--dry-run", action="store_true", help="preflight and print the exact command; launch nothing")
    s2.add_argument("--mode", choices=("soft", "discrete"), default=None, help="local engine rollout mode")
    s2.add_argument("--resume-from", default=None, help="local engine: checkpoint or run directory")

    pf = sub.add_parser("preflight", help="check the Stage 2 launch environment")
    pf.add_argument("--market", required=True)
    pf.add_argument("--engine", choices=ENGINES, default="verl")
    pf.add_argument("--dataset-only", action="store_true", help="skip the GPU checks")
    pf.add_argument("--json", action="store_true", help="machine-readable output")

    ev = sub.add_parser("evaluate", help="holdout backtests against baselines")
    ev.add_argument("--market", required=True)
    ev.add_argument("--episodes", type=int, default=None)
    ev.add_argument("--seeds", type=int, default=None)
    ev.add_argument("--adapter", choices=("stage1", "soft_grpo", "none"), default="stage1")
    ev.add_argument("--walk-forward", nargs="?", type=int, const=True, default=False, metavar="K",
                    help="also score K purged, embargoed walk-forward folds (K defaults to the config)")
    ev.add_argument("--cost-sweep", action="store_true",
                    help="re-score every agent's trades at 0x, 1x, 2x, 3x commission and slippage")

    lp = sub.add_parser("loop", help="the learning loop: Stage 1 -> Stage 2 -> evaluation, K times, with a report")
    lp.add_argument("--market", required=True)
    lp.add_argument("--iterations", type=int, required=True, help="iterations to run (or resume to)")
    lp.add_argument("--engine", choices=ENGINES, default="local", help="Stage 2 engine (default: local)")
    lp.add_argument("--seeds", type=int, default=None, help="evaluation seeds per iteration (default: config)")
    lp.add_argument("--test", action="store_true", help="every stage in test mode")
    lp.add_argument("--probe-prompts", type=int, default=None,
                    help="holdout prompts the advisor is measured on (default: evaluation.probe_prompts)")
    lp.add_argument("--timesteps", type=int, default=None, help="Stage 1 timesteps per iteration (default: config)")
    lp.add_argument("--restart", action="store_true", help="start a new loop even if an unfinished one exists")

    st = sub.add_parser("status", help="manifests, artifacts and runs per market")
    st.add_argument("--market", default=None)
    st.add_argument("--json", action="store_true")
    return parser
