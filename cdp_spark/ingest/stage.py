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
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from cdp_spark.ingest import chain, keystats
from cdp_spark.ingest.files import REFUSED, FileAction, known_unchanged, plan_files
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
    """Ingest every source; returns per-source read/accepted/quarantined/duplicates counts for the ledger."""
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


def source_location(config: "CdpConfig", source: Source) -> str:
    """The source's folder (or table location) with its placeholders filled in."""
    return (source.path or "").format(**template_paths(config))


def relative_path(location: str, path: str) -> str:
    """How the file ledger names a file: by its path relative to the source folder ``location`` (a path or URI), so
    a moved or copied lake keeps the names; a name already relative (or outside the folder) is kept. Older ledgers
    held full URIs: they are read through this too.

    Example:
        >>> relative_path("/lake/landing/web", "file:/lake/landing/web/day=2026-11-01/a.json")
        'day=2026-11-01/a.json'
    """
    from urllib.parse import urlparse

    if "://" not in path and not path.startswith(("file:", "/")):
        return path
    root = urlparse(location).path.rstrip("/") if "://" in location or location.startswith("file:") else location.rstrip("/")
    full = urlparse(path).path
    return full[len(root):].strip("/") if root and full.startswith(root + "/") else path


def _known_files(lake: "Lake", source: Source, location: str) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], int]]:
    """The latest ledger row per (relative) path of the source, and the failed readings per (path, content hash)."""
    if not lake.exists(INGESTED_FILES.name):
        return {}, {}
    rows = (lake.read(INGESTED_FILES.name).where(F.col("source") == source.name)
            .select("path", "size", "content_hash", "modified_at", "version", "status", "ingested_at").collect())
    latest: dict[str, dict[str, Any]] = {}
    failures: dict[tuple[str, str], int] = {}
    for r in rows:
        row = {**r.asDict(), "path": relative_path(location, r.path) if source.kind == "files" else r.path}
        path = row["path"]
        if row["status"] == "failed":
            failures[(path, row["content_hash"])] = failures.get((path, row["content_hash"]), 0) + 1
        if path not in latest or (row["version"], row["ingested_at"]) > (latest[path]["version"], latest[path]["ingested_at"]):
            latest[path] = row
    return latest, failures


def content_hashes(paths: list[str], threads: int = 4,
                   storage_options: dict[str, str] | None = None) -> dict[str, str | None]:
    """SHA-256 (hex) of each file's bytes, read in parallel through pyarrow's file systems; None for a file that
    is gone. The one extra read of a new file's bytes (measured: ~0.7 GB/s per core here), for an identity that
    survives renames and moved lakes; files the ledger already knows by path, size and time are not read.

    Example:
        >>> content_hashes(["file:/landing/web/a.json"])        # doctest: +SKIP
        {'file:/landing/web/a.json': '9f86d08...'}
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(path: str) -> str | None:
        fs, inner = _arrow_fs(path, storage_options)
        digest = hashlib.sha256()
        try:
            # The bytes as delivered: no decompression (pyarrow would detect it from the name).
            with fs.open_input_stream(inner, compression=None) as stream:
                while chunk := stream.read(8 << 20):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        except OSError as exc:
            # Unreadable here (permissions, I/O): no identity, so the file is read as new, fails, and is recorded.
            return f"unhashable:{type(exc).__name__}"
        return digest.hexdigest()

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(paths)))) as pool:
        return dict(zip(paths, pool.map(one, paths))) if paths else {}


def _arrow_fs(path: str, storage_options: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    import pyarrow.fs as pafs
    from urllib.parse import unquote, urlparse

    from cdp_spark.lake.files import filesystem

    if path.startswith("file:") or "://" not in path:
        return pafs.LocalFileSystem(), unquote(urlparse(path).path) if path.startswith("file:") else path
    return filesystem(path, storage_options)  # the lake's store and credentials (s3a:// as s3://)


def _size_and_time(path: str, storage_options: dict[str, str] | None) -> tuple[int, dt.datetime] | None:
    """A file's size and modification time (UTC, naive), local or on object storage; None when it is gone."""
    import pyarrow.fs as pafs

    fs, inner = _arrow_fs(path, storage_options)
    info = fs.get_file_info(inner)
    if info.type != pafs.FileType.File:
        return None
    return info.size or 0, dt.datetime.fromtimestamp((info.mtime_ns or 0) / 1e9, dt.timezone.utc).replace(tzinfo=None)


