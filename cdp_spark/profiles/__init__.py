"""Unified profiles and calculated attributes: the `profiles` stage and the typed profile view.

`view.profile_view` is the read API other stages use; `stage.run` is the daily rebuild.
"""
from cdp_spark.domain_spec import Domain, Section
from cdp_spark.profiles.config import AttributesConfig, ProfilesConfig, catalogue_problems
from cdp_spark.profiles.tables import TABLES
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "profiles", run="cdp_spark.profiles.stage:run", run_full="cdp_spark.profiles.stage:run_full",
    reads=("bronze.events", "bronze.profile_records", "gold.id_graph", "gold.event_profiles",
           "gold.profile_id_history", "gold.profiles", "gold.profile_attributes", "silver.profile_runs"),
    writes=("gold.profiles", "gold.profile_attributes", "silver.profile_runs"),
    rules=("profiles", "attributes", "catalogue", "identity", "routes"))
DOMAIN = Domain(
    "profiles", stage=STAGE, tables=tuple(TABLES), checks=(catalogue_problems,),
    sections=(Section("profiles", ProfilesConfig, ProfilesConfig),
              Section("attributes", AttributesConfig, AttributesConfig)))
