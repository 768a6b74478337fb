"""Connections: events forwarded from an input (a source, or the collector) to outputs (webhook, file drop, Delta
table, Kafka topic), each with its data filter, user sampling, consent gate and transformation. Runs per
micro-batch from the collector's stream and as the `connections` stage after profiles."""
from cdp_spark.connections.config import Connection, connection_problems
from cdp_spark.connections.tables import TABLES
from cdp_spark.domain_spec import Domain, Section
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "connections", run="cdp_spark.connections.stage:run",
    # After profiles, so that the consent gate and the traits are the day's.
    reads=("bronze.events", "ops.deliveries", "gold.profiles", "gold.id_graph"),
    writes=("gold.forwarded_events", "ops.deliveries"))
DOMAIN = Domain(
    "connections", stage=STAGE, tables=tuple(TABLES), checks=(connection_problems,),
    sections=(Section("connections", list[Connection], list, "event forwarding (conf/connections)"),))
