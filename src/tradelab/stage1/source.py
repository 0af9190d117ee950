"""Where advice comes from: a small protocol the VecEnv wrapper calls once per vector step.

:class:`LLMAdviceSource` adapts :class:`tradelab.advisor.generate.Advisor` (one batched ``generate`` per call);
tests and benchmarks can pass any object with the same two members. Pure Python (the advisor loads lazily).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tradelab.core.parse import Advice


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
