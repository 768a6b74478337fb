"""Erasure (right to be forgotten): resolve the person, delete them everywhere, vacuum, tombstone, verify.

Steps of `run_request` (each recorded in ``ops.erasure_requests``):

1. **resolve**: the requested identifiers (and profile ids) -> the person's profile ids via ``gold.id_graph``
   (plus older ids merged into them, from ``gold.profile_id_history``) -> every identifier of those profiles.
2. **tables**: every registered table that exists is planned generically from its columns
   (`plan_tables`): ``*profile_id`` columns by profile id; an ``identifiers`` map by its values;
   ``value``/``src_value``/``dst_value`` by value; any other string column marked PII/sensitive (raw records,
   record keys, URLs, properties) by a bounded, case-insensitive pattern of the identifiers. Rows go through
   Delta deletes (`Lake.delete`).
3. **serving**: the profiles leave every serving-store file (secure delete, WAL truncated).
4. **files**: landing files of file sources, the collector spool, ``privacy.landing_dirs`` and export staging
   are rewritten without the person's records; the ingest file ledger learns the new sizes so the rewritten
   files are not taken for new deliveries.
5. **destinations**: every destination that held the person (``gold.activation_state``, read at the resolve
   step and kept in the sealed request) gets a remove record through its own transport; removes a destination
   did not acknowledge stay owed, keep the request open and are sent again by the next run.
6. **models**: logged recommendation models (MLflow) lose the person's profile ids and factors, in place.
7. **vacuum**: tables that lost rows are vacuumed with the lake's retention, or with ``now=True`` at once:
   **retention 0 removes every old file version, so time travel to before the erasure is no longer possible
   and a reader holding an old snapshot fails**; with ``now`` the Delta logs are also checkpointed and old log
   files removed (their statistics may hold values).
8. **tombstones**: salted hashes of every identifier go to ``ops.tombstones``.
9. **verify**: the scan of `cdp_spark.privacy.verify` over the lake, landing and export folders, plus the
   logged models; ``verified`` needs no occurrence and no remove still owed.

Example:
    >>> rid = request(config, lake, ["email:ann@example.com"])               # doctest: +SKIP
    >>> run_request(spark, config, lake, rid, now=True)["occurrences"]       # doctest: +SKIP
    0
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from cdp_spark.lake.files import LakeFiles
from cdp_spark.pipeline import StageResult
from cdp_spark.privacy import requests as R
from cdp_spark.privacy.files import clean_folders
from cdp_spark.privacy.matching import Identifier, combined_pattern, sql_string
from cdp_spark.privacy.tombstones import salt_for, token
from cdp_spark.privacy.verify import Occurrence, UnreadableRoot, scan

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)


class ErasureError(RuntimeError):
    """Erasure could not finish (the request is marked failed; no values in the message)."""


def parse_id(text: str) -> Identifier:
    """``type:value`` -> Identifier (normalised).

    Example:
        >>> parse_id("email: Ann@X.com")
        Identifier(id_type='email', value='ann@x.com')
    """
    id_type, sep, value = text.partition(":")
    if not sep or not id_type.strip() or not value.strip():
        raise ValueError("an identifier is written type:value, e.g. email:someone@example.com")
    return Identifier(id_type.strip().lower(), value)


def request(config: "CdpConfig", lake: "Lake", ids: Iterable[str], *, requested_by: str = "cli") -> str:
    """File a request for ``type:value`` identifiers; returns the request id."""
    known = set(config.catalogue.group("identifier")) or None
    parsed = [parse_id(t) for t in ids]
    if known:
        bad = sorted({i.id_type for i in parsed if i.id_type not in known})
        if bad:
            raise ValueError(f"unknown identifier type(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    return R.file_request(config, lake, parsed, requested_by=requested_by)


# ---- 1. resolve ----
def resolve(spark: "SparkSession", lake: "Lake", identifiers: list[Identifier],
            profile_ids: Iterable[str] = ()) -> tuple[set[str], list[Identifier]]:
    """The person's profile ids and all their identifiers (the requested ones included)."""
    from pyspark.sql import functions as F

    pids = set(profile_ids)
    ids = {(i.id_type, i.value) for i in identifiers}
    if lake.exists("gold.id_graph"):
        graph = lake.read("gold.id_graph").select("id_type", "value", "profile_id")
        if ids:
            wanted = spark.createDataFrame(sorted(ids), "id_type string, value string")
            pids |= {r.profile_id for r in graph.join(wanted, ["id_type", "value"]).select("profile_id").collect()}
        if lake.exists("gold.profile_id_history") and pids:
            hist = lake.read("gold.profile_id_history")
            pids |= {r.old_profile_id for r in hist.where(F.col("new_profile_id").isin(sorted(pids)))
                     .select("old_profile_id").collect()}
        if pids:
            ids |= {(r.id_type, r.value) for r in graph.where(F.col("profile_id").isin(sorted(pids))).collect()}
    return pids, [Identifier(t, v) for t, v in sorted(ids)]


