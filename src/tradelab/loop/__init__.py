"""The learning loop: Stage 1 -> Stage 2 -> evaluation, repeated, measured on one set of holdout bars."""

TINY_ADVISOR_LEARNING: dict[str, object] = {
    "llm.sft.learning_rate": 3e-3,
    "stage1.test.interval_bars": 4,
    "stage1.test.refinement_every_steps": 2048,
    "stage1.test.refinement_recent_records": 4096,
    "stage1.test.refinement_epochs": 2,
}
"""Config overrides (``load_config(overrides=...)``) under which the embedded tiny advisor learns the planted cue
within a test-mode loop. What it lacks under the plain test profile is hindsight examples, not capacity: its rank-8
adapter on the random base learns ``sign(ret5)`` from about 800 hindsight labels (which agree with the cue only 75-80%
of the time), but the test profile refines on its 64 latest records. So it asks twice as often, and every refinement
retrains on up to 4,096 resolved records of the run with a larger step. ``bench/learning.py`` and the slow loop tests
use them; a real base model should keep ``llm.sft.learning_rate``'s default."""
