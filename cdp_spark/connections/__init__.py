"""Connections: events forwarded from an input (a source, or the collector) to outputs (webhook, file drop, Delta
table, Kafka topic), each with its data filter, user sampling, consent gate and transformation. Runs per
micro-batch from the collector's stream and as the `connections` stage after batch ingestion."""
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "connections", run="cdp_spark.connections.stage:run",
    reads=("bronze.events", "ops.deliveries"), writes=("gold.forwarded_events", "ops.deliveries"),
    # Events are forwarded as each ingest run lands, enriched with the profiles as they were last built.
    reads_previous=("gold.profiles", "gold.id_graph"))
