"""Tables written by the audiences stage: current members, the change log and daily sizes."""
from __future__ import annotations

from pyspark.sql import types as T

from cdp_spark.table_spec import Column, TableSpec

_S, _L, _TS, _D = T.StringType(), T.LongType(), T.TimestampType(), T.DateType()

AUDIENCE_MEMBERS = TableSpec(
    name="gold.audience_members",
    description="Current members of every audience: one row per (audience, profile), with the A/B variant.",
    columns=[
        Column("audience", _S, "audience name (conf/audiences)"),
        Column("profile_id", _S, "member profile"),
        Column("variant", _S, "A/B variant from a stable hash of profile_id and the audience's salt"),
        Column("entered_at", _TS, "as-of time (end of the as-of day, UTC) of the run the profile entered in"),
    ],
    keys=("audience", "profile_id"),
)

AUDIENCE_CHANGES = TableSpec(
    name="gold.audience_changes",
    description="Audience entries and exits per run; a re-run of the same as-of on the same inputs adds nothing.",
    columns=[
        Column("audience", _S, "audience name"),
        Column("profile_id", _S, "profile that entered or exited (a merged-away id exits)"),
        Column("change", _S, "entered or exited"),
        Column("run_id", _S, "audiences run id: as-of date and input fingerprint"),
        Column("at", _TS, "as-of time of the run (end of the as-of day, UTC)"),
    ],
)

AUDIENCE_SIZES = TableSpec(
    name="gold.audience_sizes",
    description="Audience size per as-of date, with entries, exits and volatility ((entered + exited) / previous size).",
    columns=[
        Column("audience", _S, "audience name"),
        Column("as_of", _D, "as-of date"),
        Column("size", _L, "members after the run"),
        Column("entered", _L, "profiles that entered in the run"),
        Column("exited", _L, "profiles that exited in the run"),
        Column("volatility", T.DoubleType(), "(entered + exited) / max(previous size, 1)"),
    ],
    keys=("audience", "as_of"),
)

AUDIENCE_EXPORTS = TableSpec(
    name="ops.audience_exports",
    description="Audit of every `cdp audience export`: who exported which audience where, under which consent "
                "gate, whether clear PII was included, and what was written (no member data).",
    columns=[
        Column("export_id", _S, "export id (ax_...)"),
        Column("exported_at", _TS, "UTC"),
        Column("audience", _S, "audience name"),
        Column("exported_by", _S, "operating-system user who ran the export", pii="pii"),
        Column("host", _S, "machine it ran on"),
        Column("target", _S, "output file (absolute path) or 'stdout'"),
        Column("consent", T.ArrayType(_S), "purposes every exported member had granted"),
        Column("include_pii", T.BooleanType(), "clear identifiers (--include-pii) instead of masked ones"),
        Column("members", _L, "current members outside holdout variants"),
        Column("holdouts_excluded", _L, "members of holdout variants, never exported"),
        Column("skipped_consent", _L, "members left out for lack of consent"),
        Column("rows", _L, "rows written"),
        Column("sha256", _S, "SHA-256 of the bytes written"),
    ],
)

TABLES = [AUDIENCE_MEMBERS, AUDIENCE_CHANGES, AUDIENCE_SIZES, AUDIENCE_EXPORTS]
