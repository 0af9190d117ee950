"""Which agents an evaluation runs, and how the trained ones are loaded.

Baselines need nothing. ``ppo`` and ``hybrid`` come from Stage 1 (``tradelab.stage1.agent.HybridAgent``), ``hybrid``
and ``advisor`` with the advisor chosen by ``adapter`` (Stage 1's adapter, or what Stage 2 produced: an adapter or a
whole model); when both exist the other one runs too, as ``hybrid_stage1`` or ``hybrid_soft_grpo``. Heavy agents are
loaded once and reused across seeds; the loader is only called when such an agent is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import ConfigError, StageNotReady
from tradelab.evaluation.agents import BASELINES, AdvisorAgent, Agent, advice_to_dict
from tradelab.evaluation.backtest import AgentSpec, EvalSettings
from tradelab.handoff import AdvisorModel, stage1_model, stage2_model
from tradelab.paths import Workspace

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig

ADAPTERS = ("stage1", "soft_grpo", "none")
"""Values of the ``adapter`` argument: which adapter the hybrid and advisor agents use (none: skip them)."""

ADVISOR_AGENTS = ("hybrid", "advisor")


def advisor_models(root: str | Path, market: str, manifest: dict[str, Any] | None,
                   config: TradelabConfig) -> dict[str, AdvisorModel]:
    """The advisors that can be evaluated, by adapter choice.

    ``stage1``: Stage 1's adapter (the manifest's ``stage1.lora_adapter_path`` when recorded, else ``stage1_lora/``)
    on Stage 1's base. ``soft_grpo``: what the last Stage 2 run produced, an adapter on its base or a whole model
    (:func:`tradelab.handoff.stage2_model`). Choices with nothing on disk are left out.
    """
    found = {"stage1": stage1_model(root, market, manifest, config),
             "soft_grpo": stage2_model(root, market, manifest, config)}
    return {name: model for name, model in found.items() if model is not None}


def _cached(load: Callable[[], Agent]) -> Callable[[int], Agent]:
    holder: list[Agent] = []

    def build(seed: int) -> Agent:
        if not holder:
            holder.append(load())
        return holder[0]

    return build


def _hybrid_loader(
    root: str | Path, market: str, config: TradelabConfig, *, model: AdvisorModel | None, deterministic: bool,
) -> Callable[[], Agent]:
    def load() -> Agent:
        from tradelab.stage1.agent import HybridAgent

        return HybridAgent.from_workspace(root, market, config, advisor=model, deterministic=deterministic)

    return load


def _advisor_loader(root: str | Path, config: TradelabConfig, model: AdvisorModel,
                    interval: int) -> Callable[[], Agent]:
    def load() -> Agent:
        from tradelab.advisor.generate import Advisor

        advisor = Advisor(model.config_for(config), root)

        def advise(contexts: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [advice_to_dict(reply.advice) for reply in advisor.advise(contexts)]

        return AdvisorAgent(advise, interval)

    return load


def _weights(model: AdvisorModel) -> str:
    """The folder behind an agent's advice, for the report: its adapter, or the whole model."""
    return str(model.adapter if model.adapter is not None else model.base)


def build_roster(
    root: str | Path, market: str, config: TradelabConfig, settings: EvalSettings, names: Sequence[str],
    manifest: dict[str, Any] | None = None,
) -> tuple[list[AgentSpec], dict[str, str], dict[str, str]]:
    """Agent specs for ``names`` (config order), plus the agents skipped and report aliases.

    Returns:
        ``(specs, skipped, aliases)``: ``skipped`` maps an agent name to why it does not run; ``aliases`` maps a
        report name to the run it is identical to (``hybrid_stage1 -> hybrid`` when both adapters exist).

    Raises:
        StageNotReady: The chosen adapter does not exist.
        ConfigError: ``settings.adapter`` is not one of :data:`ADAPTERS`.
    """
    if settings.adapter not in ADAPTERS:
        raise ConfigError(f"evaluate: adapter = {settings.adapter!r} is unknown; use one of {', '.join(ADAPTERS)}")
    present = advisor_models(root, market, manifest, config)
    wants_llm = any(n in ADVISOR_AGENTS for n in names)
    if settings.adapter != "none" and wants_llm and settings.adapter not in present:
        ws = Workspace.at(root)
        path = ws.stage1_lora_dir(market) if settings.adapter == "stage1" else ws.soft_grpo_output_dir(market)
        raise StageNotReady(
            f"{path}: no {settings.adapter} advisor (no adapter_config.json, no completed Stage 2 run); run "
            f"{'stage1' if settings.adapter == 'stage1' else 'stage2'} --market {market} first, or evaluate with "
            f"--adapter {'stage1' if settings.adapter == 'soft_grpo' else 'none'}"
        )
    specs: list[AgentSpec] = []
    skipped: dict[str, str] = {}
    aliases: dict[str, str] = {}
    det = settings.deterministic_policy
    for name in names:
        if name in BASELINES:
            specs.append(AgentSpec(name, BASELINES[name]))
        elif name == "ppo":
            specs.append(AgentSpec(name, _cached(_hybrid_loader(root, market, config, model=None, deterministic=det)),
                                   has_policy=True))
        elif settings.adapter == "none":
            skipped[name] = "adapter 'none' was chosen: no LLM advisor in this evaluation"
        elif name == "advisor":
            model = present[settings.adapter]
            specs.append(AgentSpec(name, _cached(_advisor_loader(root, config, model,
                                                                 settings.advisor_query_interval_bars)),
                                   uses_advisor=True, adapter_path=_weights(model)))
        elif name == "hybrid":
            specs.extend(_hybrid_specs(root, market, config, settings.adapter, present, det, aliases))
    return specs, skipped, aliases


def _hybrid_specs(
    root: str | Path, market: str, config: TradelabConfig, chosen: str, present: dict[str, AdvisorModel], det: bool,
    aliases: dict[str, str],
) -> list[AgentSpec]:
    order = [chosen] + ([a for a in ("stage1", "soft_grpo") if a != chosen] if len(present) == 2 else [])
    specs = []
    for k, which in enumerate(order):
        name = "hybrid" if k == 0 else f"hybrid_{which}"
        loader = _hybrid_loader(root, market, config, model=present[which], deterministic=det)
        specs.append(AgentSpec(name, _cached(loader), uses_advisor=True, has_policy=True,
                               adapter_path=_weights(present[which])))
    if len(order) == 2:
        aliases[f"hybrid_{chosen}"] = "hybrid"
    return specs
