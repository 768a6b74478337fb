"""Tables owned by the Profile API: the call audit."""
from __future__ import annotations

from pyspark.sql import types as T

from cdp_spark.table_spec import Column, TableSpec

_S, _I, _TS, _D = T.StringType(), T.IntegerType(), T.TimestampType(), T.DateType()

API_AUDIT = TableSpec(
    name="ops.api_audit",
    description="One row per Profile API call: key id, action, profile id, time, status. Never PII values; "
                "buffered and appended in one commit per flush.",
    columns=[
        Column("at", _TS, "UTC time the call was answered"),
        Column("at_date", _D, "UTC date of `at` (partition)"),
        Column("org_id", _S, "organisation of the API"),
        Column("key_id", _S, "id of the API key used (never the secret); null when none or unknown"),
        Column("action", _S, "read, patch, erase, erasure_status or refused"),
        Column("method", _S, "HTTP method"),
        Column("route", _S, "route template, e.g. /v1/profiles/{id_type}/{value} (never the values)"),
        Column("id_type", _S, "identifier type looked up, when the call used one"),
        Column("profile_id", _S, "profile the call resolved to, when it did"),
        Column("status", _I, "HTTP status code answered"),
        Column("duration_ms", T.DoubleType(), "server-side time"),
        Column("request_id", _S, "per-call id, also sent as the X-Request-Id header"),
    ],
    partition_by=("at_date",),
)

TABLES = [API_AUDIT]