# ---- 2. tables ----
@dataclass(frozen=True)
class TablePlan:
    table: str
    predicate: str
    columns: tuple[str, ...]


def plan_tables(lake: "Lake", profile_ids: set[str], identifiers: list[Identifier]) -> list[TablePlan]:
    """A delete predicate per existing registered table that can hold the person (see module docstring)."""
    from pyspark.sql import types as T

    values = sorted({i.value for i in identifiers})
    pid_list = ", ".join(sql_string(p) for p in sorted(profile_ids))
    value_list = ", ".join(sql_string(v) for v in values)
    pattern = sql_string("(?i)" + combined_pattern(identifiers, hashes=False)) if identifiers else None
    # delta-rs (DataFusion) spells Spark's array_contains as array_has (and cannot record the former in its log).
    contains = "array_has" if lake.backend == "embedded" else "array_contains"
    plans = []
    for spec in lake.registry:
        if not lake.exists(spec.name):
            continue
        pii = {c.name for c in spec.columns if c.pii}
        terms, cols = [], []
        for f in lake.table_schema(spec.name).fields:
            name, t, q = f.name, f.dataType, f"`{f.name}`"
            pii_col = name in pii or bool((f.metadata or {}).get("pii"))
            if isinstance(t, T.StringType) and name.endswith("profile_id"):
                if pid_list:
                    terms.append(f"{q} IN ({pid_list})")
                    cols.append(name)
            elif isinstance(t, T.MapType) and name == "identifiers":
                if values:
                    vals = f"map_values({q})" if isinstance(t.valueType, T.StringType) else f"flatten(map_values({q}))"
                    terms.extend(f"{contains}({vals}, {sql_string(v)})" for v in values)
                    cols.append(name)
            elif isinstance(t, T.StringType) and name in ("value", "src_value", "dst_value"):
                if value_list:
                    terms.append(f"{q} IN ({value_list})")
                    cols.append(name)
            elif isinstance(t, T.StringType) and pii_col and pattern:
                terms.append(f"regexp_like({q}, {pattern})")
                cols.append(name)
        if terms:
            plans.append(TablePlan(spec.name, " OR ".join(f"({t})" for t in terms), tuple(cols)))
    return plans


def delete_rows(lake: "Lake", plans: list[TablePlan]) -> dict[str, int]:
    deleted = {}
    for plan in plans:
        result = lake.delete(plan.table, plan.predicate)
        deleted[plan.table] = int(result.rows or 0)
    return deleted


# ---- 4. files ----
def landing_folders(config: "CdpConfig") -> list[str]:
    """Folders of landed files: every file source's path, the collector spool, and ``privacy.landing_dirs``."""
    subst = {"demo_dir": config.demo_dir.rstrip("/"), "lake_root": config.lake.root.rstrip("/")}
    folders = [s.path.format(**subst) for s in config.sources if s.kind == "files" and s.path]
    collector = getattr(config, "collector", None)
    if collector is not None:
        folders.append(collector.landing(config.lake.root))
    privacy = getattr(config, "privacy", None)
    if privacy is not None:
        folders.extend(d.format(**subst) for d in privacy.landing_dirs)
    return list(dict.fromkeys(folders))


