"""Evaluation: holdout backtests of the trained agents against baselines, metrics, reports and plots.

Entry point: :func:`tradelab.evaluation.run.evaluate`. The package import stays light; submodules import numpy,
empyrical and matplotlib only where they need them.
"""
