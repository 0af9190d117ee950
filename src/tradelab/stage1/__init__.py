"""Phase 3 Stage 1: hybrid MaskablePPO + LoRA-LLM advisor (ARCHITECTURE.md §5, §6, §11).

Light on import: the heavy pieces live in submodules (``policy``, ``advice``, ``train``, ``agent``) that load
torch and stable-baselines3 when imported.
"""
