"""The report's numbers: one small function per chart, each returning a pandas DataFrame (None: no data yet).

Table readers aggregate in Spark and bring back only the small result; ledger readers work on the ledger's rows
(`Ledger.runs`), so they need no Spark at all. Profile ids are masked (`mask_id`); no identifier value or trait is
ever read into the report.

Example:
    >>> df = events_per_source_day(lake, date(2026, 11, 1))        # doctest: +SKIP
    >>> list(df.columns)                                           # doctest: +SKIP
    ['day', 'source', 'events']
"""
from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterator

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.lake import Lake

LedgerRows = list[dict[str, Any]]


def mask_id(value: str) -> str:
    """A stable, non-reversible short label for a profile id (enough to tell rows apart, not to look one up).

    Example:
        >>> mask_id("p-0123456789abcdef") == mask_id("p-0123456789abcdef") and len(mask_id("x")) == 11
        True
    """
    return "#" + hashlib.sha256(value.encode()).hexdigest()[:6] + "····"


def _end(as_of: date) -> datetime:
    return datetime.combine(as_of + timedelta(days=1), datetime.min.time())


def _exists(lake: "Lake", name: str) -> bool:
    return name in lake.registry and lake.exists(name)


def _pandas(df: Any) -> pd.DataFrame:
    return pd.DataFrame([r.asDict() for r in df.collect()]) if df is not None else pd.DataFrame()


def _or_none(df: pd.DataFrame) -> pd.DataFrame | None:
    return None if df is None or df.empty else df.reset_index(drop=True)


# ---- tables ----
def events_per_source_day(lake: "Lake", as_of: date, days: int = 30) -> pd.DataFrame | None:
    """Accepted events per source and event date over the ``days`` up to ``as_of``: day, source, events."""
    if not _exists(lake, "bronze.events"):
        return None
    from pyspark.sql import functions as F

    start = as_of - timedelta(days=days - 1)
    df = (lake.read("bronze.events").where(F.col("event_date").between(start, as_of))
          .groupBy(F.col("event_date").alias("day"), "source").agg(F.count("*").alias("events")))
    return _or_none(_pandas(df.orderBy("day", "source")))


def quarantine_reasons(lake: "Lake", as_of: date) -> pd.DataFrame | None:
    """Quarantined records per source and reason (a record with two reasons counts for both): source, reason, records."""
    if not _exists(lake, "bronze.quarantine"):
        return None
    from pyspark.sql import functions as F

    df = (lake.read("bronze.quarantine").where(F.col("quarantined_at") < F.lit(_end(as_of)))
          .select("source", F.explode("reasons").alias("reason")).groupBy("source", "reason")
          .agg(F.count("*").alias("records")))
    return _or_none(_pandas(df.orderBy(F.col("records").desc(), "source", "reason")))


def identity_component_sizes(lake: "Lake") -> pd.DataFrame | None:
    """How many profiles have N identifiers: identifiers, profiles."""
    if not _exists(lake, "gold.id_graph"):
        return None
    from pyspark.sql import functions as F

    sizes = lake.read("gold.id_graph").groupBy("profile_id").agg(F.count("*").alias("identifiers"))
    df = sizes.groupBy("identifiers").agg(F.count("*").alias("profiles")).orderBy("identifiers")
    return _or_none(_pandas(df))


def largest_profiles(lake: "Lake", top: int = 10) -> pd.DataFrame | None:
    """The profiles with the most identifiers (ids masked): profile, identifiers, by_type ("email:2, cookie_id:5")."""
    if not _exists(lake, "gold.id_graph"):
        return None
    from pyspark.sql import functions as F

    graph = lake.read("gold.id_graph")
    per_type = graph.groupBy("profile_id", "id_type").agg(F.count("*").alias("n"))
    rows = (per_type.groupBy("profile_id")
            .agg(F.sum("n").alias("identifiers"),
                 F.sort_array(F.collect_list(F.struct(F.col("id_type"), F.col("n")))).alias("types"))
            .orderBy(F.col("identifiers").desc(), "profile_id").limit(top).collect())
    df = pd.DataFrame([{"profile": mask_id(r.profile_id), "identifiers": int(r.identifiers),
                        "by_type": ", ".join(f"{t.id_type}:{t.n}" for t in r.types)} for r in rows])
    return _or_none(df)


