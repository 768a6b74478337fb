"""Tables owned by privacy: erasure requests and tombstones. Neither ever holds a clear identifier value."""
from __future__ import annotations

from pyspark.sql import types as T

from cdp_spark.table_spec import Column, TableSpec

_S, _L, _TS = T.StringType(), T.LongType(), T.TimestampType()

ERASURE_REQUESTS = TableSpec(
    name="ops.erasure_requests",
    description="Erasure (right to be forgotten) requests: one row per status change (the latest updated_at is "
                "the current state). Identifiers appear only as salted hashes; the clear values live in a 0600 file "
                "under _system/erasure until the request is verified.",
    columns=[
        Column("request_id", _S, "request id (er_...)"),
        Column("requested_at", _TS, "UTC"),
        Column("requested_by", _S, "api:<key id> or cli"),
        Column("identifier_hashes", T.ArrayType(_S), "salted sha-256 of each requested id_type:value"),
        Column("profile_ids", T.ArrayType(_S), "profiles the request resolved to"),
        Column("status", _S, "pending, running, deleted (rows and files gone), verified, or failed"),
        Column("step", _S, "last step done: resolved, tables, serving, files, destinations, models, vacuum, "
                           "tombstones, verify"),
        Column("rows_deleted", T.MapType(_S, _L), "rows deleted per table; also 'destination <name> (removes sent)' "
                                                  "and 'model <id> (profiles scrubbed)'"),
        Column("files_rewritten", _L, "landing and export files rewritten"),
        Column("occurrences", _L, "occurrences found by the last verification scan (null before one)"),
        Column("vacuum_now", T.BooleanType(), "whether old files were vacuumed at once (retention 0)"),
        Column("error", _S, "error type of a failed request, or the destinations that have not acknowledged "
                            "their removes (no PII)"),
        Column("updated_at", _TS, "UTC"),
    ],
)

TOMBSTONES = TableSpec(
    name="ops.tombstones",
    description="Salted hashes of erased identifiers, so that ingestion can suppress data that re-appears. Never "
                "a clear value.",
    columns=[
        Column("id_type", _S, "identifier type"),
        Column("value_hash", _S, "sha-256 hex of salt + id_type + ':' + normalised value"),
        Column("request_id", _S, "erasure request that created it"),
        Column("erased_at", _TS, "UTC"),
    ],
    keys=("id_type", "value_hash"),
)

TABLES = [ERASURE_REQUESTS, TOMBSTONES]
