"""The learning loop: Stage 1 -> Stage 2 -> evaluation, repeated, measured on one set of holdout bars."""

TINY_ADVISOR_LEARNING: dict[str, object] = {
    "llm.sft.learning_rate": 3e-3,
    "stage1.refinement.decisions": "entries",
    "stage1.refinement.weights": "uniform",
    "stage1.refinement.hindsight_bars": 2048,
    "stage1.test.refinement_every_steps": 8192,
    "stage1.test.refinement_recent_records": 4096,
    "stage1.test.refinement_epochs": 3,
    "soft_grpo.dataset.decisions": "entries",
    "soft_grpo.dataset.reasoning_instruction": None,
    "soft_grpo.dataset.test_max_rows": 512,
    "grpo_local.mode": "discrete",
    "grpo_local.rollout.temperature": 0.5,
    "grpo_local.dynamic_sampling.enabled": True,
    "grpo_local.dynamic_sampling.max_rounds": 3,
    "grpo_local.test.steps": 30,
    "grpo_local.test.prompts_per_step": 8,
    "grpo_local.test.group_size": 8,
    "grpo_local.test.lr": 3e-4,
}
"""Config overrides (``load_config(overrides=...)``) under which the embedded tiny advisor learns the planted cue
within a test-mode loop: a flat mapping of dotted config keys, the shape of a profile file (``bench/learning.py
--print-recipe`` prints it as YAML).

- 2,048 labelled flat bars of the training split per refinement (``stage1.refinement.hindsight_bars``), 3 passes: a
  Stage 1 run makes about 20 entry records per 1,000 steps (measured at edge 0.3, 8,192 steps: 166), and at edge 0.3
  the tiny advisor needs about 2,000 to learn the cue (``bench/records_needed.py``: N = 500 labelled bars x 3 passes
  left it answering one side for every holdout prompt, N = 2,000 reached hit rate 0.608 against the rule's 0.604,
  95% of the rule's mean reward). Asking the advisor at more flat bars cannot supply them: a fresh policy is flat
  with both entries allowed at about 7% of its steps, and the entropy trigger already asks at those
  (``stage1.query.flat_entry_every_bars`` 4 or 8 changed no record of a 4,096-step run). With the
  labelled bars, one 8,192-step Stage 1 at edge 0.3 trained on 270 entry examples per 1,000 steps and left the
  advisor at hit rate 0.596 (balanced 0.607, 84% of the rule's mean reward); without them, at 0.454 (balanced 0.470).
  At edges 0.1 and 0.2, 2,000 bars still left it on one side.

- Entries only: most Stage 1 records are asked while a trade is open (about two in three of an 8,192-step run), and
  most of their hindsight answers are HOLD. Trained on all of them, the rank-8 adapter answered one side for every
  flat prompt; trained on the entry records alone it followed the sign of the 5-bar return on most holdout prompts.
- Uniform weights: balanced advantage weights multiplied the few HOLD-on-a-flat-bar examples about eight-fold, and
  their clipped gradient steps kept the adapter on one side.
- Every 8,192 steps a refinement retrains on up to 4,096 resolved records of the run and the labelled bars, 3
  passes, with a larger step than a real model needs. The cue is learned from the number of entry records, not
  from the model's size: trained on N labelled flat prompts of the training bars (edge 0.8), the tiny advisor's
  holdout hit rate was 0.64 at N = 160, 0.72 at 640 (2 passes), 0.815 at 640 (6 passes) and 0.813 at 2,000, which
  is the 5-bar rule's own 0.815.
  A Stage 1 run makes about one entry record per 40 steps: 8,192 steps (159 records) left the advisor at 0.60,
  16,384 (345) at 0.63, 32,768 (833) at 0.815. ``bench/learning.py`` runs 16,384 steps per iteration: the first
  iteration's Stage 1 leaves Stage 2 room to teach (0.63 -> 0.70 on that workspace; after 32,768 steps Stage 2 had
  nothing left to add), and the second iteration's refinements start with the first's records
  (``stage1.refinement.history: market``).
- Stage 2 on the same entry decisions, exported without the reasoning instruction: the tiny advisor has no thinking,
  and with the instruction appended to its system message none of its sampled answers parsed (format rate 0.0), so
  every answer scored the malformed penalty, every advantage was 0, and only the KL pull towards the random base
  moved the adapter (at lr 1e-3 it pushed a learned adapter onto one side: balanced hit rate 0.67 -> 0.50).
- Discrete GRPO at temperature 0.5, groups of 8, dynamic sampling (drop groups whose answers all score the same and
  draw again, at most 3 rounds a step): the tiny advisor has no thinking to make soft. ``bench/group_signal.py`` on
  64 labelled flat prompts at edge 0.3 counts the groups that hold the hindsight-best answer on the prompts the
  adapter answers wrong (only those can teach the right direction): with a Stage 1 adapter far from the rule 0.75 at
  temperature 0.5 and 0.63 at 0.7, with one near it 0.60 and 0.50 (groups of 8); 16 answers added 0.03-0.07 at twice
  the cost. The parse rate fell from 0.94-0.99 at 0.5 to 0.42-0.75 at 0.7 and 0.03-0.22 at 1.0, where the malformed
  penalty dominates the advantages (an earlier run at 1.0 taught the advisor one side, balanced 0.63 -> 0.50).
- 30 steps of 8 prompts x 8 answers at lr 3e-4: the test profile's 4 steps of 2 x 4 barely move the adapter.

``bench/learning.py`` and the slow loop tests use them; a real base model should keep the defaults."""
