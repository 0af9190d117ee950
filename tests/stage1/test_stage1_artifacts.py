"""Stage 1 artifacts are safe to load: statistics without pickle, model zips only with their recorded sha256."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from stage1_fakes import FakeTradingEnv, make_arrays
from stable_baselines3.common.vec_env import DummyVecEnv

from tradelab.errors import WorkspaceError
from tradelab.integrity import record_sha256, verify_sha256
from tradelab.stage1.callbacks import Checkpointer
from tradelab.stage1.vecnorm import SlotPreservingVecNormalize, load_stats


class _Payload:
    """Unpickling this creates ``marker``: proof that a planted pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (Path.touch, (self.marker,))


def _trained_vecnorm() -> tuple[SlotPreservingVecNormalize, DummyVecEnv]:
    venv = DummyVecEnv([lambda: FakeTradingEnv(make_arrays(), seed=1)])
    vec = SlotPreservingVecNormalize(venv, norm_reward=False)
    vec.reset()
    for _ in range(10):
        vec.step(np.array([0]))
    return vec, venv


def test_a_planted_statistics_pickle_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "payload_ran"
    planted = tmp_path / "vecnormalize.pkl"
    planted.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(WorkspaceError, match="no sha256 was recorded"):
        load_stats(planted)
    assert not marker.exists()


def test_a_recorded_old_pickle_loads_once_and_is_converted_to_npz(tmp_path: Path) -> None:
    vec, venv = _trained_vecnorm()
    old = tmp_path / "vecnormalize.pkl"
    vec.save(str(old))
    record_sha256(old)
    loaded = load_stats(old, venv)
    raw = np.ones((1, venv.observation_space.shape[0]), dtype=np.float32)
    np.testing.assert_allclose(loaded.normalize_obs(raw), vec.normalize_obs(raw))
    assert old.with_suffix(".npz").is_file()
    old.write_bytes(old.read_bytes() + b"x")  # changed after its hash was recorded
    with pytest.raises(WorkspaceError, match="changed since tradelab wrote it"):
        load_stats(old)


def test_statistics_npz_that_is_not_ours_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "vecnormalize.npz"
    np.savez(bogus, something=np.zeros(3))
    with pytest.raises(WorkspaceError, match="not readable normalisation statistics"):
        load_stats(bogus)


def test_model_zip_hash_is_checked_before_loading(tmp_path: Path) -> None:
    model = tmp_path / "final.zip"
    model.write_bytes(b"stand-in zip")
    with pytest.raises(WorkspaceError, match="no sha256 was recorded"):
        verify_sha256(model, fix="re-run stage1")
    record_sha256(model)
    verify_sha256(model, fix="re-run stage1")
    model.write_bytes(b"planted zip")
    with pytest.raises(WorkspaceError, match="changed since tradelab wrote it.*re-run stage1"):
        verify_sha256(model, fix="re-run stage1")


def test_checkpoints_pair_a_zip_with_npz_statistics(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path, every_steps=10)
    zip_path, stats_path = ckpt.paths(20)
    assert stats_path.name.endswith("_vecnormalize.npz")
    zip_path.write_bytes(b"z")
    assert Checkpointer.latest(tmp_path) is None
    stats_path.write_bytes(b"s")
    assert Checkpointer.latest(tmp_path) == (zip_path, stats_path, 20)


def test_local_engine_checkpoints_stay_pickle_safe(tmp_path: Path) -> None:
    """The local GRPO engine's trainer state loads with ``weights_only``: a planted pickle is refused unrun."""
    import torch

    from tradelab.errors import DataError
    from tradelab.grpo.local.checkpoints import STATE_FILE, load_trainer_state

    marker = tmp_path / "payload_ran"
    torch.save({"step": 1, "planted": _Payload(marker)}, tmp_path / STATE_FILE)
    with pytest.raises(DataError, match="cannot read the checkpoint"):
        load_trainer_state(tmp_path)
    assert not marker.exists()
