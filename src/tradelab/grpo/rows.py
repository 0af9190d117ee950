"""What one Stage 2 row is (ARCHITECTURE.md §7): its Arrow schema, and the system turn every prompt opens with."""

from __future__ import annotations

from typing import Any

ABILITY = "trading"
"""The rows' ``ability`` column."""


def row_schema() -> Any:
    """The Arrow schema of a Stage 2 row (ARCHITECTURE.md §7)."""
    import pyarrow as pa

    return pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct([
            ("split", pa.string()), ("index", pa.int64()), ("experience_id", pa.string()),
            ("timestamp", pa.string()), ("market", pa.string()),
        ])),
    ])


def with_reasoning(prompt: list[dict[str, str]], instruction: str | None, system: str) -> list[dict[str, str]]:
    """``prompt`` opening with a system turn (``system``, the advisor's, when it has none) with ``instruction``
    appended to it.

    The soft-thinking fork keeps a rollout in soft mode until ``</think>``; asking for a short reasoning block
    before the answer line makes only that block soft and the answer line discrete. A chat template that adds its
    own default system turn to a conversation without one (SmolLM2's) would otherwise put words in front of the
    advisor's that Stage 1 never showed it. Both texts are fixed, so the prompt stays point-in-time.
    """
    if prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system}, *prompt]
    if not instruction:
        return prompt
    return [{"role": "system", "content": f"{prompt[0]['content'].rstrip()} {instruction}"}, *prompt[1:]]
