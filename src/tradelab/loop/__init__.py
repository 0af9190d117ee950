"""The learning loop: Stage 1 -> Stage 2 -> evaluation, repeated, measured on one set of holdout bars."""

TINY_ADVISOR_LEARNING: dict[str, object] = {
    "llm.sft.learning_rate": 3e-3,
    "stage1.test.refinement_recent_records": 256,
    "stage1.test.refinement_epochs": 2,
}
"""Config overrides (``load_config(overrides=...)``) under which the embedded tiny advisor can learn within a test-mode
loop: its base weights are random and only a rank-8 adapter trains, so it needs a larger step and more hindsight
examples than the plain test profile (tuned for speed) gives it. ``bench/learning.py`` and the slow loop tests use
them; a real base model should keep ``llm.sft.learning_rate``'s default."""
