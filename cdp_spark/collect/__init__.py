"""Real-time collection: a Segment-compatible HTTP collector (`app`), its durable landing spool (`spool`) and the
exactly-once Structured Streaming job that maps landed events into bronze through the batch ingestion chain
(`stream`). Importing this package is cheap: FastAPI and Spark are imported by the submodules that need them.
"""
from cdp_spark.collect.config import CollectorConfig
from cdp_spark.domain_spec import Domain, Section

# Its commands (`cdp collect serve|stream`) are the CLI's own: they start the runtime.
DOMAIN = Domain("collect", sections=(Section("collector", CollectorConfig, CollectorConfig),))
