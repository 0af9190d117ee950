"""The learning loop: Stage 1 -> Stage 2 -> evaluation, repeated, measured on one set of holdout bars."""

TINY_ADVISOR_LEARNING: dict[str, object] = {
    "llm.sft.learning_rate": 3e-3,
    "stage1.refinement.decisions": "entries",
    "stage1.refinement.weights": "uniform",
    "stage1.test.refinement_every_steps": 8192,
    "stage1.test.refinement_recent_records": 4096,
    "stage1.test.refinement_epochs": 4,
    "soft_grpo.dataset.decisions": "entries",
    "soft_grpo.dataset.reasoning_instruction": None,
    "soft_grpo.dataset.test_max_rows": 512,
    "grpo_local.mode": "discrete",
    "grpo_local.rollout.temperature": 0.7,
    "grpo_local.test.steps": 30,
    "grpo_local.test.prompts_per_step": 8,
    "grpo_local.test.group_size": 8,
    "grpo_local.test.lr": 3e-4,
}
"""Config overrides (``load_config(overrides=...)``) under which the embedded tiny advisor learns the planted cue
within a test-mode loop.

- Entries only: most Stage 1 records are asked while a trade is open (about two in three of an 8,192-step run), and
  most of their hindsight answers are HOLD. Trained on all of them, the rank-8 adapter answered one side for every
  flat prompt; trained on the entry records alone it followed the sign of the 5-bar return on most holdout prompts.
- Uniform weights: balanced advantage weights multiplied the few HOLD-on-a-flat-bar examples about eight-fold, and
  their clipped gradient steps kept the adapter on one side.
- Every 8,192 steps a refinement retrains on up to 4,096 resolved records of the run, 4 passes, with a larger step
  than a real model needs. The cue is learned from the number of entry records, not from the model's size: trained
  on N labelled flat prompts of the training bars (edge 0.8), the tiny advisor's holdout hit rate was 0.64 at
  N = 160, 0.72 at 640 (2 passes), 0.815 at 640 (6 passes) and 0.813 at 2,000, which is the 5-bar rule's own 0.815.
  A Stage 1 run makes about one entry record per 40 steps: 8,192 steps (159 records) left the advisor at 0.60,
  16,384 (345) at 0.63, 32,768 (833) at 0.815. ``bench/learning.py`` runs 16,384 steps per iteration: the first
  iteration's Stage 1 leaves Stage 2 room to teach (0.63 -> 0.70 on that workspace; after 32,768 steps Stage 2 had
  nothing left to add), and the second iteration's refinements start with the first's records
  (``stage1.refinement.history: market``).
- Stage 2 on the same entry decisions, exported without the reasoning instruction: the tiny advisor has no thinking,
  and with the instruction appended to its system message none of its sampled answers parsed (format rate 0.0), so
  every answer scored the malformed penalty, every advantage was 0, and only the KL pull towards the random base
  moved the adapter (at lr 1e-3 it pushed a learned adapter onto one side: balanced hit rate 0.67 -> 0.50).
- Discrete GRPO at temperature 0.7: the tiny advisor has no thinking to make soft. At temperature 1.0 a quarter of
  its sampled answers parsed, the malformed penalty dominated the advantages and 30 steps taught it one side
  (balanced hit rate 0.63 -> 0.50); at 0.7 nearly all parse from the first steps, and the groups' differences are
  about direction (0.63 -> 0.68 on the same Stage 1 adapter).
- 30 steps of 8 prompts x 8 answers at lr 3e-4: the test profile's 4 steps of 2 x 4 barely move the adapter.

``bench/learning.py`` and the slow loop tests use them; a real base model should keep the defaults."""
