"""Which adapter a local run hands on (``grpo_local.run.hand_on``): the last step's, or the best validated one.

GRPO can lower the reward it optimises: where the groups' answers differ only by noise (a weak edge the adapter cannot
see yet) the steps drift, and the run's own validation reward falls while it trains. With ``best_validation`` every
validation that beats the best so far keeps a copy of the adapter in ``<run_dir>/best_adapter/``, step 0 (the adapter
the run started from) included, and at the end the model is put back to that copy before the adapter is published
and checked. Validation prompts are the latest Stage 1 decisions of the training period (``stage2_val.parquet``),
never holdout bars, so the choice looks at nothing the evaluation scores. A resumed run chooses among the steps it
validates itself, its starting checkpoint counting as its step 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tradelab.errors import StageFailed
from tradelab.fileio import staged_dir

BEST_ADAPTER = "best_adapter"
"""The best validated adapter so far, inside the run directory."""


class HandOn:
    """Tracks the validated steps and restores the one to hand on.

    Args:
        policy: ``last`` or ``best_validation`` (``grpo_local.run.hand_on``).
        run_dir: The run directory (``best_adapter/`` is written there).
    """

    def __init__(self, policy: str, run_dir: Path) -> None:
        self.policy = policy
        self.folder = run_dir / BEST_ADAPTER
        self.best_step: int | None = None
        self.best_reward: float | None = None
        self.last_step: int | None = None
        self.last_reward: float | None = None

    def validated(self, step: int, reward: float, model: Any) -> None:
        """Note a validation; under ``best_validation`` keep the adapter when it beats every earlier one."""
        self.last_step, self.last_reward = step, reward
        if self.policy != "best_validation":
            return
        if self.best_reward is None or reward > self.best_reward:
            with staged_dir(self.folder) as staging:
                model.save_pretrained(staging)
            self.best_step, self.best_reward = step, reward

    @property
    def step(self) -> int | None:
        """The step whose adapter is handed on (None before any validation)."""
        return self.best_step if self.policy == "best_validation" else self.last_step

    @property
    def reward(self) -> float | None:
        """That step's validation reward."""
        return self.best_reward if self.policy == "best_validation" else self.last_reward

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