def export_folder(config: "CdpConfig") -> str:
    privacy = getattr(config, "privacy", None)
    template = privacy.export_dir if privacy is not None else "{lake_root}/exports"
    return template.format(lake_root=config.lake.root.rstrip("/"), demo_dir=config.demo_dir.rstrip("/"))


# ---- 5. vacuum ----
def vacuum(lake: "Lake", tables: Iterable[str], *, now: bool) -> dict[str, int]:
    out = {}
    for name in tables:
        files = lake.vacuum(name, retention_hours=0 if now else None)
        out[name] = len(files)
        if now:
            _drop_old_logs(lake, name)
    return out


def _drop_old_logs(lake: "Lake", name: str) -> None:
    """Checkpoint and delete the log files before it (their add-action statistics can hold min/max values)."""
    dt_ = lake.delta_table(name)
    dt_.create_checkpoint()
    version = dt_.version()
    log_dir = LakeFiles(f"{lake.path(name)}/_delta_log", lake.storage_options)
    for file_name in log_dir.list():
        stem = file_name.split(".")[0]
        if not stem.isdigit() or int(stem) >= version:
            continue
        if file_name.endswith((".json", ".crc")) or ".checkpoint" in file_name:
            log_dir.delete(file_name)


# ---- the whole request ----
def scan_roots(config: "CdpConfig", lake: "Lake") -> list[str]:
    return list(dict.fromkeys([lake.root, *landing_folders(config), export_folder(config)]))


def verify_request(config: "CdpConfig", lake: "Lake", request_id: str,
                   identifiers: list[Identifier] | None = None) -> list[Occurrence]:
    """Scan for the request's identifiers (from its sealed file, or given) and its profiles in model artifacts,
    and record the count. The request becomes ``verified`` only when nothing is found and every destination has
    acknowledged its removes; its clear identifiers are then purged."""
    sealed = R.read_sealed(lake.files, request_id)
    if identifiers is None:
        if sealed is None:
            raise R.UnknownRequest("the request's identifiers are no longer kept (verified and purged); "
                                   "pass them again with --id")
        identifiers = R.identifiers_of(sealed)
    try:
        found = scan(scan_roots(config, lake), identifiers, exclude=[lake.files.uri(R.SEALED_DIR)],
                     required=[lake.root], storage_options=lake.storage_options)
    except UnreadableRoot:  # "could not look" is never "found nothing": the request stays open, identifiers kept
        if R.latest(lake, request_id) is not None:
            R.record(lake, request_id, step="verify", error="UnreadableRoot")
        raise
    state = R.latest(lake, request_id)
    profile_ids = (sealed or {}).get("profile_ids") or (state or {}).get("profile_ids") or []
    found += model_occurrences(config, profile_ids)
    if state is not None:
        total = sum(o.count for o in found)
        owed = (sealed or {}).get("removes") or {}
        changes: dict[str, Any] = {"occurrences": total, "step": "verify"}
        if total == 0 and not owed:
            changes["status"] = "verified"
        R.record(lake, request_id, **changes)
        if total == 0 and not owed:
            R.purge_sealed(lake.files, request_id)
    return found


def model_occurrences(config: "CdpConfig", profile_ids: Iterable[str]) -> list[Occurrence]:
    """Logged models (MLflow) that still hold any of the profiles (their ids and factors)."""
    from cdp_spark.ml.tracking import recommenders_holding

    return [Occurrence(f"models:/{model_id}", "recommender user factors", "profile_id", n)
            for model_id, n in sorted(recommenders_holding(config, sorted(set(profile_ids))).items())]


def notify_destinations(spark: "SparkSession", config: "CdpConfig", lake: "Lake", request_id: str,
                        owed: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, int], dict[str, str]]:
    """Send every destination the removes it is owed; (removes acknowledged per destination, error per
    destination that did not acknowledge them all). Unacknowledged removes stay owed (in the sealed request)."""
    from cdp_spark.activation.stage import send_removes

    sent, failed = {}, {}
    today = dt.datetime.now(dt.timezone.utc).date()
    for name, held in sorted(owed.items()):
        report = send_removes(spark, config, lake, name, held, as_of=today, run_id=f"erasure-{request_id}")
        if report.status == "failed":
            failed[name] = report.error or "not acknowledged"
            log.warning("erasure %s: destination %s did not acknowledge its removes; retried by the next run",
                        request_id, name)
        else:
            sent[name] = report.records_sent
    return sent, failed