def refresh_ledger(spark: SparkSession, config: "CdpConfig", lake: "Lake", rewritten: list[str],
                   run_id: str = "erasure") -> int:
    """Record in the file ledger that local files were rewritten in place (an erasure removed records): a row
    `rewritten` with the file's new size, time and content hash, so ingestion takes the file for the one it
    already read, not for a changed delivery. Returns the rows added.

    Example:
        >>> refresh_ledger(spark, config, lake, ["/lake/demo/landing/orders/day=2026-11-01/orders-00000.csv"])  # doctest: +SKIP
        1
    """
    if not rewritten or not lake.exists(INGESTED_FILES.name):
        return 0
    folders = [(s.name, source_location(config, s)) for s in config.sources if s.kind == "files" and s.path]
    collector = getattr(config, "collector", None)
    if collector is not None:
        folders += [(name, f"{collector.landing(config.lake.root)}/{name}") for name in collector.sources]
    facts = {path: _size_and_time(path, config.lake.storage_options) for path in rewritten}
    named = {(name, relative_path(folder, path)): path for path in rewritten if facts[path] is not None
             for name, folder in folders if relative_path(folder, path) != path}
    if not named:
        return 0
    hashes = content_hashes(list(named.values()), storage_options=config.lake.storage_options)
    now = utc_now()
    rows = []
    for name in {source for source, _ in named}:
        known, _ = _known_files(lake, next(s for s in config.sources if s.name == name), dict(folders)[name])
        for (source, relative), path in named.items():
            last = known.get(relative) if source == name else None
            size, mtime = facts[path]  # type: ignore[misc]
            if last is None or (last["size"], last["content_hash"]) == (size, hashes[path]):
                continue
            rows.append((source, relative, size, hashes[path], mtime, int(last["version"]), "rewritten",
                         None, 0, 0, 0, 0, run_id, now))
    lake.append_rows(INGESTED_FILES.name, rows)
    return len(rows)


def _batch_id(source: Source, actions: list[FileAction]) -> str:
    # From the files' ledger names and contents, not their location: a re-run after a crash finds its tokens even
    # when the lake was moved in between.
    h = hashlib.sha256(source.name.encode())
    for a in sorted(actions, key=lambda a: a.path):
        h.update(f"|{a.path}|{a.file.size}|{a.content_hash}|{a.version}".encode())
    return h.hexdigest()[:16]


def failure_reason(exc: BaseException) -> str:
    """Why reading a file failed, as error types only (a message may quote the file's data).

    Example:
        >>> failure_reason(RecursionError("maximum recursion depth exceeded"))
        'RecursionError'
    """
    java = getattr(exc, "java_exception", None)  # py4j's Py4JJavaError
    if java is not None:
        cause = java
        while cause.getCause() is not None:
            cause = cause.getCause()
        return f"{type(exc).__name__}: {cause.getClass().getName()}"
    error_class = exc.getCondition() if hasattr(exc, "getCondition") else None  # pyspark's captured exceptions
    return f"{type(exc).__name__}: {error_class}" if error_class else type(exc).__name__


COUNTERS = ("read", "accepted", "quarantined", "duplicates", "suppressed", "diverted", "refused_records")
FILE_COUNTERS = ("files_ingested", "files_skipped", "files_rejected", "files_missing", "files_superseded",
                 "files_duplicate", "files_unchanged", "files_failed", "files_unreadable", "empty_files")


