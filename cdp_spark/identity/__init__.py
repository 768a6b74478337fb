"""The identity stage: identifiers -> identity graph -> connected components -> rules -> stable profile ids.

Public API: :func:`connected_components` and :func:`materialise` (see `cdp_spark.identity.components`).
"""
from cdp_spark.identity.components import CCStats, connected_components, materialise

__all__ = ["CCStats", "connected_components", "materialise"]
