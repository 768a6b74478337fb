"""The `ingest` stage: every configured source -> bronze, each landed file exactly once, counts reconciled.

Example:
    >>> result = run(spark, config, lake, date(2026, 11, 1))              # doctest: +SKIP
    >>> result.metrics["sources"]["web"]["reconciled"]                   # doctest: +SKIP
    True
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from cdp_spark.ingest import chain, keystats
from cdp_spark.ingest.files import REFUSED, FileAction, plan_files
from cdp_spark.ingest.readers import LandedFile, discover, existing, read_files, read_table
from cdp_spark.ingest.sources import Source
from cdp_spark.ingest.tables import EVENTS, INGESTED_FILES, PROFILE_RECORDS, QUARANTINE, SNAPSHOT_STATE
from cdp_spark.lake import Txn, utc_now
from cdp_spark.ops import progress
from cdp_spark.pipeline import StageResult
from cdp_spark.privacy.tombstones import suppression

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)

# Deserialized (columnar) cache, as `DataFrame.cache()` uses: PySpark's `StorageLevel.MEMORY_AND_DISK` is the
# *serialized* level, which also serializes every cached batch on write and deserializes it on every scan.
CACHE_LEVEL = StorageLevel.MEMORY_AND_DISK_DESER


class ExpectationFailed(RuntimeError):
    """An expectation with action `fail` was violated; nothing of that source was written."""


class SnapshotDeletesRefused(RuntimeError):
    """A snapshot delivery would delete more than the source's ``max_delete_share`` of its current keys (an empty
    or truncated export, typically); nothing of it was applied. The message names no record."""


def allow_snapshot_deletes(config: "CdpConfig", names: list[str]) -> "CdpConfig":
    """A config copy in which the named snapshot sources accept any share of deletes (one run's explicit override).

    Example:
        >>> allow_snapshot_deletes(config, ["crm"]).sources[1].max_delete_share      # doctest: +SKIP
        1.0
    """
    snapshots = {s.name for s in config.sources if s.load_mode == "snapshot"}
    unknown = sorted(set(names) - snapshots)
    if unknown:
        raise ValueError(f"--allow-snapshot-deletes: {', '.join(unknown)} is not a snapshot source "
                         f"(snapshot sources: {', '.join(sorted(snapshots)) or 'none'})")
    sources = [s.model_copy(update={"max_delete_share": 1.0}) if s.name in names else s for s in config.sources]
    return config.model_copy(update={"sources": sources})


def template_paths(config: "CdpConfig") -> dict[str, str]:
    """Placeholders usable in source paths: {demo_dir} and {lake_root}."""
    return {"demo_dir": config.demo_dir.rstrip("/"), "lake_root": config.lake.root.rstrip("/")}


def run(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date) -> StageResult:
    """Ingest every source; returns per-source read/accepted/quarantined counts for the ledger."""
    result = StageResult(metrics={"sources": {}})
    for done, source in enumerate(config.sources, 1):
        stats = ingest_source(spark, config, lake, source, as_of)
        result.metrics["sources"][source.name] = stats
        result.rows_in[f"source.{source.name}"] = stats["read"]
        for table, rows in stats["written"].items():
            result.rows_out[table] = result.rows_out.get(table, 0) + rows
        progress.advance(done, len(config.sources), "sources")
    refused = [s["refused"] for s in result.metrics["sources"].values() if s.get("refused")]
    if refused:  # the other sources are ingested; the run still fails so that a person looks at the delivery
        raise SnapshotDeletesRefused("; ".join(refused))
    return result


def _known_files(lake: "Lake", source: str) -> dict[str, dict[str, Any]]:
    if not lake.exists(INGESTED_FILES.name):
        return {}
    rows = (lake.read(INGESTED_FILES.name).where(F.col("source") == source)
            .select("path", "size", "modified_at", "version", "status").collect())
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.path not in latest or r.version > latest[r.path]["version"]:
            latest[r.path] = r.asDict()
    return latest


def _batch_id(source: Source, actions: list[FileAction], extra: str = "") -> str:
    h = hashlib.sha256(source.name.encode())
    for a in sorted(actions, key=lambda a: a.file.path):
        h.update(f"|{a.file.path}|{a.file.size}|{a.file.modified_at}|{a.version}".encode())
    h.update(extra.encode())
    return h.hexdigest()[:16]


def ingest_source(spark: SparkSession, config: "CdpConfig", lake: "Lake", source: Source, as_of: dt.date) -> dict[str, Any]:
    """Ingest one source's new data; idempotent (Txn tokens derived from the batch's files)."""
    paths = template_paths(config)
    stats: dict[str, Any] = {"read": 0, "accepted": 0, "quarantined": 0, "suppressed": 0, "warned": {}, "written": {},
                             "files_ingested": 0, "files_skipped": 0, "files_rejected": 0, "files_missing": 0,
                             "files_superseded": 0, "empty_files": 0}
    known = _known_files(lake, source.name)
    location = (source.path or "").format(**paths)
    if source.kind == "files":
        plan = plan_files(discover(spark, source, location), known, source.on_changed_file, source.load_mode == "snapshot")
    else:
        # A table is one "file": its Delta version (or, for JDBC, the as-of date) says whether it is new.
        version = lake_version(lake, location) if source.kind == "delta" else int(as_of.strftime("%Y%m%d"))
        landed = LandedFile(location if source.kind == "delta" else f"jdbc:{source.options['dbtable']}", version,
                            dt.datetime(2000, 1, 1))
        plan = plan_files([landed], known, "new_version")
    stats["files_skipped"] = len(plan.skipped)
    stats["files_rejected"] = len(plan.rejected)
    stats["files_superseded"] = len(plan.superseded)
    if plan.rejected:
        log.warning("source %s: %d re-delivered file(s) changed and were rejected (on_changed_file: reject)",
                    source.name, len(plan.rejected))
    batch = _batch_id(source, plan.ingest + plan.rejected + plan.superseded)
    txn = Txn(f"ingest.{source.name}.{batch}", 1)
    run_id = f"ingest-{as_of:%Y%m%d}-{batch[:8]}"
    now = utc_now()
    received_at = F.lit(now).cast("timestamp")
    ledger_rows: list[tuple[Any, ...]] = []

    def ledger_row(a: FileAction, status: str, read: int = 0, acc: int = 0, quar: int = 0) -> tuple[Any, ...]:
        return (source.name, a.file.path, int(a.file.size), a.file.modified_at, a.version, status, read, acc, quar, run_id, now)

    ledger_rows += [ledger_row(a, "rejected_changed") for a in plan.rejected]
    ledger_rows += [ledger_row(a, "superseded") for a in plan.superseded]
    if plan.ingest:
        file_paths = [a.file.path for a in plan.ingest]
        # Not cached: `process_batch` reads it once, into its cached checked rows.
        raw = read_files(spark, source, file_paths) if source.kind == "files" else read_table(spark, lake, source, location)
        try:
            written, per_file = process_batch(spark, config, lake, source, raw, txn, run_id, received_at, paths, stats)
        except SnapshotDeletesRefused as exc:
            log.error("%s", exc)
            stats.update(refused=str(exc), refused_records=stats["read"], accepted=0, quarantined=0)
            ledger_rows += [ledger_row(a, REFUSED, stats["read"]) for a in plan.ingest]
            lake.append_rows(INGESTED_FILES.name, ledger_rows, txn=txn)
            stats["reconciled"] = stats["read"] == stats["refused_records"] + stats["suppressed"]
            return stats
        for a in plan.ingest:
            read, acc, quar = per_file.get(a.file.path, (0, 0, 0))
            if read == 0 and source.kind == "files" and not existing(spark, [a.file.path]):
                stats["files_missing"] += 1  # gone before it could be read: not recorded, so a later run retries
                log.warning("source %s: a listed file disappeared before it was read; it will be retried", source.name)
                continue
            stats["empty_files"] += int(read == 0)
            stats["files_ingested"] += 1
            ledger_rows.append(ledger_row(a, "ingested", read, acc, quar))
        stats["written"] = written
    if ledger_rows:
        lake.append_rows(INGESTED_FILES.name, ledger_rows, txn=txn)
    stats["reconciled"] = stats["read"] == stats["accepted"] + stats["quarantined"] + stats.get("suppressed", 0)
    return stats


def lake_version(lake: "Lake", path: str) -> int:
    from deltalake import DeltaTable

    return int(DeltaTable(path, storage_options=lake.storage_options).version())


def process_batch(spark, config, lake, source, raw, txn, run_id, received_at, paths, stats, *,  # type: ignore[no-untyped-def]
                  key_sink=None):
    """Run one raw batch through the chain and write bronze: shared by batch files and streaming micro-batches.

    Fills ``stats`` (read/accepted/quarantined/suppressed/warned) and returns (rows written per table, per-file counts).
    Every write carries ``txn``, so a replayed batch writes nothing twice. The batch's key stats are folded into
    bronze.raw_keys at once, or handed to ``key_sink(stats_frame)`` (the stream keeps them pending, see
    `keystats.PendingKeyStats`).
    """
    # Key stats and expectation counts are observed (`DataFrame.observe`) on the way into the cache, so neither the
    # raw key columns nor the warning arrays are kept in it: at 10M records the wider cache did not fit in memory,
    # and blocks spilled to disk were deserialized (and offered to memory again) by every later pass.
    keys = key_columns(raw, source)
    carry = [f"__key_stats_{i}" for i in range(len(keys))]
    key_types = [f.dataType for f in raw.select(*[value for _, value in keys]).schema.fields] if keys else []
    raw = raw.select("*", *[value.alias(c) for c, (_, value) in zip(carry, keys)],
                     keystats.sample_flag().alias("__key_sample"))
    checked = chain.prepare(spark, raw, source, config.catalogue, config.routes, paths=paths,
                            carry=[*carry, "__key_sample"])
    # Privacy: a record carrying an erased (tombstoned) identifier is only counted as suppressed, never written.
    hit = suppression(spark, config, lake, chain.identifiers_column(checked, config.catalogue))
    checked = checked.withColumn("_suppressed", hit if hit is not None else F.lit(False))
    live = ~F.col("_suppressed")
    names = [e.name for e in source.expectations if e.action in ("warn", "fail")]
    flagged = F.concat("_warnings", "_fatal")
    observation = Observation(f"ingest_{source.name}")
    metrics = [*keystats.aggregates([(F.col(c), t) for c, t in zip(carry, key_types)], F.col("__key_sample")),
               *[F.count(F.when(live & F.array_contains(flagged, n), 1)).alias(f"c{i}") for i, n in enumerate(names)]]
    if metrics:
        checked = checked.observe(observation, *metrics)
    # The raw text is kept for what still needs it: quarantine, and the fallback id of an event without one.
    if source.role == "profiles":
        no_id = F.lit(False)
    else:
        no_id = F.col("event_id").isNull() if "event_id" in checked.columns else F.lit(True)
    needs_raw = (F.size("_reasons") > 0) | no_id
    dropped = {*carry, "__key_sample", "_warnings", "_fatal", "_error", "_raw"}
    checked = checked.select(*[F.col(f"`{c}`") for c in checked.columns if c not in dropped],
                             F.when(needs_raw, F.col("_raw")).alias("_raw"))
    checked = checked.persist(CACHE_LEVEL)
    try:
        # One pass builds the cache and counts everything: per-file reconciliation and the rows of every output
        # (so the writes below need no count of their own), with the observed metrics alongside.
        ok = (F.size("_reasons") == 0) & live
        outputs = chain.output_flags(checked, source, config.catalogue)
        rows = checked.groupBy("_file").agg(
            F.count(F.lit(1)).alias("n"), F.count(F.when(ok, 1)).alias("acc"), F.count(F.when(~live, 1)).alias("sup"),
            *[F.count(F.when(ok & flag, 1)).alias(f"out_{table}") for table, flag in outputs.items()],
        ).collect()
        # (read, accepted, quarantined): the ledger's rows_read - rows_accepted - rows_quarantined is the suppressed.
        per_file = {r["_file"]: (int(r["n"]), int(r["acc"]), int(r["n"] - r["acc"] - r["sup"])) for r in rows}
        stats["read"] = sum(v[0] for v in per_file.values())
        # Observed metrics of an empty batch may never arrive (Spark can optimise an empty plan away): not waited for.
        totals = observation.get if metrics and stats["read"] else {}
        stats["suppressed"] = sum(int(r["sup"]) for r in rows)
        by_name = {n: int(totals.get(f"c{i}", 0)) for i, n in enumerate(names)}
        out_rows = {t: sum(int(r[f"out_{t}"]) for r in rows) for t in outputs}
        fatal = {e.name: by_name[e.name] for e in source.expectations if e.action == "fail" and by_name.get(e.name)}
        if fatal:
            detail = ", ".join(f"{n}: {c} record(s)" for n, c in fatal.items())
            raise ExpectationFailed(f"source {source.name}: expectations with action 'fail' were violated ({detail}); "
                                    "nothing from this batch was written")
        stats["warned"] = {e.name: by_name[e.name] for e in source.expectations if e.action == "warn"}
        stats["accepted"] = sum(v[1] for v in per_file.values())
        stats["quarantined"] = sum(v[2] for v in per_file.values())
        accepted, quarantined = chain.split(checked.where(live))
        written: dict[str, int] = {}
        if source.role in ("events", "both"):
            events = chain.to_events(accepted, source, config.catalogue, run_id, received_at)
            written[EVENTS.name] = _append(lake, EVENTS.name, events, txn, out_rows[EVENTS.name])
        if source.role in ("profiles", "both"):
            if source.load_mode == "snapshot":
                written[PROFILE_RECORDS.name] = _snapshot_changes(spark, lake, source, config, checked.where(live),
                                                                  accepted, txn, run_id, received_at, stats)
            else:
                records = chain.to_profile_records(accepted, source, config.catalogue, run_id, received_at)
                written[PROFILE_RECORDS.name] = _append(lake, PROFILE_RECORDS.name, records, txn,
                                                        out_rows[PROFILE_RECORDS.name])
        written[QUARANTINE.name] = _append(lake, QUARANTINE.name, chain.to_quarantine(quarantined, source, run_id, received_at),
                                           txn, stats["quarantined"])
        if keys and stats["read"]:
            _update_keys(spark, lake, source, [(name, t) for (name, _), t in zip(keys, key_types)], totals, txn,
                         received_at, key_sink)
        return written, per_file
    finally:
        checked.unpersist()


def _append(lake: "Lake", name: str, df: DataFrame, txn: Txn, rows: int | None = None) -> int:
    """Append ``df`` (its row count ``rows`` known from the batch's counting pass; counted here otherwise)."""
    if rows is None:
        df = df.persist(CACHE_LEVEL)
    try:
        rows = df.count() if rows is None else rows
        if rows or not lake.exists(name):
            lake.append(name, df, txn=txn)
        return rows
    finally:
        df.unpersist()


def key_columns(raw: DataFrame, source: Source) -> list[tuple[str, Column]]:
    """(key, expression over ``raw``) of every incoming key of the source, for `keystats.aggregates`.

    Keys are leaf fields: nested records are flattened as the source's flatten enricher does (default 3 levels);
    names starting with ``_`` are the chain's own columns, not keys.

    Example:
        >>> [k for k, _ in key_columns(raw, source)][:2]      # doctest: +SKIP
        ['anonymousId', 'context.page.url']
    """
    from cdp_spark.ingest.enrichers import flat_columns
    from cdp_spark.ingest.sources import Flatten

    depth = next((e.depth for e in source.enrichers if isinstance(e, Flatten)), 3)
    return [(name, value) for name, value in flat_columns(raw, depth) if not name.startswith("_")]


def _update_keys(spark: SparkSession, lake: "Lake", source: Source, keys: list[tuple[str, Any]], totals: Any,
                 txn: Txn, seen_at: Any, key_sink: Any = None) -> None:
    """The batch's key stats (``totals``: the observed `keystats.aggregates` of ``keys``) into bronze.raw_keys (one
    MERGE), or to ``key_sink`` (first/last seen left null)."""
    # A sink stamps the time itself: a per-batch time literal would make Spark generate and compile the key-stats
    # code again for every micro-batch, instead of reusing it.
    stamp = F.lit(None).cast("timestamp") if key_sink is not None else seen_at
    batch = keystats.from_totals(spark, source, keys, totals, stamp)
    if key_sink is not None:
        key_sink(batch)
    else:
        keystats.fold(lake, source.name, batch, txn)


def _guard_deletes(source: Source, old: DataFrame, gone: DataFrame) -> None:
    """Refuse a delivery that would delete more than ``max_delete_share`` of the current keys."""
    if source.max_delete_share >= 1:
        return
    n_gone = gone.count()
    n_old = old.count() if n_gone else 0
    if n_gone and n_gone > source.max_delete_share * n_old:
        raise SnapshotDeletesRefused(
            f"source {source.name}: the snapshot delivery would delete {n_gone:,} of its {n_old:,} current keys "
            f"({n_gone / n_old:.0%}, more than max_delete_share {source.max_delete_share:.0%}); nothing of it was "
            f"applied. If the deletions are real, run `cdp run ingest --allow-snapshot-deletes {source.name}`")


def _snapshot_changes(spark, lake, source, config, checked, accepted, txn, run_id, received_at, stats):  # type: ignore[no-untyped-def]
    """Profile records for inserted, updated and deleted keys only, and the new snapshot state."""
    from pyspark.sql import Window

    fields = [f for f in source.mapping if f in accepted.columns]
    latest = Window.partitionBy("_record_key").orderBy(F.col("_file").desc(), F.col("_line").desc())
    current = (accepted.where(F.col("_record_key").isNotNull())
               .withColumn("_rn", F.row_number().over(latest)).where("_rn = 1").drop("_rn")
               .withColumn("_hash", F.sha2(F.to_json(F.struct(*[F.col(f) for f in fields], F.col("_consent"))), 256)))
    if lake.exists(SNAPSHOT_STATE.name):
        old = lake.read(SNAPSHOT_STATE.name).where(F.col("source") == source.name)
    else:
        old = spark.createDataFrame([], SNAPSHOT_STATE.schema)
    old = old.select(F.col("record_key").alias("_old_key"), F.col("row_hash").alias("_old_hash"),
                     F.col("identifiers").alias("_old_ids"))
    joined = current.join(old, current["_record_key"] == old["_old_key"], "left")
    change = F.when(F.col("_old_key").isNull(), "insert").when(F.col("_old_hash") != F.col("_hash"), "update")
    changed = joined.withColumn("_change", change).where(F.col("_change").isNotNull())
    upserts = chain.to_profile_records(changed, source, config.catalogue, run_id, received_at, F.col("_change"))
    seen = checked.where(F.col("_record_key").isNotNull()).select(F.col("_record_key").alias("_seen")).distinct()
    gone = old.join(seen, old["_old_key"] == seen["_seen"], "left_anti")
    _guard_deletes(source, old, gone)
    deletes = gone.select(
        F.lit(source.name).alias("source"), F.col("_old_key").alias("record_key"), F.lit("delete").alias("change_type"),
        F.col("_old_ids").alias("identifiers"), F.create_map().cast("map<string,string>").alias("traits"),
        F.array().cast(chain.CONSENT_TYPE).alias("consent"), F.lit(None).cast("timestamp").alias("record_time"),
        F.array().cast("array<string>").alias("quality_issues"), received_at.alias("received_at"),
        F.lit(run_id).alias("run_id"), F.lit(None).cast("string").alias("ingest_file"), F.lit(None).cast("long").alias("ingest_line"),
    )
    written = _append(lake, PROFILE_RECORDS.name, upserts.unionByName(deletes), txn)
    # New state: every key seen now (quarantined keys keep their previous state), minus the deleted ones.
    kept = old.join(current.select(F.col("_record_key").alias("_k")), old["_old_key"] == F.col("_k"), "left_anti").join(
        seen, old["_old_key"] == seen["_seen"], "inner")
    state = current.select(F.lit(source.name).alias("source"), F.col("_record_key").alias("record_key"),
                           F.col("_hash").alias("row_hash"), chain.identifiers_column(current, config.catalogue).alias("identifiers"),
                           F.lit(run_id).alias("run_id")).unionByName(
        kept.select(F.lit(source.name).alias("source"), F.col("_old_key").alias("record_key"), F.col("_old_hash").alias("row_hash"),
                    F.col("_old_ids").alias("identifiers"), F.lit(run_id).alias("run_id")))
    lake.merge(SNAPSHOT_STATE.name, state, delete_unmatched=True, delete_where=f"t.source = '{source.name}'", txn=txn)
    stats["snapshot_changes"] = written
    return written
