"""The strict config loader: every user mistake names file, key path, value and a fix."""

from __future__ import annotations

import re
import shutil
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from tradelab.config import DEFAULT_CONFIG_DIR, TradelabConfig, config_hash, load_config
from tradelab.config.schema import SECTION_FILES
from tradelab.errors import ConfigError


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def test_shipped_config_loads_and_is_frozen() -> None:
    cfg = load_config()
    assert cfg.markets.contracts["NQ"].point_value == 20.0
    with pytest.raises(Exception):
        cfg.app.seed = 3  # type: ignore[misc]


def _field_names(model: type[BaseModel]) -> set[str]:
    """Every field name declared in ``model`` and the models nested in it."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        for tp in (field.annotation, *typing.get_args(field.annotation)):
            for inner in (tp, *typing.get_args(tp)):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    names |= _field_names(inner)
    return names


def test_every_shipped_key_has_a_comment_above_it() -> None:
    key_line = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*):")
    for section, name in SECTION_FILES.items():
        fields = _field_names(TradelabConfig.model_fields[section].annotation)
        lines = (DEFAULT_CONFIG_DIR / name).read_text().splitlines()
        for i, line in enumerate(lines):
            match = key_line.match(line)
            if not match or match.group(1) not in fields:
                continue
            previous = lines[i - 1].strip() if i else ""
            assert previous.startswith("#"), f"{name}:{i + 1}: key {match.group(1)!r} has no comment above it"


def test_unknown_key_suggests_the_close_name(config_dir: Path) -> None:
    _edit(config_dir / "ppo.yaml", "n_steps:", "n_stepz:")
    with pytest.raises(ConfigError) as err:
        load_config(config_dir)
    message = str(err.value)
    assert "ppo.yaml" in message and "n_stepz" in message and "did you mean n_steps?" in message


def test_nested_unknown_key_names_the_path(config_dir: Path) -> None:
    _edit(config_dir / "markets.yaml", "    tick_size: 0.25", "    tick_sise: 0.25")
    with pytest.raises(ConfigError) as err:
        load_config(config_dir)
    assert "contracts.ES.tick_sise" in str(err.value) and "did you mean tick_size?" in str(err.value)


def test_wrong_type_names_file_key_and_value(config_dir: Path) -> None:
    _edit(config_dir / "env.yaml", "episode_bars: 390", 'episode_bars: "lots"')
    with pytest.raises(ConfigError) as err:
        load_config(config_dir)
    message = str(err.value)
    assert "env.yaml" in message and "episode_bars = 'lots'" in message


def test_out_of_range_value_is_rejected(config_dir: Path) -> None:
    _edit(config_dir / "env.yaml", "holdout_fraction: 0.2", "holdout_fraction: 1.5")
    with pytest.raises(ConfigError, match=r"holdout_fraction = 1.5.*allowed range"):
        load_config(config_dir)


def test_scientific_notation_without_dot_is_a_number(config_dir: Path) -> None:
    text = (config_dir / "ppo.yaml").read_text()
    (config_dir / "ppo.yaml").write_text(
        "\n".join("learning_rate: 1e-5" if ln.startswith("learning_rate:") else ln for ln in text.splitlines()) + "\n"
    )
    assert load_config(config_dir).ppo.learning_rate == pytest.approx(1e-5)


def test_missing_file_and_missing_key(config_dir: Path) -> None:
    text = (config_dir / "app.yaml").read_text()
    (config_dir / "app.yaml").write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith("seed:")))
    with pytest.raises(ConfigError, match=r"app.yaml: seed: Field required"):
        load_config(config_dir)
    (config_dir / "app.yaml").unlink()
    with pytest.raises(ConfigError, match=r"app.yaml: config file not found"):
        load_config(config_dir)


def test_invalid_yaml_is_a_config_error(config_dir: Path) -> None:
    (config_dir / "app.yaml").write_text("seed: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(config_dir)


def test_hash_is_stable_and_tracks_values() -> None:
    a, b = load_config(), load_config()
    assert config_hash(a) == config_hash(b)
    c = load_config(overrides={"app.seed": a.app.seed + 1})
    assert config_hash(c) != config_hash(a)


def test_override_of_unknown_section_fails() -> None:
    with pytest.raises(ConfigError, match="unknown section 'nope'"):
        load_config(overrides={"nope.x": 1})


def test_bad_market_name_in_config_is_rejected(config_dir: Path) -> None:
    _edit(config_dir / "markets.yaml", "  NQ:", "  nq-bad:")
    with pytest.raises(ConfigError, match="invalid market name"):
        load_config(config_dir)
