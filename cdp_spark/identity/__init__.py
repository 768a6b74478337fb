"""The identity stage: identifiers -> identity graph -> connected components -> rules -> stable profile ids.

Public API: :func:`connected_components` and :func:`materialise` (see `cdp_spark.identity.components`).
"""
from cdp_spark.domain_spec import Domain, Section
from cdp_spark.identity.components import CCStats, connected_components, materialise
from cdp_spark.identity.config import IdentityConfig
from cdp_spark.identity.tables import TABLES
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "identity", run="cdp_spark.identity.stage:run", run_full="cdp_spark.identity.stage:run_full",
    reads=("bronze.events", "bronze.profile_records", "silver.identity_runs", "silver.identifiers", "silver.id_links",
           "gold.id_graph", "gold.event_profiles"),
    writes=("silver.identifiers", "silver.id_links", "gold.id_graph", "gold.profile_id_history",
            "silver.identity_runs", "gold.event_profiles"),
    rules=("identity", "org", "routes"))
DOMAIN = Domain("identity", stage=STAGE, tables=tuple(TABLES),
                sections=(Section("identity", IdentityConfig, IdentityConfig),),
                cli=(("identity", "cdp_spark.identity.cli:app"),))

__all__ = ["CCStats", "connected_components", "materialise"]
