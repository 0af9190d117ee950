"""The argparse tree (ARCHITECTURE.md §3). Building it imports nothing heavy.

Numeric flags are checked here, at the boundary, by ``type=`` functions that take their ranges from the config
schema's own field bounds, so ``--days 10000000`` or ``--timesteps -5`` fail before anything is read or written.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from tradelab.grpo import DEFAULT_ENGINE, ENGINES


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises instead of exiting, so the CLI boundary prints one line and returns 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


class UsageError(Exception):
    """A bad command line (unknown option, missing argument)."""


def _field_bounds(model: Any, name: str) -> tuple[int | None, int | None]:
    """``(lowest, highest)`` allowed integer of a config field, from its ``ge``/``gt``/``le``/``lt`` constraints."""
    low = high = None
    for item in model.model_fields[name].metadata:
        if getattr(item, "ge", None) is not None:
            low = int(item.ge)
        if getattr(item, "gt", None) is not None:
            low = int(item.gt) + 1
        if getattr(item, "le", None) is not None:
            high = int(item.le)
        if getattr(item, "lt", None) is not None:
            high = int(item.lt) - 1
    return low, high


def int_in_range(low: int | None, high: int | None, what: str) -> Callable[[str], int]:
    """An argparse ``type=`` that accepts a whole number in ``[low, high]`` (either end open when None).

    Args:
        low: Smallest allowed value, or None.
        high: Largest allowed value, or None.
        what: What the number counts, for the message (e.g. "trading days").
    """
    if low is not None and high is not None:
        allowed = f"from {low} to {high}"
    elif low is not None:
        allowed = f"at least {low}"
    else:
        allowed = f"at most {high}" if high is not None else "any whole number"

    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ({what}: {allowed})") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range ({what}: {allowed})")
        return value

    parse.__name__ = what  # argparse names the type in its own messages
    return parse


def config_int(model: Any, name: str, what: str) -> Callable[[str], int]:
    """:func:`int_in_range` with the bounds the config enforces for ``model.name``."""
    return int_in_range(*_field_bounds(model, name), what)


positive_int = int_in_range(1, None, "a positive whole number")
"""An argparse ``type=`` for counts that must be at least 1."""


def timesteps_int(text: str) -> int:
    """``--timesteps``: environment steps, at least 1 (the bound ``ppo.total_timesteps`` has)."""
    from tradelab.config.stage1_schema import PPOConfig

    return config_int(PPOConfig, "total_timesteps", "environment steps")(text)


def days_int(text: str) -> int:
    """``--days``: trading days to generate, within ``app.synthetic_days``' bounds."""
    from tradelab.config.schema import AppConfig

    return config_int(AppConfig, "synthetic_days", "trading days")(text)


def seed_int(text: str) -> int:
    """``--seed``: a seed, within ``app.seed``'s bounds."""
    from tradelab.config.schema import AppConfig

    return config_int(AppConfig, "seed", "seed")(text)


def episodes_int(text: str) -> int:
    """``--episodes``: holdout episodes per agent and seed, within ``evaluation.episodes``' bounds."""
    from tradelab.config.evaluation_schema import EvaluationConfig

    return config_int(EvaluationConfig, "episodes", "episodes")(text)


def seeds_int(text: str) -> int:
    """``--seeds``: number of evaluation seeds, within ``evaluation.seeds``' bounds."""
    from tradelab.config.evaluation_schema import EvaluationConfig

    return config_int(EvaluationConfig, "seeds", "evaluation seeds")(text)


def walk_forward_windows_int(text: str) -> int:
    """Walk-forward folds, within ``evaluation.walk_forward_windows``' bounds."""
    from tradelab.config.evaluation_schema import EvaluationConfig

    return config_int(EvaluationConfig, "walk_forward_windows", "walk-forward windows")(text)


def probe_prompts_int(text: str) -> int:
    """``--probe-prompts``: holdout prompts the loop measures the advisor on, within the config's bounds."""
    from tradelab.config.evaluation_schema import EvaluationConfig

    return config_int(EvaluationConfig, "probe_prompts", "probe prompts")(text)


