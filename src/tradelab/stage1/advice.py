"""Advice in the Stage 1 env stack: where it comes from, when envs ask, the risk veto, the observation slots it fills
and the VecEnv wrapper that ties them together, with the counters it logs.

- Slots: the advisor slots at the end of every observation, and the constants the fusion prior reads from them.
- Sources: a small protocol the wrapper calls once per vector step (:class:`LLMAdviceSource` wraps the advisor).
- Triggers and veto (:mod:`tradelab.stage1.triggers`): which envs ask at a vector step, and which entries the
  account's state removes from the mask.
- :class:`AdviceVecEnv`: selective, batched advisor queries written into the observation's slots.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from tradelab.core import ACTION_IDS, ACTIONS
from tradelab.core.parse import Advice
from tradelab.stage1.experience import ExperienceRecorder
from tradelab.stage1.triggers import QueryScheduler, TriggerRules, VetoRules, VetoTracker

N_ACTIONS = len(ACTIONS)
SLOT_SIZE = N_ACTIONS + 2
"""Floats per observation reserved for advice: one-hot×confidence, age in bars, has-advice flag."""
HOLD_ID, BUY_ID, SELL_ID = ACTION_IDS["HOLD"], ACTION_IDS["BUY"], ACTION_IDS["SELL"]
"""Ids the abstention rule needs: HOLD advice while BUY or SELL is allowed carries no view."""
AGE_INDEX = N_ACTIONS
HAS_ADVICE_INDEX = N_ACTIONS + 1
PRIOR_EPS = 1e-6
"""Smallest prior probability of an allowed action, so log(prior) stays finite at confidence 1."""


def encode_slots(action_id: int | None, confidence: float | None, age_bars: int) -> np.ndarray:
    """The slot vector for one env's current advice (all zeros when there is none).

    Args:
        action_id: Advised action id, or None for no advice.
        confidence: Confidence in [0, 1]; None counts as 0 (no usable advice).
        age_bars: Bars since the advice was given.

    Returns:
        float32 array of length :data:`SLOT_SIZE`.
    """
    slots = np.zeros(SLOT_SIZE, dtype=np.float32)
    if action_id is None:
        return slots
    slots[int(action_id)] = float(confidence or 0.0)
    slots[AGE_INDEX] = float(age_bars)
    slots[HAS_ADVICE_INDEX] = 1.0
    return slots


@dataclass(frozen=True)
class AdviceResult:
    """One answered query.

    Attributes:
        messages: The chat messages the prompt was built from.
        response: The raw generated text.
        advice: The parsed advice, flagged by ``check_allowed`` against the decision's mask.
    """

    messages: list[dict[str, str]]
    response: str
    advice: Advice


class AdviceSource(Protocol):
    """Anything that answers a batch of contexts with one call."""

    def advise(self, contexts: Sequence[Mapping[str, Any]]) -> list[AdviceResult]:
        """Answer every context (same order), in one batched call."""
        ...

    def adapter_info(self) -> dict[str, str] | None:
        """``{path, sha256}`` of the adapter producing the answers now, or None for the bare model."""
        ...


class LLMAdviceSource:
    """The LLM advisor behind :class:`AdviceSource`.

    Args:
        advisor: A :class:`tradelab.advisor.generate.Advisor` (prompts, batching, cache and parsing are its own).
    """

    def __init__(self, advisor: Any) -> None:
        self.advisor = advisor

    def advise(self, contexts: Sequence[Mapping[str, Any]]) -> list[AdviceResult]:
        """Answer every context through one ``Advisor.advise`` call."""
        replies = self.advisor.advise(list(contexts))
        return [AdviceResult(list(r.messages), r.text, r.advice) for r in replies]

    def adapter_info(self) -> dict[str, str] | None:
        """The advisor's current adapter path and hash."""
        return self.advisor.adapter


