"""Typed, strict configuration: ``load_config()`` -> frozen :class:`TradelabConfig`."""

from tradelab.config.loader import DEFAULT_CONFIG_DIR, config_hash, load_config, resolve_config
from tradelab.config.schema import TradelabConfig

__all__ = ["DEFAULT_CONFIG_DIR", "TradelabConfig", "config_hash", "load_config", "resolve_config"]
