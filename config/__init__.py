"""Holdfast's single configuration model and its TOML loader."""

from config.load import ConfigError, load
from config.model import HoldfastConfig

__all__ = ["ConfigError", "HoldfastConfig", "load"]
