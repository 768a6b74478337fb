"""Audiences: definitions (conf/audiences), one-scan compilation to Spark, membership, changes and sizes."""
from cdp_spark.audiences.config import Audience, reference_problems
from cdp_spark.audiences.tables import TABLES
from cdp_spark.domain_spec import Domain, Section
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "audiences", run="cdp_spark.audiences.stage:run",
    reads=("bronze.events", "bronze.raw_keys", "gold.id_graph", "gold.event_profiles", "gold.profile_id_history",
           "gold.profiles", "gold.profile_attributes", "gold.profile_scores", "gold.affinities", "gold.topic_affinities",
           "gold.audience_members"),
    writes=("gold.audience_members", "gold.audience_changes", "gold.audience_sizes"),
    rules=("audiences", "identity", "routes"))
DOMAIN = Domain(
    "audiences", stage=STAGE, tables=tuple(TABLES), checks=(reference_problems,),
    sections=(Section("audiences", list[Audience], list, "audience definitions (conf/audiences)"),),
    cli=(("audience", "cdp_spark.audiences.cli:audience_app"), ("activate", "cdp_spark.audiences.cli:activate")))
