"""Which adapter a local run hands on (``grpo_local.run.hand_on``): the last step's, or the best validated one.

GRPO can lower the reward it optimises: where the groups' answers differ only by noise (a weak edge the adapter cannot
see yet) the steps drift, and the run's own validation reward falls while it trains. With ``best_validation`` every
validation that beats the best so far keeps a copy of the adapter in ``<run_dir>/best_adapter/``, step 0 (the adapter
the run started from) included, and at the end the model is put back to that copy before the adapter is published
and checked. Validation prompts are the latest Stage 1 decisions of the training period (``stage2_val.parquet``),
never holdout bars, so the choice looks at nothing the evaluation scores. A resumed run chooses among the steps it
validates itself, its starting checkpoint counting as its step 0.

The steps are ranked by ``grpo_local.run.hand_on_reward``: the plain mean reward, or its sides-balanced form. A
validation split is small (18 to 64 rows), and one on which SELL won in hindsight 9 times and BUY 4 pays any step
that drifted towards SELL; the balanced figure weighs the two kinds of rows equally, so only a step that tells them
apart scores above the adapter the run started from.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tradelab.errors import StageFailed
from tradelab.fileio import staged_dir

BEST_ADAPTER = "best_adapter"
"""The best validated adapter so far, inside the run directory."""
RANKED_FIGURE = {"mean": "val_reward_mean", "sides_balanced": "val_reward_balanced"}
"""``grpo_local.run.hand_on_reward`` -> the validation metric that ranks the steps."""


class HandOn:
    """Tracks the validated steps and restores the one to hand on.

    Args:
        policy: ``last`` or ``best_validation`` (``grpo_local.run.hand_on``).
        ranked_by: ``mean`` or ``sides_balanced`` (``grpo_local.run.hand_on_reward``).
        run_dir: The run directory (``best_adapter/`` is written there).
    """

    def __init__(self, policy: str, ranked_by: str, run_dir: Path) -> None:
        self.policy = policy
        self.figure = RANKED_FIGURE[ranked_by]
        self.folder = run_dir / BEST_ADAPTER
        self.best_step: int | None = None
        self.best_metrics: dict[str, float] = {}
        self.last_step: int | None = None
        self.last_metrics: dict[str, float] = {}

    def validated(self, step: int, metrics: Mapping[str, float], model: Any) -> None:
        """Note a validation's metrics; under ``best_validation`` keep the adapter when its ranked figure beats every
        earlier one."""
        self.last_step, self.last_metrics = step, dict(metrics)
        if self.policy != "best_validation":
            return
        if self.best_step is None or metrics[self.figure] > self.best_metrics[self.figure]:
            with staged_dir(self.folder) as staging:
                model.save_pretrained(staging)
            self.best_step, self.best_metrics = step, dict(metrics)

    @property
    def step(self) -> int | None:
        """The step whose adapter is handed on (None before any validation)."""
        return self.best_step if self.policy == "best_validation" else self.last_step

    @property
    def metrics(self) -> dict[str, float]:
        """That step's validation metrics (empty before any validation)."""
        return self.best_metrics if self.policy == "best_validation" else self.last_metrics

    @property
    def reward(self) -> float | None:
        """That step's validation figure, the one ``hand_on_reward`` ranks by."""
        return self.metrics.get(self.figure)

    def restore(self, model: Any) -> bool:
        """Load the adapter to hand on into ``model`` when it is not the model's current one; True when it did.

        Raises:
            StageFailed: The kept copy does not hold every LoRA weight of ``model``.
        """
        if self.policy != "best_validation" or self.best_step is None or self.best_step == self.last_step:
            return False
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = load_file(str(self.folder / "adapter_model.safetensors"), device=str(_device_of(model)))
        result = set_peft_model_state_dict(model, weights)
        missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
        if missing:  # a partial load would publish a mix of two adapters
            raise StageFailed(f"{self.folder}: the kept adapter lacks {len(missing)} LoRA weights ({missing[0]}); "
                              f"run Stage 2 again with grpo_local.run.hand_on: last")
        return True


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device