def ingest_source(spark: SparkSession, config: "CdpConfig", lake: "Lake", source: Source, as_of: dt.date) -> dict[str, Any]:
    """Ingest one source's new data; idempotent (Txn tokens derived from the batch's files).

    A batch whose reading fails before anything was written is split in halves and each half ingested on its own,
    down to single files: a file that still fails is recorded `failed` with the error type (and retried by later
    runs, `files.MAX_FILE_ATTEMPTS` times in all), and the other files are ingested.
    """
    paths = template_paths(config)
    stats: dict[str, Any] = {**dict.fromkeys(COUNTERS, 0), **dict.fromkeys(FILE_COUNTERS, 0), "warned": {},
                             "quarantine_reasons": {}, "written": {}, "problem_files": []}
    location = source_location(config, source)
    known, failures = _known_files(lake, source, location)
    if source.kind == "files":
        landed = discover(spark, source, location)
        hashes = content_hashes([f.path for f in landed if not known_unchanged(f, known.get(f.relative))
                                 or known[f.relative]["status"] in ("failed", REFUSED)],
                                storage_options=config.lake.storage_options)
        plan = plan_files(landed, known, source.on_changed_file, source.load_mode == "snapshot", hashes=hashes,
                          attempts=failures)
    else:
        # A table is one "file": its Delta version (or, for JDBC, the as-of date) says whether it is new.
        version = lake_version(lake, location) if source.kind == "delta" else int(as_of.strftime("%Y%m%d"))
        name = source.path if source.kind == "delta" else f"jdbc:{source.options['dbtable']}"
        landed_table = LandedFile(location if source.kind == "delta" else name, version, dt.datetime(2000, 1, 1),
                                  relative=name or "")
        plan = plan_files([landed_table], known, "new_version", hashes={landed_table.path: str(version)})
    stats["files_skipped"] = len(plan.skipped)
    stats["files_rejected"] = len(plan.rejected)
    stats["files_superseded"] = len(plan.superseded)
    stats["files_duplicate"] = len(plan.duplicate)
    stats["files_unchanged"] = len(plan.unchanged)
    stats["files_unreadable"] = len(plan.unreadable)
    stats["files_missing"] = len(plan.missing)
    if plan.rejected:
        log.warning("source %s: %d re-delivered file(s) changed and were rejected (on_changed_file: reject)",
                    source.name, len(plan.rejected))
    recorded = plan.rejected + plan.superseded + plan.duplicate + plan.unchanged + plan.unreadable
    batch = _batch_id(source, plan.ingest + recorded)
    run_id = f"ingest-{as_of:%Y%m%d}-{batch[:8]}"
    now = utc_now()

    def ledger_row(a: FileAction, status: str, counts: tuple[int, ...] = (0, 0, 0, 0), error: str | None = None,
                   run: str = run_id) -> tuple[Any, ...]:
        read, acc, quar, dup = counts
        return (source.name, a.path, int(a.file.size), a.content_hash, a.file.modified_at, a.version, status, error,
                read, acc, quar, dup, run, now)

    rows = [ledger_row(a, "rejected_changed") for a in plan.rejected]
    rows += [ledger_row(a, "superseded") for a in plan.superseded]
    rows += [ledger_row(a, "duplicate_file") for a in plan.duplicate]
    rows += [ledger_row(a, "unchanged") for a in plan.unchanged]
    rows += [ledger_row(a, "unreadable", error=a.file.problem) for a in plan.unreadable]
    stats["problem_files"] += [{"path": a.path, "status": "unreadable", "error": a.file.problem} for a in plan.unreadable]
    if rows:
        # Its own token, from what is recorded (a renamed file is first a duplicate_file, after a touch unchanged).
        recorded_id = hashlib.sha256(repr(sorted((r[1], r[2], r[3], str(r[4]), r[5], r[6]) for r in rows)).encode())
        lake.append_rows(INGESTED_FILES.name, rows, txn=Txn(f"ingest.{source.name}.recorded.{recorded_id.hexdigest()[:16]}", 1))

    def ingest(actions: list[FileAction]) -> None:
        sub = _batch_id(source, actions) if actions != plan.ingest else batch
        txn = Txn(f"ingest.{source.name}.{sub}", 1)
        sub_run = f"ingest-{as_of:%Y%m%d}-{sub[:8]}"
        part: dict[str, Any] = {**dict.fromkeys(COUNTERS, 0), "warned": {}}
        try:
            raw = (read_files(spark, source, [a.file.path for a in actions]) if source.kind == "files"
                   else read_table(spark, lake, source, location))
            # Not cached: `process_batch` reads it once, into its cached checked rows.
            written, per_file = process_batch(spark, config, lake, source, raw, txn, sub_run,
                                              F.lit(now).cast("timestamp"), paths, part, replay_tag=sub[:8])
        except (ExpectationFailed, AnalysisException):
            raise  # a data-quality stop, or a plan that cannot be built (configuration): not a file's fault
        except SnapshotDeletesRefused as exc:  # nothing was written; the run fails after the other sources
            log.error("%s", exc)
            stats["refused"] = str(exc)
            for key in ("read", "suppressed"):
                stats[key] += part[key]
            stats["refused_records"] += part["read"] - part["suppressed"]
            # One delivery (a snapshot source ingests only its newest): its records are the refused ones.
            lake.append_rows(INGESTED_FILES.name, [ledger_row(a, REFUSED, (part["read"], 0, 0, 0), run=sub_run)
                                                   for a in actions], txn=txn)
            return
        except Exception as exc:  # noqa: BLE001 - a file that cannot be read must not stop the others
            if part.get("writes_started") or source.kind != "files":
                raise  # the batch re-runs whole under the same token: its writes happen once
            if len(actions) > 1:
                log.warning("source %s: a batch of %d files failed (%s); ingesting its halves separately",
                            source.name, len(actions), failure_reason(exc))
                half = len(actions) // 2
                ingest(actions[:half])
                ingest(actions[half:])
                return
            reason = failure_reason(exc)
            log.warning("source %s: a file could not be read (%s); recorded as failed", source.name, reason)
            stats["files_failed"] += 1
            stats["problem_files"].append({"path": actions[0].path, "status": "failed", "error": reason})
            # No token: each failed attempt is a row of its own (later runs count them; see files.MAX_FILE_ATTEMPTS).
            lake.append_rows(INGESTED_FILES.name, [ledger_row(actions[0], "failed", error=reason, run=sub_run)])
            return
        ledger = []
        for a in actions:
            counts = per_file.get(a.file.path, (0, 0, 0, 0))
            if counts[0] == 0 and source.kind == "files" and not existing(spark, [a.file.path]):
                stats["files_missing"] += 1  # gone before it could be read: not recorded, so a later run retries
                log.warning("source %s: a listed file disappeared before it was read; it will be retried", source.name)
                continue
            stats["empty_files"] += int(counts[0] == 0)
            stats["files_ingested"] += 1
            ledger.append(ledger_row(a, "ingested", counts, run=sub_run))
        if ledger:
            lake.append_rows(INGESTED_FILES.name, ledger, txn=txn)
        for key in COUNTERS:
            stats[key] += part[key]
        for name, hits in part["warned"].items():
            stats["warned"][name] = stats["warned"].get(name, 0) + hits
        for reason, n in part.get("quarantine_reasons", {}).items():
            stats["quarantine_reasons"][reason] = stats["quarantine_reasons"].get(reason, 0) + n
        for table, n in written.items():
            stats["written"][table] = stats["written"].get(table, 0) + n

    if plan.ingest:
        ingest(plan.ingest)
    stats["problem_files"] = stats["problem_files"][:20]  # names only, for `cdp status`; the ledger has them all
    stats["reconciled"] = stats["read"] == (stats["accepted"] + stats["quarantined"] + stats["duplicates"]
                                            + stats["suppressed"] + stats["refused_records"])
    return stats


