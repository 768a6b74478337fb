"""Unified profiles and calculated attributes: the `profiles` stage and the typed profile view.

`view.profile_view` is the read API other stages use; `stage.run` is the daily rebuild.
"""
from cdp_spark.domain_spec import Domain, Section
from cdp_spark.profiles.config import AttributesConfig, ProfilesConfig, catalogue_problems
from cdp_spark.profiles.tables import TABLES
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "profiles", run="cdp_spark.profiles.stage:run",
    reads=("bronze.events", "bronze.profile_records", "gold.id_graph", "gold.profile_id_history", "gold.profiles"),
    writes=("gold.profiles", "gold.profile_attributes"),
    rules=("profiles", "attributes", "catalogue", "identity", "routes"))
DOMAIN = Domain(
    "profiles", stage=STAGE, tables=tuple(TABLES), checks=(catalogue_problems,),
    sections=(Section("profiles", ProfilesConfig, ProfilesConfig),
              Section("attributes", AttributesConfig, AttributesConfig)))
