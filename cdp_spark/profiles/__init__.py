"""Unified profiles and calculated attributes: the `profiles` stage and the typed profile view.

`view.profile_view` is the read API other stages use; `stage.run` is the daily rebuild.
"""
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "profiles", run="cdp_spark.profiles.stage:run", run_full="cdp_spark.profiles.stage:run_full",
    reads=("bronze.events", "bronze.profile_records", "gold.id_graph", "gold.event_profiles",
           "gold.profile_id_history", "gold.profiles", "gold.profile_attributes", "silver.profile_runs"),
    writes=("gold.profiles", "gold.profile_attributes", "silver.profile_runs"),
    rules=("profiles", "attributes", "catalogue", "identity", "routes"))