def lake_version(lake: "Lake", path: str) -> int:
    from deltalake import DeltaTable

    return int(DeltaTable(path, storage_options=lake.storage_options).version())


def process_batch(spark, config, lake, source, raw, txn, run_id, received_at, paths, stats, *,  # type: ignore[no-untyped-def]
                  key_sink=None, dedup=True, replay_tag=None, map_keys=None, events_sink=None):
    """Run one raw batch through the chain and write bronze: shared by batch files and streaming micro-batches.

    Fills ``stats`` (read/accepted/quarantined/duplicates/suppressed/diverted/warned, and quarantine_reasons:
    quarantined records per reason, a record with several reasons counted under each) and returns (rows written per
    table, per-file (read, accepted, quarantined, duplicates)). Every write carries ``txn``, so a replayed batch
    writes nothing twice. With ``dedup`` an accepted event whose event_id repeats (in the batch, or in
    bronze.events within the source's `dedup_days`, leaving out rows of runs ending in ``replay_tag``: this very
    batch's earlier attempt) is dropped and counted as a duplicate (see `duplicates`); the stream deduplicates by
    messageId itself. The batch's key stats are folded into bronze.raw_keys at once, or handed to
    ``key_sink(stats_frame)`` (the stream keeps them pending, see `keystats.PendingKeyStats`); ``map_keys`` names
    the keys seen in map columns (see `key_columns`). ``events_sink(events)`` gets the bronze.events rows just
    written (from the batch's cache, while it lasts): the stream forwards them to connections without reading back.
    """
    from cdp_spark.ingest.routes import diverted_streams

    # Key stats and expectation counts are observed (`DataFrame.observe`) on the way into the cache, so neither the
    # raw key columns nor the warning arrays are kept in it: at 10M records the wider cache did not fit in memory,
    # and blocks spilled to disk were deserialized (and offered to memory again) by every later pass.
    keys = key_columns(raw, source, map_keys)
    carry = [f"__key_stats_{i}" for i in range(len(keys))]
    key_types = [f.dataType for f in raw.select(*[value for _, value in keys]).schema.fields] if keys else []
    raw = raw.select("*", *[value.alias(c) for c, (_, value) in zip(carry, keys)],
                     keystats.sample_flag().alias("__key_sample"))
    checked = chain.prepare(spark, raw, source, config.catalogue, config.routes, paths=paths,
                            carry=[*carry, "__key_sample"], received_at=received_at)
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
    events_role = source.role in ("events", "both")
    if events_role:
        # The final event id (a content hash where the source has none) is kept instead of the raw text it needs.
        checked = checked.withColumn("event_id", chain.event_id_column(checked, source))
    # The raw text is kept only for quarantine.
    dropped = {*carry, "__key_sample", "_warnings", "_fatal", "_error", "_raw"}
    checked = checked.select(*[F.col(f"`{c}`") for c in checked.columns if c not in dropped],
                             F.when(F.size("_reasons") > 0, F.col("_raw")).alias("_raw"))
    checked = checked.persist(CACHE_LEVEL)
    cached = [checked]
    try:
        # One pass builds the cache and counts everything: per-file reconciliation and the rows of every output
        # (so the writes below need no count of their own), with the observed metrics alongside.
        ok = (F.size("_reasons") == 0) & live
        outputs = chain.output_flags(checked, source, config.catalogue)
        is_event = outputs.get(EVENTS.name, F.lit(False))
        diverted = diverted_streams(config.routes)
        # By file and, for quarantined records, their reasons (few distinct sets): `cdp status` shows the reasons.
        reasons = F.when(live & (F.size("_reasons") > 0), F.array_sort("_reasons")).alias("_quarantine_reasons")
        rows = checked.groupBy("_file", reasons).agg(
            F.count(F.lit(1)).alias("n"), F.count(F.when(ok, 1)).alias("acc"), F.count(F.when(~live, 1)).alias("sup"),
            F.count(F.when(ok & F.col("stream").isin(*diverted), 1)).alias("div"),
            F.min(F.when(ok & is_event, F.col("_event_time"))).alias("first"),
            F.max(F.when(ok & is_event, F.col("_event_time"))).alias("last"),
            *[F.count(F.when(ok & flag, 1)).alias(f"out_{table}") for table, flag in outputs.items()],
        ).collect()
        per_file: dict[str, tuple[int, int, int, int]] = {}
        by_reason: dict[str, int] = {}
        for r in rows:
            read, acc, quar, _ = per_file.get(r["_file"], (0, 0, 0, 0))
            per_file[r["_file"]] = (read + r["n"], acc + r["acc"], quar + r["n"] - r["acc"] - r["sup"], 0)
            for reason in r["_quarantine_reasons"] or []:
                by_reason[reason] = by_reason.get(reason, 0) + r["n"] - r["acc"] - r["sup"]
        stats["quarantine_reasons"] = by_reason
        stats["read"] = sum(v[0] for v in per_file.values())
        # Observed metrics of an empty batch may never arrive (Spark can optimise an empty plan away): not waited for.
        totals = observation.get if metrics and stats["read"] else {}
        stats["suppressed"] = sum(int(r["sup"]) for r in rows)
        stats["diverted"] = sum(int(r["div"]) for r in rows)
        by_name = {n: int(totals.get(f"c{i}", 0)) for i, n in enumerate(names)}
        out_rows = {t: sum(int(r[f"out_{t}"]) for r in rows) for t in outputs}
        fatal = {e.name: by_name[e.name] for e in source.expectations if e.action == "fail" and by_name.get(e.name)}
        if fatal:
            detail = ", ".join(f"{n}: {c} record(s)" for n, c in fatal.items())
            raise ExpectationFailed(f"source {source.name}: expectations with action 'fail' were violated ({detail}); "
                                    "nothing from this batch was written")
        stats["warned"] = {e.name: by_name[e.name] for e in source.expectations if e.action == "warn"}
        accepted, quarantined = chain.split(checked.where(live))
        times = [t for r in rows for t in (r["first"], r["last"]) if t is not None]
        if dedup and events_role and times:
            has_traits = outputs.get(PROFILE_RECORDS.name, F.lit(False))
            accepted, dups, candidates = duplicates(spark, lake, source, accepted, is_event, has_traits,
                                                    (min(times), max(times)), replay_tag)
            if candidates is not None:
                cached.append(candidates)
            for file, (n, with_traits) in dups.items():
                read, acc, quar, _ = per_file[file]
                per_file[file] = (read, acc - n, quar, n)
                out_rows[EVENTS.name] -= n
                if PROFILE_RECORDS.name in out_rows:
                    out_rows[PROFILE_RECORDS.name] -= with_traits
        stats["accepted"] = sum(v[1] for v in per_file.values())
        stats["quarantined"] = sum(v[2] for v in per_file.values())
        stats["duplicates"] = sum(v[3] for v in per_file.values())
        written: dict[str, int] = {}
        stats["writes_started"] = True  # from here on a failure is the batch's, re-run whole under its token
        if events_role:
            events = chain.to_events(accepted, source, config.catalogue, run_id, received_at)
            written[EVENTS.name] = _append(lake, EVENTS.name, events, txn, out_rows[EVENTS.name])
            if events_sink is not None:
                events_sink(events)
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
        for frame in cached:
            frame.unpersist()