def profile_count_over_time(lake: "Lake", as_of: date) -> pd.DataFrame | None:
    """Profiles that exist now, cumulated by the as-of date that created them: day, new_profiles, profiles."""
    if not _exists(lake, "gold.id_graph"):
        return None
    from pyspark.sql import functions as F

    df = (lake.read("gold.id_graph").where(F.col("profile_created_at") <= as_of)
          .groupBy(F.col("profile_created_at").alias("day")).agg(F.countDistinct("profile_id").alias("new_profiles"))
          .orderBy("day"))
    pdf = _pandas(df)
    if pdf.empty:
        return None
    pdf["profiles"] = pdf["new_profiles"].cumsum()
    return pdf


def _latest_scores(lake: "Lake", as_of: date) -> Any:
    from pyspark.sql import functions as F

    scores = lake.read("gold.profile_scores").where(F.col("as_of") <= as_of)
    latest = scores.agg(F.max("as_of")).first()[0]
    return None if latest is None else scores.where(F.col("as_of") == latest)


def rfm_segments(lake: "Lake", as_of: date) -> pd.DataFrame | None:
    """Profiles per RFM segment in the latest scores up to ``as_of``: segment, profiles."""
    if not _exists(lake, "gold.profile_scores"):
        return None
    from pyspark.sql import functions as F

    scores = _latest_scores(lake, as_of)
    if scores is None:
        return None
    df = (scores.where(F.col("rfm_segment").isNotNull()).groupBy(F.col("rfm_segment").alias("segment"))
          .agg(F.count("*").alias("profiles")).orderBy(F.col("profiles").desc(), "segment"))
    return _or_none(_pandas(df))


def clv_distribution(lake: "Lake", as_of: date, bins: int = 20) -> pd.DataFrame | None:
    """Histogram of CLV in the latest scores: bin_from, bin_to, profiles (equal-width bins up to the 99th pct)."""
    if not _exists(lake, "gold.profile_scores"):
        return None
    from pyspark.sql import functions as F

    scores = _latest_scores(lake, as_of)
    if scores is None:
        return None
    clv = scores.where(F.col("clv").isNotNull()).select(F.col("clv").cast("double").alias("clv"))
    stats = clv.agg(F.min("clv"), F.expr("percentile_approx(clv, 0.99)"), F.count("*")).first()
    low, high, n = stats[0], stats[1], stats[2]
    if not n:
        return None
    high = max(high, low + 1e-9)
    width = (high - low) / bins
    counted = (clv.select(F.least(F.floor((F.col("clv") - low) / width), F.lit(bins - 1)).cast("int").alias("b"))
               .groupBy("b").agg(F.count("*").alias("profiles")).collect())
    by_bin = {r.b: int(r.profiles) for r in counted}
    return pd.DataFrame([{"bin_from": round(low + i * width, 2), "bin_to": round(low + (i + 1) * width, 2),
                          "profiles": by_bin.get(i, 0)} for i in range(bins)])


def audience_sizes(lake: "Lake", as_of: date) -> pd.DataFrame | None:
    """Audience sizes per as-of date with entered and exited: audience, as_of, size, entered, exited."""
    if not _exists(lake, "gold.audience_sizes"):
        return None
    from pyspark.sql import functions as F

    df = (lake.read("gold.audience_sizes").where(F.col("as_of") <= as_of)
          .select("audience", "as_of", "size", "entered", "exited").orderBy("as_of", "audience"))
    return _or_none(_pandas(df))


# ---- ledger ----
def _metrics(row: dict[str, Any]) -> dict[str, Any]:
    raw = row.get("metrics")
    if isinstance(raw, dict):
        return raw
    try:
        return json.loads(raw or "{}")
    except ValueError:
        return {}


def streaming_lag(rows: LedgerRows) -> pd.DataFrame | None:
    """Per collector stream run and source: run start, max lag (s), mean batch duration (s), accepted."""
    out = []
    for r in rows:
        if r["job"] != "collect_stream" or r["step"] != "job":
            continue
        for source, m in (_metrics(r).get("sources") or {}).items():
            out.append({"run_started": r["started_at"], "source": source, "max_lag_s": m.get("max_lag_s"),
                        "mean_batch_s": m.get("mean_batch_duration_s"), "accepted": m.get("accepted"),
                        "batches": m.get("batches")})
    return _or_none(pd.DataFrame(out).sort_values(["run_started", "source"]) if out else pd.DataFrame())


