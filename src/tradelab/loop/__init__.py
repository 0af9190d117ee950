"""The learning loop: Stage 1 -> Stage 2 -> evaluation, repeated, measured on one set of holdout bars.

The recipe under which the embedded tiny advisor learns is a run profile, ``config/profiles/learn-tiny.yaml``
(``python main.py loop ... --profile learn-tiny``; ``bench/learning.py``'s default profile)."""
