"""Tables written by the ingest stage (bronze layer)."""
from __future__ import annotations

from pyspark.sql import types as T

from cdp_spark.table_spec import Column, TableSpec

CONSENT_TYPE = T.ArrayType(T.StructType([
    T.StructField("purpose", T.StringType()), T.StructField("channel", T.StringType()),
    T.StructField("status", T.StringType()), T.StructField("timestamp", T.TimestampType()),
]))

_S, _L, _D, _TS = T.StringType(), T.LongType(), T.DoubleType(), T.TimestampType()
_MAP = T.MapType(_S, _S)
_ISSUES = T.ArrayType(_S)

EVENTS = TableSpec(
    name="bronze.events",
    description="One row per accepted event, mapped to the catalogue and normalised; partitioned by event date.",
    columns=[
        Column("event_id", _S, "source message id, else the SHA-256 of source and raw record (content, not location); "
               "unique per source within the source's `dedup_days`"),
        Column("source", _S, "source name from conf/sources"),
        Column("stream", _S, "stream after route rules; a diverting rule's stream is left out downstream"),
        Column("event_name", _S, "canonical event name"),
        Column("event_time", _TS, "event time, UTC"),
        Column("event_date", T.DateType(), "UTC date of event_time (partition)"),
        Column("identifiers", _MAP, "every normalised identifier of the record: id type -> value", pii="pii"),
        Column("page_url", _S, "page URL", pii="pii"),
        Column("product_id", _S, "product id"),
        Column("category", _S, "product category"),
        Column("order_id", _S, "order id"),
        Column("price", _D, "unit price in `currency`"),
        Column("quantity", _L, "quantity"),
        Column("currency", _S, "ISO-4217 code"),
        Column("revenue", _D, "revenue in `currency`"),
        Column("revenue_reporting", _D, "revenue in the catalogue's reporting currency"),
        Column("properties", _S, "other event properties as a JSON object, with the catalogue event fields that "
               "have no column here", pii="pii"),
        Column("consent", CONSENT_TYPE, "per purpose: channel, status (granted/denied/unknown), timestamp"),
        Column("quality_issues", _ISSUES, "values set to null by normalisers, e.g. invalid:phone"),
        Column("received_at", _TS, "when the stage ingested the record, UTC; from the stream, the receipt time of its "
               "micro-batch (one value per micro-batch, taken when the batch starts)"),
        Column("run_id", _S, "ingest run id"),
        Column("ingest_file", _S, "source file (or table) the record came from"),
        Column("ingest_line", _L, "1-based line in the file (null for parquet, delta, jdbc)"),
    ],
    partition_by=("event_date",),
)

PROFILE_RECORDS = TableSpec(
    name="bronze.profile_records",
    description="Trait-bearing records (CRM and similar): identifiers, traits and consent; snapshot sources write only changes.",
    columns=[
        Column("source", _S, "source name"),
        Column("stream", _S, "stream after route rules (null for Profile API patches); a diverting rule's stream "
               "is left out downstream"),
        Column("record_key", _S, "the source key (snapshot sources), '|'-joined", pii="pii"),
        Column("change_type", _S, "insert, update or delete (snapshot sources); upsert (incremental sources)"),
        Column("identifiers", _MAP, "normalised identifiers: id type -> value", pii="pii"),
        Column("traits", _MAP, "normalised traits: catalogue field -> value as text", pii="pii"),
        Column("consent", CONSENT_TYPE, "per purpose: channel, status, timestamp"),
        Column("record_time", _TS, "the record's own timestamp, UTC, when the source has one"),
        Column("quality_issues", _ISSUES, "values set to null by normalisers"),
        Column("received_at", _TS, "ingest time, UTC"),
        Column("run_id", _S, "ingest run id"),
        Column("ingest_file", _S, "source file"),
        Column("ingest_line", _L, "1-based line in the file"),
    ],
)

