"""The Profile API: serving store, scoped keys, masking, audit (`cdp api serve`, `cdp api keys ...`)."""
from cdp_spark.domain_spec import Domain
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "serve", run="cdp_spark.api.stage:run",
    reads=("gold.profiles", "gold.profile_attributes", "gold.profile_scores", "gold.audience_members"))
DOMAIN = Domain("api", stage=STAGE)