def run_request(spark: "SparkSession", config: "CdpConfig", lake: "Lake", request_id: str, *,
                now: bool = False, verify: bool = True) -> dict[str, Any]:
    """Execute one erasure request end to end; returns its final state (no values)."""
    sealed = R.read_sealed(lake.files, request_id)
    if sealed is None:
        raise R.UnknownRequest(f"erasure request {request_id} has no identifiers left to erase")
    R.record(lake, request_id, status="running", error=None)
    try:
        pids, identifiers = resolve(spark, lake, R.identifiers_of(sealed), sealed.get("profile_ids", []))
        from cdp_spark.activation.stage import held_records

        # What destinations hold is deleted with the tables below; the removes owed to them are kept with the
        # request (sealed, like its identifiers) until each destination has acknowledged them.
        owed = dict(sealed.get("removes") or {})
        for name, held in held_records(lake, pids).items():
            known = {(h["audience"], h["profile_id"]) for h in owed.get(name, [])}
            owed[name] = owed.get(name, []) + [h for h in held if (h["audience"], h["profile_id"]) not in known]
        sealed = {**sealed, "identifiers": [[i.id_type, i.value] for i in identifiers], "profile_ids": sorted(pids),
                  "removes": owed}
        R.write_sealed(lake.files, request_id, sealed)
        R.record(lake, request_id, step="resolved", profile_ids=sorted(pids))

        deleted = delete_rows(lake, plan_tables(lake, pids, identifiers))
        R.record(lake, request_id, step="tables", rows_deleted=deleted)

        from cdp_spark.api.store import store_for

        if getattr(config, "api", None) is not None:
            deleted["serving_store"] = store_for(config).erase(pids, [(i.id_type, i.value) for i in identifiers])
        R.record(lake, request_id, step="serving", rows_deleted=deleted)

        text = re.compile(combined_pattern(identifiers).encode("utf-8"), re.I)
        files = clean_folders([*landing_folders(config), export_folder(config)], text, combined_pattern(identifiers),
                              storage_options=lake.storage_options)
        from cdp_spark.ingest.stage import refresh_ledger

        ledger_rows = refresh_ledger(spark, config, lake, files.rewritten)
        if ledger_rows:
            deleted["bronze.ingested_files (rewritten files recorded)"] = ledger_rows
        R.record(lake, request_id, step="files", files_rewritten=len(files.rewritten))

        # After the files step, so that a file drop's remove delivery is not taken for the person's old records.
        sent, failed = notify_destinations(spark, config, lake, request_id, owed)
        deleted.update({f"destination {name} (removes sent)": n for name, n in sent.items()})
        sealed["removes"] = {name: held for name, held in owed.items() if name in failed}
        R.write_sealed(lake.files, request_id, sealed)
        R.record(lake, request_id, step="destinations", rows_deleted=deleted,
                 error="; ".join(f"destination {n}: {e}" for n, e in sorted(failed.items())) or None)

        from cdp_spark.ml.tracking import scrub_recommenders

        scrubbed = scrub_recommenders(config, pids, reason=request_id)
        deleted.update({f"model {model_id} (profiles scrubbed)": n for model_id, n in scrubbed.items()})
        R.record(lake, request_id, step="models", rows_deleted=deleted)

        touched = [t for t, n in deleted.items() if n and t in lake.registry]
        if lake.exists("bronze.ingested_files") and ledger_rows:
            touched.append("bronze.ingested_files")
        vacuum(lake, sorted(set(touched)), now=now)
        R.record(lake, request_id, step="vacuum", vacuum_now=now, status="deleted")

        salt = salt_for(config, lake.root)
        stamp = dt.datetime.now(dt.timezone.utc)
        stones = spark.createDataFrame(
            [(i.id_type, token(i.id_type, i.value, salt), request_id, stamp) for i in identifiers],
            "id_type string, value_hash string, request_id string, erased_at timestamp")
        lake.create_if_missing("ops.tombstones")
        lake.merge("ops.tombstones", stones.dropDuplicates(["id_type", "value_hash"]))
        R.record(lake, request_id, step="tombstones")
    except Exception as exc:
        R.record(lake, request_id, status="failed", error=type(exc).__name__)
        raise
    occurrences = None
    if verify:
        found = verify_request(config, lake, request_id, identifiers)
        occurrences = sum(o.count for o in found)
        if occurrences and not now:
            log.warning("erasure %s: %d occurrence(s) remain in old file versions until the vacuum retention passes",
                        request_id, occurrences)
    state = R.latest(lake, request_id) or {}
    tables = {k: v for k, v in deleted.items() if not k.startswith(("destination ", "model "))}
    return {"request_id": request_id, "status": state.get("status"), "profiles": len(pids),
            "identifiers": len(identifiers), "rows_deleted": tables, "files_rewritten": len(files.rewritten),
            "files_skipped_live": len(files.skipped_live), "removes_sent": sent, "destinations_pending": failed,
            "models_scrubbed": scrubbed, "occurrences": occurrences, "vacuum_now": now}


