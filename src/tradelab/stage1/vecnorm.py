"""VecNormalize that leaves the advisor slots raw.

The fusion prior reads confidences and flags straight from the observation, so the last :data:`SLOT_SIZE` columns
must reach the policy exactly as the advice wrapper wrote them. Statistics are still tracked for those columns (it
costs nothing) but never applied.

Statistics are saved as ``.npz`` (:func:`save_stats` / :func:`load_stats`): plain arrays that load without pickle,
so a planted statistics file cannot run code. A ``.pkl`` from an older tradelab is read only when its sha256 was
recorded (:mod:`tradelab.integrity`) and is then converted to ``.npz`` beside it.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from tradelab.errors import WorkspaceError
from tradelab.fileio import atomic_write_bytes
from tradelab.stage1.advice import SLOT_SIZE

STATS_FORMAT = "tradelab.vecnormalize.v1"
"""Tag stored in every statistics ``.npz``."""


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



def save_stats(vecnorm: SlotPreservingVecNormalize, path: str | Path) -> Path:
    """Write the normalisation statistics and settings to ``path`` (``.npz``, no pickle) atomically."""
    if not isinstance(vecnorm.observation_space, spaces.Box) or not isinstance(vecnorm.action_space, spaces.Discrete):
        raise TypeError("save_stats supports a Box observation space and a Discrete action space")
    obs_space, obs_rms, ret_rms = vecnorm.observation_space, vecnorm.obs_rms, vecnorm.ret_rms
    arrays = {
        "format": np.array(STATS_FORMAT),
        "obs_mean": obs_rms.mean, "obs_var": obs_rms.var, "obs_count": np.array(obs_rms.count, dtype=np.float64),
        "ret_mean": np.asarray(ret_rms.mean, dtype=np.float64), "ret_var": np.asarray(ret_rms.var, dtype=np.float64),
        "ret_count": np.array(ret_rms.count, dtype=np.float64),
        "obs_low": obs_space.low, "obs_high": obs_space.high, "obs_dtype": np.array(np.dtype(obs_space.dtype).str),
        "action_n": np.array(int(vecnorm.action_space.n)),
        "clip_obs": np.array(float(vecnorm.clip_obs)), "clip_reward": np.array(float(vecnorm.clip_reward)),
        "gamma": np.array(float(vecnorm.gamma)), "epsilon": np.array(float(vecnorm.epsilon)),
        "norm_obs": np.array(bool(vecnorm.norm_obs)), "norm_reward": np.array(bool(vecnorm.norm_reward)),
        "slot_size": np.array(int(vecnorm.slot_size)),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def _rms(mean: np.ndarray, var: np.ndarray, count: np.ndarray) -> RunningMeanStd:
    rms = RunningMeanStd(shape=mean.shape)
    rms.mean, rms.var, rms.count = mean.astype(np.float64), var.astype(np.float64), float(count)
    return rms


def load_stats(path: str | Path, venv: VecEnv | None = None) -> SlotPreservingVecNormalize:
    """Statistics saved by :func:`save_stats`, attached to ``venv`` (None: detached, for normalising by hand).

    A ``.pkl`` path is the older pickled form: it is read only if its sha256 is recorded, and converted.

    Raises:
        WorkspaceError: The file is not readable statistics, does not match ``venv``'s observation space, or is an
            unverified pickle.
    """
    path = Path(path)
    if path.suffix == ".pkl":
        return _load_recorded_pickle(path, venv)
    fix = "re-run `python main.py stage1` for this market to write it again"
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != STATS_FORMAT:
                raise ValueError(f"format {str(data['format'])!r}, expected {STATS_FORMAT!r}")
            obs_space = spaces.Box(low=data["obs_low"], high=data["obs_high"], dtype=np.dtype(str(data["obs_dtype"])))
            state = {
                "observation_space": obs_space, "action_space": spaces.Discrete(int(data["action_n"])),
                "norm_obs": bool(data["norm_obs"]), "norm_reward": bool(data["norm_reward"]), "norm_obs_keys": None,
                "obs_rms": _rms(data["obs_mean"], data["obs_var"], data["obs_count"]),
                "ret_rms": _rms(data["ret_mean"], data["ret_var"], data["ret_count"]),
                "clip_obs": float(data["clip_obs"]), "clip_reward": float(data["clip_reward"]),
                "gamma": float(data["gamma"]), "epsilon": float(data["epsilon"]), "training": False,
                "old_reward": np.array([]), "slot_size": int(data["slot_size"]),
            }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WorkspaceError(f"{path}: not readable normalisation statistics ({exc}); {fix}") from exc
    vecnorm = SlotPreservingVecNormalize.__new__(SlotPreservingVecNormalize)
    vecnorm.__setstate__(state)
    if venv is not None:
        try:
            vecnorm.set_venv(venv)
        except (AssertionError, ValueError) as exc:
            raise WorkspaceError(f"{path}: statistics do not fit this env ({exc}); {fix}") from exc
    return vecnorm


def _load_recorded_pickle(path: Path, venv: VecEnv | None) -> SlotPreservingVecNormalize:
    """Read an older pickled statistics file whose hash tradelab recorded, and write its ``.npz`` beside it."""
    from tradelab.integrity import verify_sha256

    verify_sha256(path, fix="re-run `python main.py stage1` for this market; it writes vecnormalize.npz instead")
    with open(path, "rb") as fh:
        loaded = pickle.load(fh)  # noqa: S301 - its sha256 matched the one recorded when tradelab wrote it
    if not isinstance(loaded, SlotPreservingVecNormalize):
        raise WorkspaceError(f"{path}: holds {type(loaded).__name__}, expected SlotPreservingVecNormalize; re-run "
                             "`python main.py stage1` for this market")
    converted = path.with_suffix(".npz")
    save_stats(loaded, converted)
    return load_stats(converted, venv)
