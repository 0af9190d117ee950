"""The Rich + Questionary menu: asks questions, calls ``tradelab.stages``, renders results. Nothing else.

The session has one run profile (``--profile``/``--test`` on the command line, else the default); Stage 1, Stage 2,
evaluation and the loop offer it first and let the user pick another, which then stays the session's. A user error
shows as a panel with the fix and the menu goes on; Ctrl-C during a stage stops it and returns here; tracebacks go to
``logs/app.log`` only.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import questionary
from rich.console import Console

from tradelab import stages
from tradelab.cli import render
from tradelab.cli.parser import days_int, edge_float, positive_int, probe_prompts_int, seed_int, timesteps_int
from tradelab.config import DEFAULT_PROFILE, TradelabConfig, available_profiles
from tradelab.errors import TradelabError
from tradelab.grpo import DEFAULT_ENGINE, ENGINES
from tradelab.handoff import stage2_output
from tradelab.manifest import load_manifest, stage1_of
from tradelab.paths import Workspace

log = logging.getLogger(__name__)

BACK = "← Back"
STAGE2_MODES = {
    "Train": {"dataset_only": False, "dry_run": False},
    "Dataset only": {"dataset_only": True, "dry_run": False},
    "Dry run": {"dataset_only": False, "dry_run": True},
}


class _Back(Exception):
    """The user chose Back or pressed Ctrl-C at a question."""


def _checked(parse: Callable[[str], int], text: str) -> bool | str:
    """questionary's validate: True, or the same message the command line gives for that number."""
    try:
        parse(text)
    except argparse.ArgumentTypeError as exc:
        return str(exc)
    return True


def _ask(question: questionary.Question) -> Any:
    answer = question.ask()
    if answer is None or answer == BACK:
        raise _Back
    return answer


