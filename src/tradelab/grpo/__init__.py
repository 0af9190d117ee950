"""Phase 3 Stage 2: GRPO dataset export, the verifiable trading reward, preflight and the engine runner.

Nothing is imported here: :mod:`tradelab.grpo.reward` must import under a bare Python with only numpy, and the
dataset / preflight / runner modules pull pyarrow and subprocess machinery only when used.
"""
