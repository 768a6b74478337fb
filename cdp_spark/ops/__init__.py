"""Operational tables and services: the job ledger, run leases, resume, maintenance, status, logs and the report."""
from cdp_spark.domain_spec import Domain
from cdp_spark.ops.tables import TABLES

DOMAIN = Domain("ops", tables=tuple(TABLES),
                cli=(("maintain", "cdp_spark.ops.cli:maintain"), ("status", "cdp_spark.ops.cli:status"),
                     ("report", "cdp_spark.ops.cli:report")))
