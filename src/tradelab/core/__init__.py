"""The numpy-only core: what the Stage 2 reward needs, importable under a bare Python with only numpy.

The GRPO engines load the reward under their own interpreter (``runner.python``, often the SofT-GRPO fork's
environment), which may lack pydantic, torch, pandas or YAML. Everything the reward reaches lives here and imports
nothing but the standard library, numpy and this package (``tests/core/test_numpy_only.py`` enforces it):

- :data:`ACTIONS` / :data:`ACTION_IDS`: the action names in id order, shared by the env, the advisor and the reward;
- :mod:`tradelab.core.tradesim`: one contract's fills, exits and costs, bar by bar (the env steps with it too);
- :mod:`tradelab.core.replay`: counterfactual replay of any action over a recorded forward window;
- :mod:`tradelab.core.context`: the raw market context the env exposes and prompts are built from;
- :mod:`tradelab.core.parse`: the advisor answer parser;
- :mod:`tradelab.core.records`: the experience record, the ground truth and the reward spec declared once, with
  the record's one validator;
- :mod:`tradelab.core.ground_truth`: the ground-truth payload a Stage 2 row carries;
- :mod:`tradelab.core.reward`: the verifiable reward, :func:`~tradelab.core.reward.compute_score`.

The public names of ARCHITECTURE.md §4 stay where they were documented: ``tradelab.advisor.parse.parse_advice``,
``tradelab.grpo.reward.compute_score`` and ``tradelab.ACTIONS`` re-export these.
"""

ACTIONS: tuple[str, ...] = ("HOLD", "BUY", "SELL", "MOVE_TO_BE", "ENABLE_TRAIL", "DISABLE_TRAIL")
"""Action names in the order of their ids; shared by the env, the advisor, the reward and evaluation."""

ACTION_IDS: dict[str, int] = {name: i for i, name in enumerate(ACTIONS)}