QUARANTINE = TableSpec(
    name="bronze.quarantine",
    description="Records rejected by reading checks or expectations, with the raw record and every reason.",
    columns=[
        Column("source", _S, "source name"),
        Column("stream", _S, "stream the record would have gone to"),
        Column("ingest_file", _S, "source file"),
        Column("ingest_line", _L, "1-based line in the file"),
        Column("raw_record", _S, "the record as delivered (text)", pii="sensitive"),
        Column("reasons", _ISSUES, "failed checks, e.g. malformed_csv, too_deep, invalid_encoding, oversize:email, "
               "nul_byte:email, implausible:event_time, email_valid (docs/operations.md lists them all)"),
        Column("run_id", _S, "ingest run id"),
        Column("quarantined_at", _TS, "UTC"),
    ],
)

RAW_KEYS = TableSpec(
    name="bronze.raw_keys",
    description="Every incoming key per source (Lytics' raw keys): type, first/last seen, counts, mapped or not.",
    columns=[
        Column("source", _S, "source name"),
        Column("key", _S, "incoming field name (flattened, dotted)"),
        Column("predicted_type", _S, "string, long, double, boolean, timestamp (text keys: from the first 1,000 "
               "records of each input partition) or a Spark type"),
        Column("first_seen", _TS, "first ingest that saw a value"),
        Column("last_seen", _TS, "latest ingest that saw a value"),
        Column("times_seen", _L, "records with a non-null value"),
        Column("approx_distinct", _L, "approximate distinct values (HLL), across all runs"),
        Column("distinct_sketch", T.BinaryType(), "HLL sketch behind approx_distinct"),
        Column("mapped", T.BooleanType(), "whether the source maps this key to the catalogue"),
    ],
    keys=("source", "key"),
)

INGESTED_FILES = TableSpec(
    name="bronze.ingested_files",
    description="The file ledger: each landed file's content once, with its outcome and counts (rows_read = "
                "rows_accepted + rows_quarantined + rows_duplicate + records suppressed for erased people).",
    columns=[
        Column("source", _S, "source name"),
        Column("path", _S, "path relative to the source's folder (the collector's: to its landing folder); for "
               "tables, the configured location"),
        Column("size", _L, "bytes"),
        Column("content_hash", _S, "SHA-256 of the file's bytes: a file is identified by size and hash"),
        Column("modified_at", _TS, "file modification time"),
        Column("version", _L, "1, or higher when a changed re-delivery was ingested as a new version"),
        Column("status", _S, "ingested, duplicate_file (content already ingested under another path), unchanged "
               "(same content, new modification time), rejected_changed, superseded, failed (reading failed; "
               "retried up to 3 runs), unreadable (a compression Spark cannot read), refused_deletes (a snapshot "
               "delivery that would delete too many keys; offered again next run) or rewritten (an erasure "
               "removed records from the file: its new size and hash)"),
        Column("error", _S, "why a failed or unreadable file could not be read (error type only, no data)"),
        Column("rows_read", _L, "records read (non-blank lines or rows)"),
        Column("rows_accepted", _L, "records accepted"),
        Column("rows_quarantined", _L, "records quarantined"),
        Column("rows_duplicate", _L, "records dropped as re-deliveries of an event already accepted"),
        Column("run_id", _S, "ingest run id"),
        Column("ingested_at", _TS, "UTC"),
    ],
    keys=("source", "path", "version"),
)

SNAPSHOT_STATE = TableSpec(
    name="bronze.snapshot_state",
    description="Last delivered snapshot per snapshot source: key, row hash and identifiers, to compute deltas.",
    columns=[
        Column("source", _S, "source name"),
        Column("record_key", _S, "source key", pii="pii"),
        Column("row_hash", _S, "sha-256 of the record's canonical values"),
        Column("identifiers", _MAP, "identifiers, for delete records", pii="pii"),
        Column("run_id", _S, "run that last changed the row"),
    ],
    keys=("source", "record_key"),
)

TABLES = [EVENTS, PROFILE_RECORDS, QUARANTINE, RAW_KEYS, INGESTED_FILES, SNAPSHOT_STATE]
