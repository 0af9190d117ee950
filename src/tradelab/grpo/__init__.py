"""Phase 3 Stage 2: GRPO dataset export, the verifiable trading reward, preflight and the engine runner.

Nothing heavy is imported here: :mod:`tradelab.grpo.reward` must import under a bare Python with only numpy, and the
dataset / preflight / runner modules pull pyarrow and subprocess machinery only when used.
"""

ENGINES: tuple[str, ...] = ("verl", "soft-grpo", "local")
"""Stage 2 engines: PyPI verl with LoRA, the SofT-GRPO fork, and the in-process local trainer."""

DEFAULT_ENGINE = "local"
"""The engine ``stage2``, ``preflight``, ``loop`` and the menu use when none is named: the one that runs on any
machine (verl and the fork need CUDA GPUs)."""
