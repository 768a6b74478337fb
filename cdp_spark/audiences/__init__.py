"""Audiences: definitions (conf/audiences), one-scan compilation to Spark, membership, changes and sizes."""
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "audiences", run="cdp_spark.audiences.stage:run",
    reads=("bronze.events", "bronze.raw_keys", "gold.id_graph", "gold.event_profiles", "gold.profile_id_history",
           "gold.profiles", "gold.profile_attributes", "gold.profile_scores", "gold.affinities", "gold.topic_affinities",
           "gold.audience_members"),
    writes=("gold.audience_members", "gold.audience_changes", "gold.audience_sizes"),
    rules=("audiences", "identity", "routes"))
