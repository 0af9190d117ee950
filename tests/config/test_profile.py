"""Run profiles: YAML overlays found by name, laid over the section files once by the loader, refused when wrong."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tradelab.config import DEFAULT_CONFIG_DIR, available_profiles, config_hash, load_config, parse_assignments
from tradelab.config.schema import SECTION_FILES
from tradelab.errors import ConfigError

SHIPPED = ("learn-smollm2", "learn-tiny", "pod", "smoke")

SMOKE_VALUES: dict[str, object] = {
    "app.synthetic_days": 40,
    "ppo.n_envs": 4, "ppo.n_steps": 128, "ppo.batch_size": 128, "ppo.n_epochs": 2, "ppo.net_arch.pi": [32],
    "ppo.net_arch.vf": [32], "ppo.total_timesteps": 2048, "ppo.checkpoint_every_steps": 1024,
    "stage1.query.interval_bars": 8, "stage1.refinement.every_steps": 1024, "stage1.refinement.min_records": 16,
    "stage1.refinement.recent_records": 64, "stage1.refinement.epochs": 1,
    "soft_grpo.dataset.max_samples": 64,
    "llm.sft.cpu_threads": 1,
    "grpo_local.cpu_threads": 1, "grpo_local.rollout.group_size": 4, "grpo_local.rollout.max_new_tokens": 48,
    "grpo_local.soft.max_think_tokens": 4, "grpo_local.soft.think_start_marker": "", "grpo_local.optim.steps": 4,
    "grpo_local.optim.prompts_per_step": 2, "grpo_local.optim.lr": 1e-3, "grpo_local.run.checkpoint_every": 2,
    "grpo_local.run.val_every": 2, "grpo_local.run.val_prompts": 4,
    "evaluation.episodes": 2, "evaluation.seeds": 2, "evaluation.episode_bars": 45,
    "evaluation.advisor_query_interval_bars": 10, "evaluation.probe_prompts": 64,
    "llm.default_model": "models/base/tiny-advisor",
}
"""What ``--test`` ran before profiles (the old ``test`` blocks): the smoke profile must run exactly these."""


def _get(model: object, dotted: str) -> object:
    for part in dotted.split("."):
        model = getattr(model, part)
    return model


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, target)
    return target


def _profile(config_dir: Path, name: str, text: str) -> Path:
    path = config_dir / "profiles" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_the_shipped_profiles_load_and_each_says_what_it_is_for_and_costs() -> None:
    assert set(SHIPPED) <= set(available_profiles())
    for name in SHIPPED:
        config = load_config(profile=name)
        assert config.profile == name
        lines = (DEFAULT_CONFIG_DIR / "profiles" / f"{name}.yaml").read_text().splitlines()
        end = next(i for i, text in enumerate([*lines, ""]) if not text.startswith("#"))
        header = "\n".join(lines[:end])
        assert "For:" in header and "Cost on a 2-core CPU" in header and "@" not in header, name
        assert re.search(r"\d+(\.\d+)? ?(s|min|h|hours|minutes)\b", header), f"{name}: no measured cost"


def test_the_default_profile_is_pod_and_pod_is_the_section_files_as_they_are() -> None:
    default = load_config()
    assert default.profile == "pod" and default == load_config(profile="pod")
    assert yaml.safe_load((DEFAULT_CONFIG_DIR / "profiles" / "pod.yaml").read_text()) is None


def test_smoke_runs_exactly_what_test_mode_ran_and_changes_nothing_else() -> None:
    smoke, pod = load_config(profile="smoke"), load_config()
    for dotted, value in SMOKE_VALUES.items():
        assert _get(smoke, dotted) == value, dotted
    changed = {k for k, v in _flat(smoke.model_dump()).items() if _flat(pod.model_dump())[k] != v} - {"profile"}
    overlays = {f"soft_grpo.engines.{e}.args_overlay" for e in ("verl", "soft_grpo")}
    assert overlays <= changed <= set(SMOKE_VALUES) | overlays  # (some smoke values equal the full-size ones)
    assert "trainer.total_training_steps=2" in smoke.soft_grpo.engines.verl.args_overlay
    assert pod.soft_grpo.engines.verl.args_overlay == []


def test_learn_tiny_extends_smoke_one_level_and_its_own_keys_win() -> None:
    tiny, smoke = load_config(profile="learn-tiny"), load_config(profile="smoke")
    assert tiny.grpo_local.optim.steps == 30 and smoke.grpo_local.optim.steps == 4  # its own key wins
    assert tiny.ppo.net_arch == smoke.ppo.net_arch and tiny.grpo_local.rollout.max_new_tokens == 48  # smoke's kept
    assert tiny.stage1.refinement.decisions == "entries" and tiny.soft_grpo.dataset.reasoning_instruction is None


def test_a_profile_merges_key_by_key_lists_replace_and_overrides_win(config_dir: Path) -> None:
    _profile(config_dir, "mine", "ppo:\n  net_arch:\n    pi: [8, 8]\n  n_envs: 2\n  batch_size: 64\n")
    pod = load_config(config_dir)
    mine = load_config(config_dir, profile="mine")
    assert mine.ppo.net_arch.pi == [8, 8] and mine.ppo.net_arch.vf == pod.ppo.net_arch.vf  # siblings kept
    assert (mine.ppo.n_envs, mine.ppo.n_steps) == (2, pod.ppo.n_steps)
    assert load_config(config_dir, {"ppo.n_envs": 3}, profile="mine").ppo.n_envs == 3
    # The hash is of the values that run, not of the profile's name.
    assert config_hash(mine) != config_hash(pod)
    assert config_hash(load_config(config_dir, profile="pod")) == config_hash(pod)
    _profile(config_dir, "same", "# nothing\n")
    same = load_config(config_dir, profile="same")
    assert same.profile == "same" and config_hash(same) == config_hash(pod)


def test_set_assignments_keep_yaml_types_and_a_bad_one_is_one_line() -> None:
    sets = parse_assignments(["llm.sft.learning_rate=0.002", "grpo_local.run.hand_on=last",
                              "soft_grpo.dataset.reasoning_instruction=null", " ppo.n_envs = 2"])
    assert sets == {"llm.sft.learning_rate": 0.002, "grpo_local.run.hand_on": "last",
                    "soft_grpo.dataset.reasoning_instruction": None, "ppo.n_envs": 2}
    config = load_config(overrides=sets, profile="learn-smollm2")
    assert (config.llm.sft.learning_rate, config.grpo_local.run.hand_on, config.ppo.n_envs) == (0.002, "last", 2)
    for bad in ("llm.sft.learning_rate", "=3"):
        with pytest.raises(ConfigError, match=r"expected KEY=VALUE") as info:
            parse_assignments([bad])
        assert "\n" not in str(info.value) and repr(bad) in str(info.value)
    # YAML 1.1 reads 2e-3 (no dot) as a string: the schema refuses it with the key's file and path.
    with pytest.raises(ConfigError, match=r"sft\.learning_rate = '2e-3'"):
        load_config(overrides=parse_assignments(["llm.sft.learning_rate=2e-3"]), profile="learn-smollm2")


def test_a_workspace_profile_wins_over_the_shipped_one_and_the_shipped_ones_stay_reachable(config_dir: Path) -> None:
    _profile(config_dir, "smoke", "ppo:\n  n_envs: 3\n")
    assert load_config(config_dir, profile="smoke").ppo.n_envs == 3
    shutil.rmtree(config_dir / "profiles")
    assert load_config(config_dir, profile="learn-tiny").grpo_local.optim.steps == 30
    assert set(SHIPPED) <= set(available_profiles(config_dir))


def test_an_unknown_profile_is_one_line_with_the_available_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(profile="smok")
    message = str(info.value)
    assert "\n" not in message and "'smok'" in message and "did you mean smoke" in message
    assert all(name in message for name in SHIPPED)
    with pytest.raises(ConfigError, match="no such profile"):
        load_config(profile="../config/app")


def test_an_unknown_key_in_a_profile_names_the_profile_file_and_key_path(config_dir: Path) -> None:
    path = _profile(config_dir, "typo", "grpo_local:\n  optim:\n    stepz: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_dir, profile="typo")
    message = str(info.value)
    assert f"{path}: grpo_local.optim.stepz" in message and "did you mean steps" in message and "\n" not in message
    path = _profile(config_dir, "nosection", "grpo: {}\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: grpo: not a config section"):
        load_config(config_dir, profile="nosection")
    _profile(config_dir, "named", "profile: other\n")
    with pytest.raises(ConfigError, match="profile: not a config section"):
        load_config(config_dir, profile="named")  # a profile cannot rename itself


def test_a_wrong_type_in_a_profile_names_the_profile_file(config_dir: Path) -> None:
    path = _profile(config_dir, "badtype", "ppo:\n  n_envs: four\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_dir, profile="badtype")
    assert f"{path}: ppo.n_envs = 'four'" in str(info.value)
    _profile(config_dir, "scalar", "ppo: 4\n")
    with pytest.raises(ConfigError, match="a section must be a mapping"):
        load_config(config_dir, profile="scalar")
    _profile(config_dir, "toobig", "ppo:\n  batch_size: 100000\n")
    with pytest.raises(ConfigError, match=r"ppo\.yaml \(with profile toobig"):
        load_config(config_dir, profile="toobig")  # a model-level check names the profile it ran with


def test_extends_is_one_level_and_strict(config_dir: Path) -> None:
    _profile(config_dir, "child", "extends: learn-tiny\nppo:\n  n_envs: 2\n")
    with pytest.raises(ConfigError, match="extends one level only"):
        load_config(config_dir, profile="child")
    _profile(config_dir, "self", "extends: self\n")
    with pytest.raises(ConfigError, match="name one other profile"):
        load_config(config_dir, profile="self")
    _profile(config_dir, "orphan", "extends: nope\n")
    with pytest.raises(ConfigError, match="'nope': no such profile"):
        load_config(config_dir, profile="orphan")
    path = _profile(config_dir, "inherits", "extends: smoke\nppo:\n  n_envz: 2\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: ppo.n_envz")):
        load_config(config_dir, profile="inherits")


def test_every_profile_key_is_a_key_a_section_file_declares() -> None:
    sections = {section: _flat(yaml.safe_load((DEFAULT_CONFIG_DIR / file).read_text()))
                for section, file in SECTION_FILES.items()}
    for name in SHIPPED:
        data = yaml.safe_load((DEFAULT_CONFIG_DIR / "profiles" / f"{name}.yaml").read_text()) or {}
        data.pop("extends", None)
        for section, keys in data.items():
            for dotted in _flat(keys):
                assert dotted in sections[section] or any(k.startswith(f"{dotted}.") for k in sections[section]), (
                    f"{name}.yaml: {section}.{dotted}")


def test_the_resolvers_read_plain_fields_of_the_resolved_config() -> None:
    from tradelab.evaluation.backtest import resolve_settings
    from tradelab.grpo.local.train import effective_settings
    from tradelab.stage1.wiring import run_settings

    smoke = load_config(profile="smoke")
    s1 = run_settings(smoke, total_timesteps=None)
    assert (s1.n_envs, s1.total_timesteps, s1.interval_bars, s1.refinement_epochs) == (4, 2048, 8, 1)
    assert effective_settings(smoke, None) == smoke.grpo_local
    ev = resolve_settings(smoke, episodes=None, seeds=None, adapter="none", walk_forward=False)
    assert (ev.episodes, len(ev.seed_list), ev.episode_bars, ev.advisor_query_interval_bars, ev.profile) == (
        2, 2, 45, 10, "smoke")


SRC = Path(__file__).resolve().parents[2] / "src" / "tradelab"
ASKS_WHICH_PROFILE = re.compile(
    r"\btest_mode\b|\bTEST_PROFILE\b|\bresolve_config\b|\bapply_test_profile\b"
    r"|\b(ppo|stage1|grpo_local|evaluation|llm)\.test\b"
    r"|\.profile\s*(==|!=|\bin\b|\bnot in\b)|(==|!=)\s*[\w.]*\.profile\b|\bSMOKE_PROFILE\b|[\"']smoke[\"']")
"""What a stage would write to branch on its profile, or to read the retired test blocks and test-mode flag."""
ALLOWED = {
    "manifest.py": "the migration renames schema 3's flag to the profile it ran",
    "stages.py": "the test pipeline loads the smoke profile when it is given no config (an entry point, like cli/)",
}


def test_no_stage_asks_which_profile_it_is_in() -> None:
    """Outside config/ (which resolves profiles) and cli/ (which chooses them), no module names the retired
    test-mode flag or test blocks, or compares a profile's name; the exceptions are named in ALLOWED."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if relative.parts[0] in ("config", "cli"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ASKS_WHICH_PROFILE.search(line) and str(relative) not in ALLOWED:
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
    for name, why in ALLOWED.items():  # each exception is still needed, or it goes
        assert ASKS_WHICH_PROFILE.search((SRC / name).read_text()), f"{name} no longer needs its exception ({why})"
    assert not any(re.search(r"\btest_mode\b", p.read_text()) for p in SRC.rglob("*.py")
                   if p.name != "manifest.py"), "the flag is gone everywhere but the manifest's migration"