def duplicates(spark: SparkSession, lake: "Lake", source: Source, accepted: DataFrame, is_event: Column,
               has_traits: Column, times: tuple[dt.datetime, dt.datetime], replay_tag: str | None
               ) -> tuple[DataFrame, dict[str, tuple[int, int]], DataFrame | None]:
    """``accepted`` without re-delivered events; per file (duplicates, of which profile records too); and the
    cached frame of the candidate rows behind the result (the caller unpersists it after the writes), if any.

    An accepted event is a duplicate when an event with its event_id was already kept (earlier in the batch, by
    file and line, or in bronze.events for this source) at an event date at most the source's `dedup_days` from
    its own. So a batch decides as the same files ingested one run at a time would, and only bronze.events
    partitions within the horizon of the batch's event dates are read, only their ids. Cheap when nothing repeats:
    one pass over the cached batch's 64-bit id hashes (a narrow shuffle) finds the candidate ids; only candidates
    are compared by their real id and date, on the driver (re-deliveries are few).

    Example:
        >>> kept, per_file, cached = duplicates(spark, lake, source, accepted, F.lit(True), F.lit(False),
        ...                                     (first, last), None)                     # doctest: +SKIP
    """
    horizon = source.dedup_days
    events = accepted.where(is_event).select("*", F.xxhash64("event_id").alias("_h"))
    prior = None
    if lake.exists(EVENTS.name):
        span = dt.timedelta(days=horizon)
        prior = lake.read(EVENTS.name).where(
            (F.col("event_date") >= F.lit((times[0] - span).date())) & (F.col("event_date") <= F.lit((times[1] + span).date()))
            & (F.col("source") == source.name))
        if replay_tag:
            prior = prior.where(~F.col("run_id").endswith(f"-{replay_tag}"))
        prior = prior.select("event_id", "event_date", F.xxhash64("event_id").alias("_h"))
    seen = events.select("_h", F.lit(1).alias("_batch"), F.lit(0).alias("_prior"))
    if prior is not None:
        seen = seen.unionByName(prior.select("_h", F.lit(0).alias("_batch"), F.lit(1).alias("_prior")))
    candidates = (seen.groupBy("_h").agg(F.sum("_batch").alias("b"), F.max("_prior").alias("p"))
                  .where((F.col("b") > 1) | ((F.col("b") == 1) & (F.col("p") == 1))).select("_h").collect())
    if not candidates:
        return accepted, {}, None
    hashes = F.broadcast(spark.createDataFrame([(r[0],) for r in candidates], "_h long"))
    kept: dict[str, list[dt.date]] = {}
    if prior is not None:
        for r in prior.join(hashes, "_h", "left_semi").select("event_id", "event_date").distinct().collect():
            kept.setdefault(r[0], []).append(r[1])
    rows = events.join(hashes, "_h", "left_semi").drop("_h").withColumn("_rid", F.monotonically_increasing_id())
    rows = rows.persist(CACHE_LEVEL)
    found = rows.select("_rid", "event_id", F.to_date("_event_time").alias("_date"), "_file", "_line",
                        has_traits.alias("_traits")).collect()
    dup_ids, per_file = [], {}
    for r in sorted(found, key=lambda r: (r["_file"], -1 if r["_line"] is None else r["_line"], r["_rid"])):
        dates = kept.setdefault(r["event_id"], [])
        if any(abs((r["_date"] - d).days) <= horizon for d in dates):
            dup_ids.append((r["_rid"],))
            n, t = per_file.get(r["_file"], (0, 0))
            per_file[r["_file"]] = (n + 1, t + int(bool(r["_traits"])))
        else:
            dates.append(r["_date"])
    drop = F.broadcast(spark.createDataFrame(dup_ids, "_rid long"))
    others = accepted.where(~is_event).unionByName(
        accepted.where(is_event).join(hashes.withColumnRenamed("_h", "_c"), F.xxhash64("event_id") == F.col("_c"),
                                      "left_anti"))
    return others.unionByName(rows.join(drop, "_rid", "left_anti").drop("_rid")), per_file, rows


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