# Counters an activation stage reports per destination; whichever of them it reports are shown.
DELIVERY_COUNTERS = ("profiles_considered", "records_sent", "skipped_consent", "skipped_no_identifier", "adds",
                     "removes", "batches", "retries", "failures")
CHARTED_COUNTERS = ("profiles_considered", "records_sent", "skipped_consent", "skipped_no_identifier", "failures")


def _latest_per_target(rows: LedgerRows, step: str, key: str) -> Iterator[tuple[dict[str, Any], dict[str, Any], str,
                                                                                 dict[str, Any]]]:
    """(ledger row, its metrics, target, target's metrics) for each target of ``metrics[key]`` (destinations,
    connection outputs) in the newest finished row of stage ``step`` that reports it."""
    seen: set[str] = set()
    for r in rows:  # newest first
        if r["step"] != step or r["status"] == "running":
            continue
        metrics = _metrics(r)
        for target, m in (metrics.get(key) or {}).items():
            if target not in seen and isinstance(m, dict):
                seen.add(target)
                yield r, metrics, target, m


def _counters(m: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: m[k] for k in names if isinstance(m.get(k), (int, float))}


def activation_results(rows: LedgerRows) -> pd.DataFrame | None:
    """Per destination, from the latest activation stage run: its counters (sent, skipped, failures, ...) and status.

    Reads ``metrics["destinations"][<name>]`` of the ledger's ``activation`` stage rows (`activation.stage.run` writes them).
    """
    out = []
    for r, metrics, dest, m in _latest_per_target(rows, "activation", "destinations"):
        counters = _counters(m, DELIVERY_COUNTERS)
        failing = r["status"] == "failed" or bool(counters.get("failures")) or m.get("status") == "failed" \
            or dest in (metrics.get("failed_destinations") or [])
        out.append({"destination": dest, "as_of": r["as_of"], **counters, "status": "failing" if failing else "ok",
                    "error": m.get("error")})
    return _or_none(pd.DataFrame(out).sort_values("destination") if out else pd.DataFrame())


# What a connections run reports per output (`connection.output`): events of its inputs, those its data filter
# left out, those outside its user sample, those without consent, and those sent.
FORWARDING_COUNTERS = ("events", "filtered", "sampled_out", "consent_withheld", "sent")


def forwarding_results(rows: LedgerRows) -> pd.DataFrame | None:
    """Per connection output, from the latest connections stage run that forwarded to it: its event counters, failed
    deliveries and status.

    Reads ``metrics["outputs"][<connection.output>]`` of the ledger's ``connections`` stage rows
    (`connections.stage.run` writes them).
    """
    out = []
    for r, metrics, label, m in _latest_per_target(rows, "connections", "outputs"):
        failed = int((m.get("deliveries") or {}).get("failed", 0))
        failing = r["status"] == "failed" or failed > 0 or label in (metrics.get("failed_outputs") or [])
        out.append({"output": label, "as_of": r["as_of"], **_counters(m, FORWARDING_COUNTERS),
                    "failed_deliveries": failed, "status": "failing" if failing else "ok"})
    return _or_none(pd.DataFrame(out).sort_values("output") if out else pd.DataFrame())


def job_durations(rows: LedgerRows, limit_runs: int = 30) -> pd.DataFrame | None:
    """Seconds per stage per run (finished stage rows of recent runs): run_started, as_of, stage, status, seconds."""
    out = []
    for r in rows:
        if r["step"] == "job" or r["ended_at"] is None or r["status"] not in ("succeeded", "failed"):
            continue
        out.append({"run_started": r["started_at"], "as_of": r["as_of"], "run_id": r["run_id"], "stage": r["step"],
                    "status": r["status"], "seconds": round((r["ended_at"] - r["started_at"]).total_seconds(), 1)})
    if not out:
        return None
    df = pd.DataFrame(out)
    keep = list(dict.fromkeys(df.sort_values("run_started", ascending=False)["run_id"]))[:limit_runs]
    return df[df["run_id"].isin(keep)].sort_values(["run_started", "stage"]).reset_index(drop=True)


def generated_at() -> datetime:
    return datetime.now(timezone.utc)
