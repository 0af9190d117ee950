"""VecNormalize that leaves the advisor slots raw.

The fusion prior reads confidences and flags straight from the observation, so the last :data:`SLOT_SIZE` columns
must reach the policy exactly as the advice wrapper wrote them. Statistics are still tracked for those columns (it
costs nothing and keeps the pickled format standard) but never applied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from tradelab.stage1.slots import SLOT_SIZE


class SlotPreservingVecNormalize(VecNormalize):
    """:class:`VecNormalize` for flat Box observations whose last ``slot_size`` columns pass through unchanged.

    Args:
        venv: The vector env to wrap.
        slot_size: Number of trailing raw columns (the advisor slots).
        **kwargs: Passed to :class:`VecNormalize` (norm_reward, clip_obs, gamma, ...).
    """

    def __init__(self, venv: VecEnv, slot_size: int = SLOT_SIZE, **kwargs: Any) -> None:
        self.slot_size = int(slot_size)
        super().__init__(venv, **kwargs)

    def normalize_obs(self, obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
        """Normalise every column but the trailing slots, which are copied from the raw input."""
        normalized = super().normalize_obs(obs)
        if self.norm_obs and isinstance(obs, np.ndarray):
            normalized[..., -self.slot_size:] = obs[..., -self.slot_size:]
        return normalized

    def unnormalize_obs(self, obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
        """Inverse of :meth:`normalize_obs` (the slots were never scaled)."""
        raw = super().unnormalize_obs(obs)
        if self.norm_obs and isinstance(obs, np.ndarray):
            raw[..., -self.slot_size:] = obs[..., -self.slot_size:]
        return raw

    @staticmethod
    def load(load_path: str, venv: VecEnv) -> "SlotPreservingVecNormalize":
        """Load pickled statistics and attach them to ``venv``.

        Raises:
            TypeError: The file holds a plain VecNormalize (its slots would be normalised).
        """
        loaded = VecNormalize.load(load_path, venv)
        if not isinstance(loaded, SlotPreservingVecNormalize):
            raise TypeError(f"{load_path}: holds {type(loaded).__name__}, expected SlotPreservingVecNormalize")
        return loaded
