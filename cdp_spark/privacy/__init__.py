"""Privacy: erasure with verification, tombstones and ingest suppression (`cdp erase ...`)."""
from cdp_spark.domain_spec import Domain, Section
from cdp_spark.privacy.config import PrivacyConfig
from cdp_spark.privacy.tables import TABLES
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "erasure", run="cdp_spark.privacy.erase:run_stage",
    reads=("ops.erasure_requests", "ops.tombstones"), writes=("ops.erasure_requests", "ops.tombstones"),
    # It finds the people to erase in the graph and files as the previous run left them, and deletes their rows
    # from every table, before ingestion, so that no later stage rebuilds them.
    reads_previous=("gold.id_graph", "gold.profile_id_history", "bronze.ingested_files"))
DOMAIN = Domain("privacy", stage=STAGE, tables=tuple(TABLES),
                sections=(Section("privacy", PrivacyConfig, PrivacyConfig),),
                cli=(("erase", "cdp_spark.privacy.cli:erase_app"),))
