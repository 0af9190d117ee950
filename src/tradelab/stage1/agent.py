"""The trained hybrid agent for evaluation: one env at a time, same veto, triggers and slot filling as training.

>>> agent = HybridAgent.from_workspace(root, "NQ", config, advisor=stage1_model(root, "NQ", manifest, config))
>>> agent.reset()
>>> action, advice = agent.act(obs, info, env.action_masks())
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.core import ACTIONS
from tradelab.errors import StageNotReady
from tradelab.paths import Workspace
from tradelab.stage1.advice import SLOT_SIZE, AdvisorStats, encode_slots
from tradelab.stage1.triggers import QueryScheduler, VetoRules, VetoTracker
from tradelab.stage1.wiring import make_probe, trigger_rules

if TYPE_CHECKING:
    from tradelab.handoff import AdvisorModel


class HybridAgent:
    """PPO (fusion policy) + optional LLM advisor, acting in a single env.

    Args:
        model: The loaded MaskablePPO.
        vecnorm: The training run's observation statistics (a :class:`SlotPreservingVecNormalize` without venv).
        config: The whole config (``stage1`` triggers, veto, TTL).
        advisor: A :class:`tradelab.advisor.generate.Advisor`, or None for PPO alone.
        deterministic: Take the most likely action (True) or sample.
    """

    def __init__(self, model: Any, vecnorm: Any, config: Any, *, advisor: Any | None, deterministic: bool = True
                 ) -> None:
        self.model = model
        self.vecnorm = vecnorm
        self.config = config
        self.advisor = advisor
        self.deterministic = deterministic
        self.veto_rules = VetoRules.from_config(config.stage1.veto)
        self.ttl_bars = int(config.stage1.query.advice_ttl_bars)
        self.scheduler = QueryScheduler(1, trigger_rules(config.stage1))
        self.probe = make_probe(model.policy, vecnorm)
        self.stats = AdvisorStats()
        self.reset()

    @classmethod
    def from_workspace(cls, root: str | Path, market: str, config: Any, *, advisor: AdvisorModel | None,
                       deterministic: bool = True) -> "HybridAgent":
        """Load ``ppo/final.zip`` (its sha256 checked first) + ``ppo/vecnormalize.npz`` (and the advisor).

        Args:
            root: Workspace root.
            market: Market name.
            config: The whole config.
            advisor: The advisor's weights (:func:`tradelab.handoff.stage1_model`, :func:`~tradelab.handoff
                .stage2_model`); None is PPO alone (the advice slots stay empty).
            deterministic: Greedy actions.

        Raises:
            StageNotReady: Stage 1 has not produced a model for this market.
        """
        from sb3_contrib import MaskablePPO

        from tradelab.integrity import verify_sha256
        from tradelab.stage1.vecnorm import load_stats

        ws = Workspace.at(root)
        model_path = ws.ppo_dir(market) / "final.zip"
        stats_path = ws.ppo_dir(market) / "vecnormalize.npz"
        if not stats_path.is_file() and stats_path.with_suffix(".pkl").is_file():
            stats_path = stats_path.with_suffix(".pkl")  # an older run's pickle: load_stats checks its hash
        for path in (model_path, stats_path):
            if not path.is_file():
                raise StageNotReady(f"{path}: missing; run `python main.py stage1 --market {market}` first")
        vecnorm = load_stats(stats_path)
        vecnorm.training = False
        verify_sha256(model_path, fix=f"re-run `python main.py stage1 --market {market}` to write a model it can trust")
        model = MaskablePPO.load(str(model_path), device="cpu")
        loaded = None
        if advisor is not None:
            from tradelab.advisor.generate import Advisor

            loaded = Advisor(advisor.config_for(config), ws.root)
        return cls(model, vecnorm, config, advisor=loaded, deterministic=deterministic)

    def reset(self) -> None:
        """Forget advice and trigger state (call at every episode start)."""
        self.advised: int | None = None
        self.confidence = 0.0
        self.age = 0
        self._episode_start = True
        self.scheduler = QueryScheduler(1, self.scheduler.rules)
        self.veto = VetoTracker(1, self.veto_rules)

    def act(self, obs: np.ndarray, info: dict[str, Any], action_mask: np.ndarray) -> tuple[int, dict | None]:
        """Choose an action at the current bar.

        Args:
            obs: The env's raw observation (advisor slots zero).
            info: The env's info at this bar (``market_context`` is read).
            action_mask: The env's action mask.

        Returns:
            ``(action_id, advice)``: advice is the parsed advice dict (plus ``response``) when the advisor was
            queried at this bar, else None.
        """
        context = dict(info["market_context"])
        mask, reasons = self.veto.apply(0, np.asarray(action_mask, dtype=bool), context,
                                        episode_start=self._episode_start)
        self.stats.vetoes += int(bool(reasons))
        context["allowed_actions"] = [ACTIONS[a] for a in np.flatnonzero(mask)]
        if not self._episode_start:
            self.age += 1
            if self.advised is not None and self.age > self.ttl_bars:
                self.advised, self.confidence, self.age = None, 0.0, 0
        raw = np.asarray(obs, dtype=np.float32).reshape(1, -1).copy()
        raw[0, -SLOT_SIZE:] = encode_slots(self.advised, self.confidence, self.age)
        entropy, _ = self.probe(raw, mask[None])
        self.scheduler.set_entropy(entropy)
        side = str(context["position"]["side"])
        due = self.scheduler.due([side], [self._episode_start], mask[None])[0]
        self._episode_start = False
        advice = None
        if due is not None and self.advisor is not None:
            advice = self._query(context)
            raw[0, -SLOT_SIZE:] = encode_slots(self.advised, self.confidence, self.age)
        normalized = self.vecnorm.normalize_obs(raw)
        action, _ = self.model.policy.predict(normalized, action_masks=mask[None], deterministic=self.deterministic)
        self.stats.decisions += 1
        return int(np.asarray(action).reshape(-1)[0]), advice

    def _query(self, context: dict[str, Any]) -> dict[str, Any]:
        reply = self.advisor.advise([context])[0]
        self.scheduler.mark_queried([0])
        self.stats.queries += 1
        self.stats.batches += 1
        self.stats.parse_ok += int(reply.advice.parse_ok)
        if reply.advice.allowed and reply.advice.action_id is not None:
            self.advised = reply.advice.action_id
            self.confidence = float(reply.advice.confidence or 0.0)
            self.age = 0
        else:
            self.advised, self.confidence, self.age = None, 0.0, 0
        return {**reply.advice.to_dict(), "response": reply.text}
