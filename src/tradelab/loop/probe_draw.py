"""One advisor measured on a holdout draw of any size and seed, beside the rule and the constant answers.

The loop measures every adapter on one draw of holdout prompts (``evaluation.probe_prompts`` bars at
``evaluation.base_seed``). A figure of one draw can belong to the draw rather than the advisor: on the null market a
SmolLM2 adapter's balanced hit rate was 0.571 [0.510, 0.630] on the loop's 240 prompts and 0.485 [0.454, 0.515] on
960 others from the same holdout. This module scores an advisor on another draw (another seed, more prompts), with
the best simple rule and each constant answer on the same prompts, so that a figure can be checked before it is
read (``python main.py probe``). Answers and figures go to ``reports/<MARKET>/probe_<stamp>/probe.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import StageNotReady
from tradelab.fileio import atomic_write_json, new_stamped_dir, sha256_dir
from tradelab.handoff import AdvisorModel, adapter_folder, stage1_model
from tradelab.manifest import load_manifest
from tradelab.paths import Workspace

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig

NAMED_ADAPTERS = ("stage1", "soft_grpo")
"""Adapters named instead of given as a folder: Stage 1's, or what the last Stage 2 run produced."""

SUMMARY_KEYS: tuple[str, ...] = (
    "prompts", "directional", "hit_rate", "hit_rate_ci", "hit_rate_up", "hit_rate_down", "balanced_hit_rate",
    "balanced_hit_rate_ci", "holdout_reward", "holdout_reward_ci", "sides_reward", "non_hold_share", "parse_rate",
)
"""The figures kept for every answer set (the per-prompt rewards and actions go to the answers list)."""


def resolve_advisor(root: str | Path, market: str, config: TradelabConfig, adapter: str) -> AdvisorModel:
    """The advisor ``adapter`` names: ``stage1``, ``soft_grpo``, or a PEFT adapter folder on Stage 1's base.

    Raises:
        StageNotReady: The named stage left no advisor, or the folder holds no adapter.
    """
    from tradelab.evaluation.roster import advisor_models

    manifest = load_manifest(root, market)
    if adapter in NAMED_ADAPTERS:
        present = advisor_models(root, market, manifest, config)
        if adapter not in present:
            raise StageNotReady(f"{market}: no {adapter} advisor in {Workspace.at(root).root} (run "
                                f"{'stage1' if adapter == 'stage1' else 'stage2'} --market {market} first, or pass an "
                                "adapter folder)")
        return present[adapter]
    trained = stage1_model(root, market, manifest, config)  # an adapter of this workspace sits on Stage 1's base
    return AdvisorModel(trained.base if trained is not None else None, adapter_folder(adapter))


def probe_draw(root: str | Path, market: str, config: TradelabConfig, *, adapter: str, prompts: int,
               seed: int) -> dict[str, Any]:
    """Score ``adapter`` on ``prompts`` holdout prompts drawn with ``seed``; the rule and constant answers beside.

    Args:
        root: Workspace root.
        market: Market name.
        config: The whole config (its ``evaluation.ci_level`` sets the intervals).
        adapter: ``stage1``, ``soft_grpo`` or a PEFT adapter folder (see :func:`resolve_advisor`).
        prompts: Prompts wanted (fewer when the holdout has fewer flat bars with both entries allowed).
        seed: Seed of the draw; the loop's own draw is ``evaluation.base_seed``.

    Returns:
        The report written to ``probe.json``: origin, the draw, the advisor, and per answer set (``advisor``,
        ``rule``, ``BUY``, ``SELL``, ``HOLD``) the figures of :data:`SUMMARY_KEYS`; ``report_path`` is where it lies.

    Raises:
        StageNotReady: No advisor as named, or a holdout too short for one prompt.
    """
    from tradelab.advisor.generate import Advisor
    from tradelab.config import config_hash
    from tradelab.grpo.baselines import CONSTANT_ACTIONS, constant_answer
    from tradelab.loop.advisor_probe import probe_holdout
    from tradelab.loop.probe import answer_rows, build_probe_set, momentum_rule_answers, score_answers
    from tradelab.provenance import origin

    model = resolve_advisor(root, market, config, adapter)
    arrays, holdout = probe_holdout(root, market, config)
    probe = build_probe_set(root, market, config, arrays, holdout, n_prompts=prompts, seed=seed)
    if len(probe) == 0:
        raise StageNotReady(f"{market}: the holdout is too short for one probe prompt; generate more days")
    level, boot_seed = config.evaluation.ci_level, config.evaluation.base_seed
    texts = Advisor(model.config_for(config), root).generate_texts(probe.messages, seed=config.app.seed)
    answer_sets = {"advisor": texts, "rule": momentum_rule_answers(probe),
                   **{action: [constant_answer(action)] * len(probe) for action in CONSTANT_ACTIONS}}
    scored = {name: score_answers(probe, answers, level=level, seed=boot_seed) for name, answers in answer_sets.items()}
    ws = Workspace.at(root)
    out_dir = new_stamped_dir(ws.reports_dir(market), prefix="probe_")
    report = {
        "origin": origin(config_hash(config), seed, profile=config.profile),
        "market": market, "draw": {"prompts_wanted": prompts, "prompts": len(probe), "seed": seed,
                                   "holdout_start_index": holdout.start_index, "holdout_end_index": holdout.end_index,
                                   "sessions": len(set(probe.session_ids.tolist())),
                                   "up_share": float((probe.moves_points > 0).mean())},
        "advisor": {"description": model.describe(), "adapter_path": ws.record(model.adapter),
                    "adapter_sha256": sha256_dir(model.adapter) if model.adapter is not None else None},
        "figures": {name: {key: figures[key] for key in SUMMARY_KEYS} for name, figures in scored.items()},
        "answers": answer_rows(probe, texts, scored["advisor"]),
    }
    path = out_dir / "probe.json"
    atomic_write_json(path, report)
    return {**report, "report_path": str(path)}