def run_pending(spark: "SparkSession", config: "CdpConfig", lake: "Lake", *, now: bool = False) -> list[dict[str, Any]]:
    """Execute every open request (those filed through the API's DELETE, typically), then purge the clear
    identifiers of executed requests older than ``privacy.keep_request_identifiers_hours``. A request that fails
    does not stop the others; ErasureError names the failed ones afterwards."""
    results, failed = [], []
    for rid in R.pending(lake):
        if R.read_sealed(lake.files, rid) is None:
            continue
        try:
            results.append(run_request(spark, config, lake, rid, now=now))
        except Exception as exc:  # recorded on the request by run_request
            log.error("erasure %s failed: %s", rid, type(exc).__name__)
            failed.append(rid)
    purge_expired(config, lake)
    if failed:
        raise ErasureError(f"{len(failed)} erasure request(s) failed: {', '.join(failed)} (see `cdp erase status`); "
                           f"{len(results)} other(s) ran")
    return results


def run_stage(spark: "SparkSession", config: "CdpConfig", lake: "Lake", as_of: dt.date) -> StageResult:
    """The pipeline's ``erasure`` stage: every open request (API DELETEs wait for it), before ingestion, so that
    their tombstones suppress the person's re-delivered records and no later stage rebuilds them.

    Old file versions are vacuumed with the lake's retention, so a request usually stays ``deleted`` until a
    later run verifies it after that retention has passed.

    Example:
        >>> run_stage(spark, config, lake, date(2026, 11, 1)).metrics["requests"]   # doctest: +SKIP
        1
    """
    results = run_pending(spark, config, lake)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    rows: dict[str, int] = {}
    for r in results:
        for table, n in r["rows_deleted"].items():
            rows[table] = rows.get(table, 0) + n
    return StageResult(metrics={"requests": len(results), "statuses": statuses, "rows_deleted": rows,
                                "destinations_pending": sorted({d for r in results for d in r["destinations_pending"]})})


def purge_expired(config: "CdpConfig", lake: "Lake") -> list[str]:
    """Drop the sealed identifiers of executed (deleted/verified) requests kept longer than allowed, except while
    a destination still owes an acknowledgement of its removes (they are part of the sealed request)."""
    import time

    hours = config.privacy.keep_request_identifiers_hours  # type: ignore[attr-defined]
    purged = []
    for rid in R.sealed_ids(lake.files):
        state = R.latest(lake, rid) or {}
        owed = (R.read_sealed(lake.files, rid) or {}).get("removes")
        if (state.get("status") in ("deleted", "verified") and not owed
                and time.time() - lake.files.modified(f"{R.SEALED_DIR}/{rid}.json") > hours * 3600):
            R.purge_sealed(lake.files, rid)
            purged.append(rid)
    return purged
