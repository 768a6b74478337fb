"""Typed configuration: `conf/cdp.yaml` plus the domain files it references.

Example:
    >>> from cdp_spark.config import load_config
    >>> cfg = load_config("conf/cdp.yaml")   # doctest: +SKIP
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config.loader import (ConfigError, ConfigNotFoundError, LoadedConfig, load_config,
                                         load_config_with_sources)
    from cdp_spark.config.models import CdpConfig, DemoConfig, EngineConfig, LakeConfig, PipelineConfig

# Resolved lazily (PEP 562): stage packages define their config models on `cdp_spark.config.base`, and
# `config.models` imports them; importing models here eagerly would make every such import circular.
_EXPORTS = {
    "ConfigError": "loader", "ConfigNotFoundError": "loader", "LoadedConfig": "loader", "load_config": "loader", "load_config_with_sources": "loader",
    "CdpConfig": "models", "DemoConfig": "models", "EngineConfig": "models", "LakeConfig": "models",
    "PipelineConfig": "models",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cdp_spark.config' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cdp_spark.config.{_EXPORTS[name]}"), name)