@dataclass
class AdvisorStats:
    """Running totals; :meth:`window` gives the change since the previous call (one TensorBoard point)."""

    steps: int = 0
    decisions: int = 0
    queries: int = 0
    batches: int = 0
    latency_s: float = 0.0
    parse_ok: int = 0
    allowed_ok: int = 0
    agreement: int = 0
    agreement_n: int = 0
    followed: int = 0
    followed_n: int = 0
    vetoes: int = 0
    max_batch: int = 0
    trigger_episode_start: int = 0
    trigger_interval: int = 0
    trigger_position_change: int = 0
    trigger_entropy: int = 0
    trigger_piggyback: int = 0
    trigger_flat_entry: int = 0

    def __post_init__(self) -> None:
        self._mark = self._values()

    def _values(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def window(self) -> dict[str, float]:
        """Rates and counts since the last call, under TensorBoard tag names (``advisor/...``, ``risk/...``)."""
        now = self._values()
        d = {k: now[k] - self._mark[k] for k in now}
        self._mark = now
        return {
            "advisor/queries": d["queries"],
            "advisor/query_rate": _ratio(d["queries"], d["decisions"]),
            "advisor/batch_size_mean": _ratio(d["queries"], d["batches"]),
            "advisor/batch_size_max": self.max_batch,
            "advisor/latency_ms_per_batch": 1000.0 * _ratio(d["latency_s"], d["batches"]),
            "advisor/parse_rate": _ratio(d["parse_ok"], d["queries"]),
            "advisor/allowed_rate": _ratio(d["allowed_ok"], d["queries"]),
            "advisor/agreement_with_argmax": _ratio(d["agreement"], d["agreement_n"]),
            "advisor/followed_rate": _ratio(d["followed"], d["followed_n"]),
            "risk/vetoes": d["vetoes"],
        }

    def summary(self) -> dict[str, Any]:
        """Whole-run figures for the manifest's ``llm_stats`` and ``hybrid_stats``."""
        return {
            "llm_stats": {
                "queries": self.queries,
                "batches": self.batches,
                "mean_batch_size": round(_ratio(self.queries, self.batches), 3),
                "max_batch_size": self.max_batch,
                "mean_latency_ms_per_batch": round(1000.0 * _ratio(self.latency_s, self.batches), 3),
                "total_latency_s": round(self.latency_s, 3),
                "parse_rate": round(_ratio(self.parse_ok, self.queries), 4),
                "allowed_rate": round(_ratio(self.allowed_ok, self.queries), 4),
                "triggers": {
                    "episode_start": self.trigger_episode_start,
                    "interval": self.trigger_interval,
                    "position_change": self.trigger_position_change,
                    "entropy": self.trigger_entropy,
                    "piggyback": self.trigger_piggyback,
                    "flat_entry": self.trigger_flat_entry,
                },
            },
            "hybrid_stats": {
                "decisions": self.decisions,
                "query_rate": round(_ratio(self.queries, self.decisions), 4),
                "agreement_with_argmax": round(_ratio(self.agreement, self.agreement_n), 4),
                "advice_followed_rate": round(_ratio(self.followed, self.followed_n), 4),
                "vetoes": self.vetoes,
            },
        }


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


PolicyProbe = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``(raw_obs, masks) -> (normalised entropy in [0, 1], argmax)`` of the policy's own distribution, per env."""


def closed_trades(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The trades an env step closed (its ``"exit"`` events) as ``{pnl, r_multiple, exit_reason, bars_held}``."""
    return [
        {
            "pnl": float(e["pnl_usd"]),
            "r_multiple": float(e["r_multiple"]),
            "exit_reason": str(e["exit_reason"]),
            "bars_held": int(e["bars_held"]),
        }
        for e in info.get("events") or ()
        if e.get("event") == "exit"
    ]


class AdviceVecEnv(VecEnvWrapper):
    """Adds advisor slots, the risk veto and experience recording to a vector of ``FuturesTradingEnv``.

    Args:
        venv: Vector env of trading envs (each exposes ``action_masks()`` and ``info["market_context"]``).
        source: The advisor; None disables queries (slots stay empty, the veto still applies).
        triggers: Query triggers.
        veto: Risk veto thresholds.
        advice_ttl_bars: Advice older than this is cleared.
        recorder: Receives every query and the steps that resolve it; None records nothing.
    """

    def __init__(
        self,
        venv: VecEnv,
        *,
        source: AdviceSource | None,
        triggers: TriggerRules,
        veto: VetoRules,
        advice_ttl_bars: int,
        recorder: ExperienceRecorder | None = None,
    ) -> None:
        super().__init__(venv)
        self.source = source
        self.scheduler = QueryScheduler(self.num_envs, triggers)
        self.veto = VetoTracker(self.num_envs, veto)
        self.advice_ttl_bars = int(advice_ttl_bars)
        self.recorder = recorder
        self.stats = AdvisorStats()
        self.probe: PolicyProbe | None = None
        self.contexts: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        self.masks = np.ones((self.num_envs, len(ACTIONS)), dtype=bool)
        self.advised: list[int | None] = [None] * self.num_envs
        self.confidence = np.zeros(self.num_envs, dtype=np.float64)
        self.age = np.zeros(self.num_envs, dtype=np.int64)
        self.fresh: list[int | None] = [None] * self.num_envs
        self.last_queries: list[AdviceResult | None] = [None] * self.num_envs

    # --- VecEnv API ----------------------------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Reset every env, clear advice and query all of them (every env starts an episode)."""
        obs = self.venv.reset()
        infos = list(getattr(self.venv, "reset_infos", [{}] * self.num_envs))
        self.contexts = [dict(info.get("market_context") or {}) for info in infos]
        for i in range(self.num_envs):
            self._clear(i)
        return self._after_step(np.asarray(obs), np.ones(self.num_envs, dtype=bool))

    def step_async(self, actions: np.ndarray) -> None:
        """Record what the policy did with the advice it just saw, then step the envs."""
        actions = np.asarray(actions).reshape(-1)
        for i, advised in enumerate(self.fresh):
            if advised is not None:
                self.stats.followed_n += 1
                self.stats.followed += int(actions[i] == advised)
        self.stats.decisions += self.num_envs
        if self.recorder is not None:
            self.recorder.on_actions(actions)
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """Step, resolve experience, age advice, query whoever needs it and write the slots."""
        obs, rewards, dones, infos = self.venv.step_wait()
        reset_infos = getattr(self.venv, "reset_infos", None)
        self.stats.steps += 1
        for i in range(self.num_envs):
            terminal_ctx = infos[i].get("market_context") or {}
            if self.recorder is not None:
                position = terminal_ctx.get("position") or {}
                self.recorder.on_step(
                    i, reward=float(rewards[i]), done=bool(dones[i]), closed_trades=closed_trades(infos[i]),
                    side_after=str(position.get("side", "flat")),
                    unrealized_after=float(position.get("unrealized_pnl", 0.0)),
                )
            if dones[i]:
                terminal = infos[i].get("terminal_observation")
                if terminal is not None:
                    terminal[-SLOT_SIZE:] = self._slots(i, aged=True)
                self._clear(i)
                source_info = reset_infos[i] if reset_infos is not None else infos[i]
                self.contexts[i] = dict(source_info.get("market_context") or terminal_ctx)
            else:
                self.contexts[i] = dict(terminal_ctx)
                self.age[i] += 1
                if self.advised[i] is not None and self.age[i] > self.advice_ttl_bars:
                    self._clear(i)
        return self._after_step(np.asarray(obs), np.asarray(dones, dtype=bool)), rewards, dones, infos

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        """``action_masks`` answers with the vetoed masks; anything else goes to the wrapped envs."""
        if method_name == "action_masks" and not args and not kwargs:
            rows = range(self.num_envs) if indices is None else self._get_indices(indices)
            return [self.masks[i].copy() for i in rows]
        return self.venv.env_method(method_name, *args, indices=indices, **kwargs)

    def _get_indices(self, indices: Any) -> Sequence[int]:
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    # --- internals -----------------------------------------------------------------------------------------------
    def _after_step(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        self._compose_masks(episode_start)
        argmax = None
        if self.probe is not None:
            entropy, argmax = self.probe(self._with_slots(obs), self.masks)
            self.scheduler.set_entropy(entropy)
        sides = [str((ctx.get("position") or {}).get("side", "flat")) for ctx in self.contexts]
        due = self.scheduler.due(sides, list(episode_start), self.masks)
        self.fresh = [None] * self.num_envs
        asking = [i for i, trigger in enumerate(due) if trigger is not None and self.contexts[i]]
        if self.source is not None and asking:
            for i in asking:
                self._count_trigger(due[i])
            self._query(asking, argmax)
        return self._with_slots(obs)

    def _compose_masks(self, episode_start: np.ndarray) -> None:
        raw = self.venv.env_method("action_masks")
        for i in range(self.num_envs):
            mask, reasons = self.veto.apply(i, np.asarray(raw[i], dtype=bool), self.contexts[i] or None,
                                            episode_start=bool(episode_start[i]))
            self.masks[i] = mask
            if reasons:
                self.stats.vetoes += 1
            if self.contexts[i]:
                self.contexts[i]["allowed_actions"] = [ACTIONS[a] for a in np.flatnonzero(mask)]

    def _query(self, asking: list[int], argmax: np.ndarray | None) -> None:
        contexts = [self.contexts[i] for i in asking]
        start = time.perf_counter()
        results = self.source.advise(contexts)  # type: ignore[union-attr]
        self.stats.latency_s += time.perf_counter() - start
        self.stats.batches += 1
        self.stats.queries += len(asking)
        self.stats.max_batch = max(self.stats.max_batch, len(asking))
        self.scheduler.mark_queried(asking)
        adapter = self.source.adapter_info()  # type: ignore[union-attr]
        for i, result in zip(asking, results):
            self._apply(i, result, argmax)
            if self.recorder is not None:
                self.recorder.open_record(
                    i, context=self.contexts[i], messages=result.messages, response=result.response,
                    advice=result.advice.to_dict(), adapter=adapter,
                )

    def _apply(self, i: int, result: AdviceResult, argmax: np.ndarray | None) -> None:
        advice = result.advice
        self.last_queries[i] = result
        self.stats.parse_ok += int(advice.parse_ok)
        if not advice.allowed or advice.action_id is None:
            self._clear(i)
            return
        self.stats.allowed_ok += 1
        self.advised[i] = advice.action_id
        self.confidence[i] = advice.confidence if advice.confidence is not None else 0.0
        self.age[i] = 0
        self.fresh[i] = advice.action_id
        if argmax is not None:
            self.stats.agreement_n += 1
            self.stats.agreement += int(argmax[i] == advice.action_id)

    def _count_trigger(self, trigger: str) -> None:
        name = f"trigger_{trigger}"
        setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _clear(self, i: int) -> None:
        self.advised[i] = None
        self.confidence[i] = 0.0
        self.age[i] = 0

    def _slots(self, i: int, *, aged: bool = False) -> np.ndarray:
        return encode_slots(self.advised[i], self.confidence[i], int(self.age[i]) + int(aged))

    def _with_slots(self, obs: np.ndarray) -> np.ndarray:
        out = np.array(obs, dtype=np.float32, copy=True)
        for i in range(self.num_envs):
            out[i, -SLOT_SIZE:] = self._slots(i)
        return out
