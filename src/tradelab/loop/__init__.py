"""The learning loop: Stage 1 -> Stage 2 -> evaluation, repeated, measured on one set of holdout bars."""

TINY_ADVISOR_LEARNING: dict[str, object] = {
    "llm.sft.learning_rate": 3e-3,
    "stage1.refinement.decisions": "entries",
    "stage1.refinement.weights": "uniform",
    "stage1.test.refinement_every_steps": 2048,
    "stage1.test.refinement_recent_records": 4096,
    "stage1.test.refinement_epochs": 2,
    "grpo_local.mode": "discrete",
    "grpo_local.test.lr": 1e-4,
}
"""Config overrides (``load_config(overrides=...)``) under which the embedded tiny advisor learns the planted cue
within a test-mode loop.

- Entries only: about nine in ten Stage 1 records are asked while a trade is open, and most of their hindsight
  answers are HOLD. Trained on all of them, the rank-8 adapter answered one side for every flat prompt; trained on the
  entry records alone (70 in a 4,096-step run) it followed the sign of the 5-bar return on 81% of holdout prompts.
- Uniform weights: balanced advantage weights multiplied the few HOLD-on-a-flat-bar examples about eight-fold, and
  their clipped gradient steps kept the adapter on one side.
- Every refinement retrains on up to 4,096 resolved records of the run, with a larger step than a real model needs.
- Discrete GRPO: the tiny advisor has no thinking to make soft, and in soft mode none of its answers parsed. At the
  test profile's lr of 1e-3, four GRPO steps pushed the refined adapter onto one side (balanced hit rate 0.67 ->
  0.50 on the 0.8 edge); 1e-4 is used instead.

``bench/learning.py`` and the slow loop tests use them; a real base model should keep the defaults."""
