"""The test profile: every ``test`` block field replaces exactly one full-run field, laid over once by the loader."""

from __future__ import annotations

from pydantic import BaseModel

from tradelab.config import config_hash, load_config, resolve_config
from tradelab.config.profile import TEST_PROFILE, apply_test_profile


def _get(model: BaseModel, dotted: str) -> object:
    for part in dotted.split("."):
        model = getattr(model, part)
    return model


def test_every_test_field_has_one_place_in_the_profile() -> None:
    config = load_config()
    test_fields = {f"{section}.test.{name}" for section in ("ppo", "stage1", "grpo_local", "evaluation", "llm")
                   for name in type(getattr(config, section).test).model_fields}
    assert sorted(TEST_PROFILE.values()) == sorted(test_fields)
    for target in TEST_PROFILE:
        _get(config, target)  # every target is a real full-run field


def test_applying_the_profile_puts_every_test_value_in_place_once() -> None:
    config = load_config()
    profiled = apply_test_profile(config)
    assert any(_get(config, t) != _get(config, s) for t, s in TEST_PROFILE.items())  # the profile changes something
    for target, source in TEST_PROFILE.items():
        assert _get(profiled, target) == _get(config, source), target
    assert apply_test_profile(profiled) == profiled
    assert config.ppo.n_envs == load_config().ppo.n_envs  # the input is not changed


def test_the_loader_lays_the_profile_over_once_and_the_hash_sees_it() -> None:
    config = load_config()
    profiled = load_config(test_mode=True)
    assert profiled == apply_test_profile(config) == resolve_config(config, test_mode=True)
    assert resolve_config(profiled, test_mode=True) == profiled  # an entry point may resolve what it is given
    assert resolve_config(config, test_mode=False) == config
    assert config_hash(profiled) != config_hash(config)  # manifests hash the settings that ran


def test_the_resolvers_read_plain_fields_of_the_resolved_config() -> None:
    from tradelab.evaluation.backtest import resolve_settings
    from tradelab.grpo.local.train import effective_settings
    from tradelab.stage1.wiring import run_settings

    config = load_config(test_mode=True)
    profiled = apply_test_profile(load_config())
    s1 = run_settings(config, total_timesteps=None)
    assert (s1.n_envs, s1.total_timesteps, s1.interval_bars, s1.refinement_epochs) == (
        profiled.ppo.n_envs, profiled.ppo.total_timesteps, profiled.stage1.query.interval_bars,
        profiled.stage1.refinement.epochs)
    assert effective_settings(config, None) == profiled.grpo_local
    ev = resolve_settings(config, test_mode=True, episodes=None, seeds=None, adapter="none", walk_forward=False)
    assert (ev.episodes, len(ev.seed_list), ev.episode_bars, ev.advisor_query_interval_bars) == (
        profiled.evaluation.episodes, profiled.evaluation.seeds, profiled.evaluation.episode_bars,
        profiled.evaluation.advisor_query_interval_bars)