def edge_float(text: str) -> float:
    """``--edge``: the planted edge, a finite number in ``app.synthetic_edge``'s range [0, 1]."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (planted edge: from 0 to 1)") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is out of range (planted edge: from 0 to 1; 0 = null market)")
    return value


PROFILE_HELP = ("run profile: a YAML overlay of the config, <config dir>/profiles/NAME.yaml or the shipped one "
                "(smoke, learn-tiny, learn-smollm2, pod; default pod)")


def _add_profile(parser: argparse.ArgumentParser, *, test: str | None = None) -> None:
    """``--profile NAME`` (and ``--test``, the smoke profile) on a subcommand. SUPPRESS keeps the value given before
    the subcommand (``python main.py --profile smoke stage1 ...``) when the flag is not repeated after it."""
    parser.add_argument("--profile", default=argparse.SUPPRESS, metavar="NAME", help=PROFILE_HELP)
    if test is not None:
        parser.add_argument("--test", action="store_true", default=argparse.SUPPRESS, help=test)


def _add_ray(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help=f"fan out on Ray: {what}; ADDRESS = a cluster's HOST:PORT (from `ray start --head`) or "
                             "auto; without ADDRESS a private local instance on 127.0.0.1")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python main.py",
        description="tradelab: research workbench for futures-trading agents. Without a command: the menu.",
    )
    parser.add_argument("--root", default=".", help="workspace root (default: current directory)")
    parser.add_argument("--config-dir", default=None, help="config directory (default: <root>/config or shipped)")
    parser.add_argument("--profile", default=None, metavar="NAME", help=PROFILE_HELP)
    parser.add_argument("--test", action="store_true",
                        help="the smoke profile (= --profile smoke); without a command: the whole pipeline under it, "
                             "non-interactive")
    parser.add_argument("--market", default=None, help="market for --test (default: app.default_market)")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    data = sub.add_parser("data", help="market data: generate, import, list")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    gen = data_sub.add_parser("generate", help="write a seeded synthetic market")
    gen.add_argument("--market", required=True)
    gen.add_argument("--days", type=days_int, default=None, help="trading days (default: app.synthetic_days)")
    gen.add_argument("--seed", type=seed_int, default=None, help="seed (default: app.seed)")
    gen.add_argument("--edge", type=edge_float, default=None,
                     help="planted momentum edge in bar volatilities, 0-1 (default: app.synthetic_edge; 0 = null)")
    gen.add_argument("--force", action="store_true",
                     help="replace bars that a completed Stage 1 was trained on")
    _add_profile(gen)
    from tradelab.marketdata.formats import FORMAT_NAMES

    imp = data_sub.add_parser("import", help="import 1-minute bars: Databento, FirstRate, NinjaTrader, TradeStation, "
                                             "Kibot, Sierra Chart, Barchart, IB or any OHLCV CSV/parquet")
    imp.add_argument("path")
    imp.add_argument("--market", required=True)
    imp.add_argument("--format", choices=FORMAT_NAMES, default=None,
                     help="the file's layout (default: detected from its content)")
    imp.add_argument("--timezone", default=None, metavar="TZ",
                     help="IANA zone of the file's wall times, e.g. America/Chicago (default: the layout's "
                          "documented zone, else America/New_York)")
    imp.add_argument("--stamp", choices=("start", "end"), default=None,
                     help="bars labelled with their open (start) or close (end) time (default: the layout's)")
    imp.add_argument("--session", choices=("rth", "eth"), default="rth",
                     help="rth: regular hours (default); eth: the full Globex session, 18:00-17:00 ET")
    imp.add_argument("--force-timezone", action="store_true",
                     help="import even when the volume self-check says the zone or stamps look wrong")
    imp.add_argument("--force", action="store_true",
                     help="replace bars that a completed Stage 1 was trained on")
    _add_profile(imp)
    data_sub.add_parser("list", help="markets with data: range, rows, source")

    s1 = sub.add_parser("stage1", help="Phase 3 Stage 1: hybrid MaskablePPO + LoRA LLM advisor")
    s1.add_argument("--market", required=True)
    _add_profile(s1, test="the smoke profile: small PPO with the tiny advisor (minutes on a CPU)")
    s1.add_argument("--timesteps", type=timesteps_int, default=None,
                    help="environment steps (default: the profile's ppo.total_timesteps)")
    s1.add_argument("--force", action="store_true",
                    help="start afresh even if that replaces a completed run trained for more timesteps")
    s1.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    s1.add_argument("--init-ppo", default=None, metavar="PATH|last",
                    help="continue training this PPO model (final.zip, vecnormalize.pkl beside it) instead of a "
                         "fresh one; 'last' = the market's own ppo/final.zip")
    s1.add_argument("--adapter", default=None,
                    help="advisor adapter to start from instead of the warm start: a PEFT folder, or 'soft_grpo' "
                         "for what Stage 2 produced (closes the loop; a whole model becomes the base, with a fresh "
                         "adapter)")

    s2 = sub.add_parser("stage2", help="Phase 3 Stage 2: GRPO datasets, preflight and launch")
    s2.add_argument("--market", required=True)
    s2.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                    help=f"Stage 2 engine (default: {DEFAULT_ENGINE})")
    _add_profile(s2, test="the smoke profile: a capped dataset and the engine's smallest run")
    s2.add_argument("--dataset-only", action="store_true", help="export the datasets and stop")
    s2.add_argument("--dry-run", action="store_true", help="preflight and print the exact command; launch nothing")
    s2.add_argument("--mode", choices=("soft", "discrete"), default=None, help="local engine rollout mode")
    s2.add_argument("--resume-from", default=None, help="local engine: checkpoint or run directory")

    pf = sub.add_parser("preflight", help="check the Stage 2 launch environment")
    pf.add_argument("--market", required=True)
    pf.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                    help=f"Stage 2 engine (default: {DEFAULT_ENGINE})")
    pf.add_argument("--dataset-only", action="store_true", help="skip the GPU checks")
    pf.add_argument("--json", action="store_true", help="machine-readable output")
    _add_profile(pf, test="the smoke profile")

    ev = sub.add_parser("evaluate", help="holdout backtests against baselines")
    ev.add_argument("--market", required=True, metavar="MKT[,MKT...]|all",
                    help="market, several separated by commas (one report each), or all markets with bars")
    ev.add_argument("--episodes", type=episodes_int, default=None)
    ev.add_argument("--seeds", type=seeds_int, default=None)
    ev.add_argument("--adapter", choices=("stage1", "soft_grpo", "none"), default="stage1")
    ev.add_argument("--walk-forward", nargs="?", type=int, const=True, default=False, metavar="K",
                    help="also score K purged, embargoed walk-forward folds (K defaults to the config)")
    ev.add_argument("--cost-sweep", action="store_true",
                    help="re-score every agent's trades at 0x, 1x, 2x, 3x commission and slippage")
    _add_ray(ev, "every (market, seed) runs as a Ray task")
    _add_profile(ev, test="the smoke profile: 2 short episodes per seed, 2 seeds")

    lp = sub.add_parser("loop", help="the learning loop: Stage 1 -> Stage 2 -> evaluation, K times, with a report")
    lp.add_argument("--market", required=True, metavar="MKT[,MKT...]|all",
                    help="market, several separated by commas (one loop each), or all markets with bars")
    lp.add_argument("--iterations", type=positive_int, required=True, help="iterations to run (or resume to)")
    lp.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE,
                    help=f"Stage 2 engine (default: {DEFAULT_ENGINE})")
    lp.add_argument("--seeds", type=seeds_int, default=None, help="evaluation seeds per iteration (default: config)")
    _add_profile(lp, test="every stage under the smoke profile")
    lp.add_argument("--probe-prompts", type=probe_prompts_int, default=None,
                    help="holdout prompts the advisor is measured on (default: evaluation.probe_prompts)")
    lp.add_argument("--timesteps", type=timesteps_int, default=None,
                    help="Stage 1 timesteps per iteration (default: config)")
    lp.add_argument("--restart", action="store_true", help="start a new loop even if an unfinished one exists")
    _add_ray(lp, "several markets: each market's loop is a Ray task; one market: each evaluation's seeds are")

    pr = sub.add_parser("probe", help="score an advisor on a fresh draw of holdout prompts, beside the rule and "
                                      "the constant answers")
    pr.add_argument("--market", required=True)
    pr.add_argument("--adapter", default="stage1", metavar="stage1|soft_grpo|DIR",
                    help="Stage 1's adapter, the last Stage 2 output, or a PEFT adapter folder (on Stage 1's base)")
    pr.add_argument("--prompts", type=probe_prompts_int, default=None,
                    help="holdout prompts to draw (default: evaluation.probe_prompts)")
    pr.add_argument("--seed", type=seed_int, default=None,
                    help="seed of the draw (default: evaluation.base_seed, the loop's own draw)")
    _add_profile(pr, test="the smoke profile")

    st = sub.add_parser("status", help="manifests, artifacts and runs per market")
    st.add_argument("--market", default=None)
    st.add_argument("--json", action="store_true")
    return parser
