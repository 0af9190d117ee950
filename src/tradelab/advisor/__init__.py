"""The LLM advisor: loading, the embedded tiny model, prompts, parsing, batched generation and LoRA training.

This package ``__init__`` stays empty of imports on purpose: :mod:`tradelab.advisor.parse` must import under a bare
Python with only numpy (the GRPO reward runs there), so nothing heavy may load when the package is imported.
"""