def key_columns(raw: DataFrame, source: Source, map_keys: dict[str, list[str]] | None = None) -> list[tuple[str, Column]]:
    """(key, expression over ``raw``) of every incoming key of the source, for `keystats.aggregates`.

    Keys are leaf fields: nested records are flattened as the source's flatten enricher does (default 3 levels);
    names starting with ``_`` are the chain's own columns, not keys. A map column (the collector's free-form
    `properties` and `traits`) has no keys of its own in the schema: ``map_keys`` names the keys its records carry
    (``{"properties": ["colour"]}`` gives the key ``properties.colour``).

    Example:
        >>> [k for k, _ in key_columns(raw, source)][:2]      # doctest: +SKIP
        ['anonymousId', 'context.page.url']
    """
    from cdp_spark.ingest.enrichers import flat_columns
    from cdp_spark.ingest.sources import Flatten

    depth = next((e.depth for e in source.enrichers if isinstance(e, Flatten)), 3)
    out: list[tuple[str, Column]] = []
    for name, value in flat_columns(raw, depth):
        if name.startswith("_"):
            continue
        if map_keys is not None and name in map_keys:
            out += [(f"{name}.{k}", F.try_element_at(value, F.lit(k))) for k in map_keys[name]]
        else:
            out.append((name, value))
    return out


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
        F.lit(source.name).alias("source"), F.lit(source.stream_name).alias("stream"), F.col("_old_key").alias("record_key"),
        F.lit("delete").alias("change_type"),
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