class Menu:
    """One interactive session over a workspace root."""

    def __init__(self, root: str | Path, config_dir: str | Path | None, out: Console,
                 profile: str | None = None) -> None:
        self.root = Path(root)
        self.config_dir = config_dir
        self.out = out
        self.ws = Workspace.at(root)
        self.profile = profile or DEFAULT_PROFILE

    @property
    def config(self) -> TradelabConfig:
        return stages.workspace_config(self.root, self.config_dir, profile=self.profile)

    def ask_profile(self) -> TradelabConfig:
        """Ask which run profile to use (the session's first); the answer becomes the session's. Returns its config."""
        names = available_profiles(stages.workspace_config_dir(self.root, self.config_dir))
        choices = [self.profile, *(n for n in names if n != self.profile)]
        self.profile = _ask(questionary.select("Run profile", choices=[*choices, BACK], default=self.profile))
        config = self.config
        self.out.print(render.profile_line(config), markup=False)
        return config

    def run(self) -> int:
        actions: dict[str, Callable[[], None]] = {
            "Data": self.data_menu, "Training": self.training_menu, "Evaluation": self.evaluation,
            "Learning loop": self.loop, "Status": self.status, "Preflight": self.preflight,
            "Probe an advisor": self.probe,
        }
        self.out.print(f"[bold]tradelab[/bold] — workspace {self.ws.root}, run profile {self.profile}")
        while True:
            choice = questionary.select("Main menu", choices=[*actions, "Exit"]).ask()
            if choice in (None, "Exit"):
                return 0
            self._guarded(actions[choice])

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except _Back:
            return
        except KeyboardInterrupt:
            log.warning("stage interrupted from the menu")
            render.error_panel(self.out, "Stopped. Partial results were saved where the stage supports it.",
                               title="Interrupted")
        except TradelabError as exc:
            log.error("%s: %s", type(exc).__name__, exc, exc_info=exc.__cause__ is not None)
            render.error_panel(self.out, str(exc))
        except Exception as exc:  # keep the menu alive; the traceback goes to the log, never to the screen
            log.exception("unexpected error in the menu")
            render.error_panel(self.out, f"Unexpected {type(exc).__name__}: {exc}\nTraceback: {self.ws.app_log()}")

    # ----------------------------------------------------------------------------------------------------- data
    def data_menu(self) -> None:
        choice = _ask(questionary.select("Data", choices=["Generate sample market", "Import a bar file",
                                                          "List markets", BACK]))
        if choice == "Generate sample market":
            market = _ask(questionary.select("Market", choices=[*self.config.markets.contracts, BACK]))
            days = int(_ask(questionary.text("Trading days", default=str(self.config.app.synthetic_days),
                                             validate=lambda v: _checked(days_int, v))))
            edge = float(_ask(questionary.text("Planted edge (0 = null market, e.g. 0.15)",
                                               default=str(self.config.app.synthetic_edge),
                                               validate=lambda v: _checked(edge_float, v))))
            report = stages.generate_data(self.root, market, days=days, edge=edge, config=self.config)
            self.out.print(render.kv_table(f"{market}: synthetic market", report))
        elif choice == "Import a bar file":
            path = _ask(questionary.path("Bar file (.txt, .csv, .csv.gz, .zip or .parquet; layout detected)"))
            market = _ask(questionary.select("Market", choices=[*self.config.markets.contracts, BACK]))
            session = _ask(questionary.select("Session", choices=["rth", "eth", BACK]))
            report = stages.import_data(self.root, path, market, config=self.config, session=session)
            from tradelab.marketdata.importer import import_summary

            self.out.print(render.kv_table(f"{market}: imported", import_summary(report)))
        else:
            rows = stages.list_data(self.root)
            self.out.print(render.rows_table("Markets", rows) if rows else "No market data yet.")

    # ------------------------------------------------------------------------------------------------- training
    def training_menu(self) -> None:
        choice = _ask(questionary.select("Training", choices=[
            "Phase 3 Stage 1: Hybrid PPO + LoRA LLM", "Phase 3 Stage 2: SofT-GRPO Reasoning", BACK]))
        if choice.startswith("Phase 3 Stage 1"):
            self.stage1()
        else:
            self.stage2()

    def _market(self, markets: list[str], missing_hint: str) -> str:
        if not markets:
            raise TradelabError(missing_hint)
        return _ask(questionary.select("Market", choices=[*markets, BACK]))

    def _stage1_markets(self) -> list[str]:
        sections = {m: stage1_of(load_manifest(self.root, m)) for m in self.ws.markets_with_manifest()}
        return [m for m, section in sections.items() if section is not None and section.status == "completed"]

    def stage1(self) -> None:
        market = self._market(self.ws.markets_with_data(),
                              "No market data yet: Data → Generate sample market (or `python main.py data generate`).")
        config = self.ask_profile()
        timesteps = int(_ask(questionary.text("Timesteps", default=str(config.ppo.total_timesteps),
                                              validate=lambda v: _checked(timesteps_int, v))))
        resume = bool(_ask(questionary.confirm("Resume from the latest checkpoint?", default=False)))
        adapter = None
        output = stage2_output(self.root, market, load_manifest(self.root, market))
        if output is not None:
            what = "adapter" if output.kind == "adapter" else "model, with a fresh adapter"
            choice = _ask(questionary.select("Advisor", choices=[
                "Warm start (config)", f"Stage 2 {what} (soft_grpo)", BACK]))
            adapter = "soft_grpo" if choice.startswith("Stage 2") else None
        with render.progress_bar(self.out, f"Stage 1 {market}: PPO timesteps") as progress:
            summary = stages.stage1(self.root, market, timesteps=timesteps, resume=resume, adapter=adapter,
                                    config=config, progress=progress)
        self.out.print(render.stage1_table(market, summary))
        self.out.print(f"Logs: {self.ws.app_log()}  TensorBoard: {self.ws.stage1_tensorboard_dir(market)}")

    def stage2(self) -> None:
        from tradelab.grpo.engines.registry import get_engine

        market = self._market(self._stage1_markets(),
                              "No market has a completed Stage 1: Training → Phase 3 Stage 1 "
                              "(or `python main.py stage1 --market NQ --test`).")
        config = self.ask_profile()
        mode = _ask(questionary.select("Run", choices=[*STAGE2_MODES, BACK]))
        engine = _ask(questionary.select("Engine", choices=[*ENGINES, BACK], default=DEFAULT_ENGINE))
        rollout_mode = None
        modes = get_engine(engine).rollout_modes
        if len(modes) > 1 and not STAGE2_MODES[mode]["dataset_only"]:
            rollout_mode = _ask(questionary.select("Rollouts", choices=[*modes, BACK]))
        with render.progress_bar(self.out, f"Stage 2 {market} ({engine})") as progress:
            summary = stages.stage2(self.root, market, engine=engine, mode=rollout_mode, config=config,
                                    progress=progress, on_line=lambda line: self.out.print(line, markup=False),
                                    **STAGE2_MODES[mode])
        for table in render.stage2_tables(f"{market} ({mode})", summary):
            self.out.print(table)
        render.print_command(self.out, summary)

    # ----------------------------------------------------------------------------------------- evaluation etc.
    def evaluation(self) -> None:
        market = self._market(self._stage1_markets(), "No market has a completed Stage 1 to evaluate.")
        config = self.ask_profile()
        adapter = _ask(questionary.select("Advisor adapter", choices=["stage1", "soft_grpo", "none", BACK]))
        with render.progress_bar(self.out, f"Evaluation {market}") as progress:
            summary = stages.evaluate(self.root, market, adapter=adapter, config=config, progress=progress)
        table = render.evaluation_table(market, summary)
        if table is not None:
            self.out.print(table)
        self.out.print(f"Report: {summary.report_dir}")

    def loop(self) -> None:
        from tradelab.loop import api as loop_api

        market = self._market(self.ws.markets_with_data(),
                              "No market data yet: Data → Generate sample market (or `python main.py data generate`).")
        config = self.ask_profile()
        iterations = int(_ask(questionary.text("Iterations", default="2",
                                               validate=lambda v: _checked(positive_int, v))))
        engine = _ask(questionary.select("Stage 2 engine", choices=[*ENGINES, BACK], default=DEFAULT_ENGINE))
        with render.progress_bar(self.out, f"Loop {market}") as progress:
            result = loop_api.loop(self.root, market, iterations=iterations, engine=engine, config=config,
                                   progress=progress,
                                   on_event=lambda line: self.out.print(f"→ {line}", markup=False))
        self.out.print(render.loop_table(result["report"]))
        self.out.print(f"Loop report: {result['paths']['json']}")

    def probe(self) -> None:
        market = self._market(self._stage1_markets(), "No market has a completed Stage 1 to probe.")
        config = self.ask_profile()
        adapter = _ask(questionary.select("Advisor adapter", choices=["stage1", "soft_grpo", BACK]))
        prompts = int(_ask(questionary.text("Holdout prompts", default=str(config.evaluation.probe_prompts),
                                            validate=lambda v: _checked(probe_prompts_int, v))))
        seed = int(_ask(questionary.text("Seed of the draw", default=str(config.evaluation.base_seed),
                                         validate=lambda v: _checked(seed_int, v))))
        report = stages.probe(self.root, market, adapter=adapter, prompts=prompts, seed=seed, config=config)
        self.out.print(render.probe_table(report))
        self.out.print(f"Probe report: {report['report_path']}")

    def status(self) -> None:
        for table in render.status_tables(stages.status(self.root)):
            self.out.print(table)

    def preflight(self) -> None:
        markets = self.ws.markets_with_manifest() or self.ws.markets_with_data()
        market = self._market(markets, "No market yet: generate or import data first.")
        engine = _ask(questionary.select("Engine", choices=[*ENGINES, BACK], default=DEFAULT_ENGINE))
        report = stages.preflight(self.root, market, engine=engine, config=self.config)
        self.out.print(render.preflight_table(report))


def run_menu(root: str | Path, config_dir: str | Path | None, out: Console, *, profile: str | None = None) -> int:
    """Open the menu on ``root`` with the run profile ``profile`` (None: the default); returns the exit code when
    the user chooses Exit."""
    return Menu(root, config_dir, out, profile).run()
