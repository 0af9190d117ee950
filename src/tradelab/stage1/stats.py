"""Counters of the advisor's use during Stage 1, logged to TensorBoard next to PPO's own scalars."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


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
