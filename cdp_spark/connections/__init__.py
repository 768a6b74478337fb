"""Connections: events forwarded from an input (a source, or the collector) to outputs (webhook, file drop, Delta
table, Kafka topic), each with its data filter, user sampling, consent gate and transformation. Runs per
micro-batch from the collector's stream and as the `connections` stage after batch ingestion."""
