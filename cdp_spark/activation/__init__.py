"""Activation: audience members to destinations (files, webhooks, Delta), normalised, hashed and consent-gated."""
from cdp_spark.activation.config import Destination, audience_link_problems
from cdp_spark.activation.tables import TABLES
from cdp_spark.domain_spec import Domain, Section
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "activation", run="cdp_spark.activation.stage:run",
    reads=("gold.audience_members", "gold.profiles", "gold.profile_attributes", "gold.profile_scores",
           "gold.activation_state"),
    writes=("gold.activation_state", "ops.deliveries", "gold.activation_records"))
DOMAIN = Domain(
    "activation", stage=STAGE, tables=tuple(TABLES), checks=(audience_link_problems,),
    sections=(Section("destinations", list[Destination], list, "activation destinations (conf/destinations)"),))
