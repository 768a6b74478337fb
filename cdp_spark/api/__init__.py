"""The Profile API: serving store, scoped keys, masking, audit (`cdp api serve`, `cdp api keys ...`)."""
from cdp_spark.api.config import ApiConfig
from cdp_spark.api.tables import TABLES
from cdp_spark.domain_spec import Domain, Section
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "serve", run="cdp_spark.api.stage:run",
    reads=("gold.profiles", "gold.profile_attributes", "gold.profile_scores", "gold.audience_members"))
DOMAIN = Domain(
    "api", stage=STAGE, tables=tuple(TABLES), sections=(Section("api", ApiConfig, ApiConfig),),
    cli=(("api", "cdp_spark.api.cli:api_app"), ("sandbox", "cdp_spark.api.cli:sandbox_app")))
