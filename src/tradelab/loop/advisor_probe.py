"""The loop's holdout probe in use: the prompts (built once per loop run) and the advisor that answers them.

:class:`ProbeContext` measures an advisor (a base model and an adapter) on the holdout prompts of
:mod:`tradelab.loop.probe`, keeps one base model in memory at a time and swaps adapters on it, and writes each
measurement's per-prompt answers to ``answers/<label>.jsonl`` beside the loop report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import StageNotReady
from tradelab.fileio import atomic_write_text, sha256_dir, sha256_file
from tradelab.handoff import AdvisorModel, stage1_model
from tradelab.manifest import load_manifest
from tradelab.manifest_schema import LoopIteration, LoopSettings, data_of
from tradelab.paths import Workspace

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig
    from tradelab.evaluation.starts import Window
    from tradelab.loop.probe import ProbeSet
    from tradelab.marketdata.arrays import MarketArrays


def probe_holdout(root: str | Path, market: str, config: TradelabConfig) -> tuple[MarketArrays, Window]:
    """The arrays and the holdout window probe prompts are drawn from: the holdout the manifest's data section
    recorded (checked against the bars on disk), else the split the config gives the bars."""
    from tradelab.evaluation.holdout import holdout_arrays
    from tradelab.evaluation.starts import Window
    from tradelab.marketdata import load_market_arrays

    arrays = load_market_arrays(root, market, config)
    manifest = load_manifest(root, market)
    if data_of(manifest) is not None:
        return holdout_arrays(root, market, manifest, arrays)
    return arrays, Window(0, int(arrays.split_index), len(arrays))


class ProbeContext:
    """The holdout prompts (built once) and the advisor that answers them (loaded once per base, adapters swapped)."""

    def __init__(self, root: str | Path, market: str, config: TradelabConfig, settings: LoopSettings,
                 report_dir: Path) -> None:
        self.root, self.market, self.config, self.settings = root, market, config, settings
        self.answers_dir = report_dir / "answers"
        self._probe: ProbeSet | None = None
        self._advisor: Any = None
        self._base: Path | None = None

    def warm_adapter(self) -> Path:
        """The adapter iteration 1 starts from (``llm.adapter_path``, else the warm start, built if missing)."""
        from tradelab.stage1.wiring import initial_adapter

        return initial_adapter(Workspace.at(self.root).root, self.market, self.config, seed=self.config.app.seed,
                               resume=False)

    def stage1_model(self, iteration: LoopIteration) -> AdvisorModel:
        """The advisor an iteration's Stage 1 left: ``stage1_lora`` on the base it trained on."""
        ws = Workspace.at(self.root)
        model = stage1_model(self.root, self.market, load_manifest(self.root, self.market), self.config)
        return model if model is not None else AdvisorModel(ws.resolve(iteration.base_in_path),
                                                            ws.stage1_lora_dir(self.market))

    def probe(self) -> ProbeSet:
        if self._probe is None:
            from tradelab.loop.probe import build_probe_set

            arrays, holdout = probe_holdout(self.root, self.market, self.config)
            self._probe = build_probe_set(self.root, self.market, self.config, arrays, holdout,
                                          n_prompts=self.settings.probe_prompts, seed=self.config.evaluation.base_seed)
            if len(self._probe) == 0:
                raise StageNotReady(f"{self.market}: the holdout is too short for one probe prompt; generate more "
                                    "days (e.g. `data generate --days 60`)")
        return self._probe

    def _answers(self, model: AdvisorModel) -> list[str]:
        from tradelab.advisor.generate import Advisor

        if self._advisor is None or model.base != self._base:
            self._advisor = None  # one base model in memory at a time
            self._advisor = Advisor(model.config_for(self.config), self.root)
            self._base = model.base
        else:
            self._advisor.set_adapter(model.adapter)
        return self._advisor.generate_texts(self.probe().messages, seed=self.config.app.seed)

    def measure(self, model: AdvisorModel, label: str) -> dict[str, Any]:
        """The advisor figures of ``model`` on the holdout prompts; its answers go to ``answers/<label>.jsonl``."""
        from tradelab.loop.probe import score_answers

        texts = self._answers(model)
        figures = score_answers(self.probe(), texts, level=self.config.evaluation.ci_level,
                                seed=self.config.evaluation.base_seed)
        return self._kept(figures, texts, model, label)

    def _kept(self, figures: dict[str, Any], texts: list[str], model: AdvisorModel, label: str) -> dict[str, Any]:
        """The summary figures for the manifest; the per-prompt answers, actions and rewards go to a JSONL."""
        import json

        from tradelab.loop.probe import answer_rows

        rows = answer_rows(self.probe(), texts, figures)
        path = self.answers_dir / f"{label}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
        summary = {k: v for k, v in figures.items() if k not in ("rewards", "actions")}
        ws = Workspace.at(self.root)
        weights = model.adapter if model.adapter is not None else model.base
        return {**summary, "adapter_sha256": sha256_dir(model.adapter) if model.adapter is not None else None,
                "weights_path": ws.record(weights), "answers_path": ws.record(path)}

    def measure_pair(self, before: AdvisorModel, after: AdvisorModel,
                     label: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Figures of ``after``, and how it differs from ``before`` on the same prompts.

        The comparison proves the second advisor reached the probe: the share of changed answers, the paired reward
        gain with a day-block interval, and the mean absolute change in log-probability of ``before``'s own
        answers.
        """
        import numpy as np

        from tradelab.loop.probe import answer_logprobs, day_bootstrap_ci, score_answers

        probe = self.probe()
        level, seed = self.config.evaluation.ci_level, self.config.evaluation.base_seed
        before_texts = self._answers(before)
        before_figures = score_answers(probe, before_texts, level=level, seed=seed)
        before_logp = answer_logprobs(self._advisor, probe.messages, before_texts)
        after_texts = self._answers(after)
        after_figures = score_answers(probe, after_texts, level=level, seed=seed)
        after_logp = answer_logprobs(self._advisor, probe.messages, before_texts)
        gain = np.asarray(after_figures["rewards"]) - np.asarray(before_figures["rewards"])
        interval = day_bootstrap_ci(gain, probe.session_ids, level=level, seed=seed)
        shift = np.abs(np.asarray(after_logp) - np.asarray(before_logp))
        same = before.base == after.base and before.adapter is not None and after.adapter is not None \
            and _weights_sha256(before.adapter) == _weights_sha256(after.adapter)
        comparison = {
            "reward_gain": float(gain.mean()),
            "reward_gain_ci": [float(interval[0]), float(interval[1])] if interval else None,
            "answers_changed": float(np.mean([a != b for a, b in zip(after_texts, before_texts)])),
            "logprob_shift_mean": float(np.nanmean(shift)) if shift.size else None,
            "same_adapter": same,
        }
        return self._kept(after_figures, after_texts, after, label), comparison


def _weights_sha256(adapter: Path) -> str:
    """The adapter's weights file's sha256 (the folder's when it has none): an engine that hands back the adapter it
    started from writes its own README and config beside the same weights."""
    weights = Path(adapter) / "adapter_model.safetensors"
    return sha256_file(weights) if weights.is_file() else sha256_dir(adapter)
