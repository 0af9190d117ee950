"""The ``local`` Stage 2 engine: single-process GRPO / SofT-GRPO on transformers + PEFT (ARCHITECTURE.md §10).

Entry point: :func:`tradelab.grpo.local.train.train_local`. Nothing heavy is imported here.
"""
