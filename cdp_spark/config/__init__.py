"""Typed configuration: `conf/cdp.yaml` plus the domain files it references.

Example:
    >>> from cdp_spark.config import load_config
    >>> cfg = load_config("conf/cdp.yaml")   # doctest: +SKIP
"""
from cdp_spark.config.loader import ConfigError, LoadedConfig, load_config, load_config_with_sources
from cdp_spark.config.models import CdpConfig, DemoConfig, EngineConfig, LakeConfig, PipelineConfig

__all__ = [
    "CdpConfig",
    "ConfigError",
    "DemoConfig",
    "EngineConfig",
    "LakeConfig",
    "LoadedConfig",
    "PipelineConfig",
    "load_config",
    "load_config_with_sources",
]
