"""Typed, strict configuration: ``load_config(profile=...)`` -> frozen :class:`TradelabConfig`."""

from tradelab.config.loader import DEFAULT_CONFIG_DIR, available_profiles, config_hash, load_config, parse_assignments
from tradelab.config.profile import DEFAULT_PROFILE, SMOKE_PROFILE
from tradelab.config.schema import TradelabConfig

__all__ = ["DEFAULT_CONFIG_DIR", "DEFAULT_PROFILE", "SMOKE_PROFILE", "TradelabConfig", "available_profiles",
           "config_hash", "load_config", "parse_assignments"]
