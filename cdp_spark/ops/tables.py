"""Tables owned by operations: the job ledger and the run leases."""
from __future__ import annotations

from pyspark.sql import types as T

from cdp_spark.table_spec import Column, TableSpec

JOB_RUNS = TableSpec(
    name="ops.job_runs",
    description="One row per job run and per stage of a run: status, timing, parameters, rows in/out, error.",
    columns=[
        Column("run_id", T.StringType(), "run identifier shared by the job row and its stage rows"),
        Column("step", T.StringType(), "'job' for the run itself, else the stage name"),
        Column("job", T.StringType(), "what was run: daily, or a single stage name"),
        Column("as_of", T.DateType(), "the business date the run computes"),
        Column("status", T.StringType(), "running, succeeded, failed or skipped"),
        Column("started_at", T.TimestampType(), "UTC start time"),
        Column("ended_at", T.TimestampType(), "UTC end time; null while running"),
        Column("heartbeat_at", T.TimestampType(), "last time the process reported progress"),
        Column("host", T.StringType(), "host name of the driver"),
        Column("pid", T.IntegerType(), "driver process id, used to detect killed runs"),
        Column("params", T.StringType(), "JSON of the run's parameters (never secrets)"),
        Column("rows_in", T.MapType(T.StringType(), T.LongType()), "rows read, per table or source"),
        Column("rows_out", T.MapType(T.StringType(), T.LongType()), "rows written, per table"),
        Column("metrics", T.StringType(), "JSON of other stage metrics"),
        Column("error", T.StringType(), "error type and message of a failed step (no PII)"),
    ],
    keys=("run_id", "step"),
)

LEASES = TableSpec(
    name="ops.leases",
    description="Run leases (locks) on the lake: who holds each, until when; a dead or expired holder is taken over.",
    columns=[
        Column("name", T.StringType(), "lease name, e.g. pipeline"),
        Column("holder", T.StringType(), "run id of the holder; null when free"),
        Column("job", T.StringType(), "what the holder runs: daily, a stage name, maintain"),
        Column("host", T.StringType(), "host name of the holder's driver"),
        Column("pid", T.IntegerType(), "holder's process id, to detect a crashed holder on the same host"),
        Column("acquired_at", T.TimestampType(), "UTC time the holder took the lease"),
        Column("heartbeat_at", T.TimestampType(), "UTC time of the holder's last renewal"),
        Column("expires_at", T.TimestampType(), "UTC time after which anyone may take the lease over"),
        Column("released_at", T.TimestampType(), "UTC time of release; null while held"),
    ],
    keys=("name",),
)

TABLES = [JOB_RUNS, LEASES]
