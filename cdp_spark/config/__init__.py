"""Typed configuration: `conf/cdp.yaml` plus the domain files it references.

Each domain defines its sections' models on `cdp_spark.config_base` and declares them (`cdp_spark.domains`);
`config.models` assembles them into `CdpConfig`, and loading runs the domains' cross-section checks.

Example:
    >>> from cdp_spark.config import load_config
    >>> cfg = load_config("conf/cdp.yaml")   # doctest: +SKIP
"""
from __future__ import annotations

from cdp_spark.config.loader import (ConfigError, ConfigNotFoundError, LoadedConfig, load_config,
                                     load_config_with_sources)
from cdp_spark.config.models import CdpConfig, DemoConfig, EngineConfig, LakeConfig, PipelineConfig

__all__ = ["CdpConfig", "ConfigError", "ConfigNotFoundError", "DemoConfig", "EngineConfig", "LakeConfig",
           "LoadedConfig", "PipelineConfig", "load_config", "load_config_with_sources"]
