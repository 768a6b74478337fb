"""The run report and `cdp status` on a copy of the session's demo lake (every stage ran), plus a few hand-made
quarantine rows and ledger rows for the stream and activation with known numbers. Numbers are checked against an independent reader (delta-rs + pandas); the page is rendered in
headless Chromium, which must draw every chart without a console error."""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable
from pyspark.sql import types as T

from cdp_spark.cli import main
from cdp_spark.config import load_config
from cdp_spark.lake import open_lake
from cdp_spark.ops.ledger import Ledger, LedgerEntry
from cdp_spark.ops.report import SECTIONS, build_report, render_html
from cdp_spark.ops.report.data import mask_id
from cdp_spark.ops.status import status
from tests import ops_browser

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "cdp.yaml"
ARTIFACTS = Path(os.environ.get("CDP_ARTIFACTS_DIR", ROOT / ".ci" / "artifacts"))


def _default(data_type: T.DataType, as_of: dt.date):
    """A value for a non-nullable column the test does not care about."""
    if isinstance(data_type, T.StringType):
        return "x"
    if isinstance(data_type, (T.IntegerType, T.LongType, T.ShortType)):
        return 0
    if isinstance(data_type, (T.DoubleType, T.FloatType)):
        return 0.0
    if isinstance(data_type, T.DateType):
        return as_of
    if isinstance(data_type, T.TimestampType):
        return dt.datetime.combine(as_of, dt.time(12))
    if isinstance(data_type, T.MapType):
        return {}
    if isinstance(data_type, T.ArrayType):
        return []
    if isinstance(data_type, T.BooleanType):
        return False
    return None


def _write(spark, lake, name: str, records: list[dict], as_of: dt.date) -> bool:
    """Append hand-made rows to a later stage's table, if that stage has declared it yet."""
    if name not in lake.registry:
        return False
    schema = lake.spec(name).schema
    rows = [tuple(r.get(f.name, None if f.nullable else _default(f.dataType, as_of)) for f in schema.fields)
            for r in records]
    lake.append(name, spark.createDataFrame(rows, schema))
    return True


@pytest.fixture(scope="module")
def env(spark, demo_lake, tmp_path_factory):
    # A copy of the session's demo lake (every stage ran), so the rows added below stay out of the shared one.
    root = tmp_path_factory.mktemp("ops") / "lake"
    shutil.copytree(demo_lake.root, root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CDP_LAKE_ROOT", str(root))
        config = load_config(str(CONF))
        as_of = dt.date.fromisoformat(demo_lake.report["run"]["as_of"])
        lake = open_lake(spark, config)

        # The small demo may plant no junk of a kind: quarantine a few by hand, like the ingest stage would.
        quarantined = dt.datetime.combine(as_of, dt.time(3))
        _write(spark, lake, "bronze.quarantine", [
            {"source": "orders", "stream": "orders", "raw_record": "O1,,x", "reasons": ["malformed_csv"],
             "run_id": "r", "quarantined_at": quarantined},
            {"source": "web", "stream": "web", "raw_record": "{}", "reasons": ["email_valid", "event_time_present"],
             "run_id": "r", "quarantined_at": quarantined},
            {"source": "web", "stream": "web", "raw_record": "{}", "reasons": ["email_valid"], "run_id": "r",
             "quarantined_at": quarantined}], as_of)
        # Later ledger rows with known numbers: a stream run and an activation with one failing destination.
        ledger = Ledger(lake)
        now = dt.datetime.now(dt.timezone.utc)
        stream = {"sources": {"web": {"read_lines": 50, "accepted": 48, "quarantined": 2, "duplicates": 0,
                                      "batches": 3, "max_lag_s": 4.25, "mean_batch_duration_s": 1.5},
                              "app": {"read_lines": 20, "accepted": 20, "quarantined": 0, "duplicates": 0,
                                      "batches": 2, "max_lag_s": 1.75, "mean_batch_duration_s": 0.8}}}
        ledger._write(LedgerEntry("collect_stream-1", "job", "collect_stream", as_of, "succeeded", now,
                                  ended_at=now, metrics=stream))
        activation = {"destinations": {
            "crm_file": {"status": "succeeded", "profiles_considered": 40, "records_sent": 31, "skipped_consent": 7,
                         "skipped_no_identifier": 2, "failures": 0},
            "ads_webhook": {"status": "failed", "profiles_considered": 40, "records_sent": 20, "skipped_consent": 12,
                            "failures": 3, "retries": 4, "error": "HTTPStatusError: 503"}},
            "failed_destinations": ["ads_webhook"]}
        ledger._write(LedgerEntry("daily-act", "activation", "daily", as_of, "succeeded", now, ended_at=now,
                                  metrics=activation))
        forwarding = {"outputs": {
            "web_events.analytics": {"deliveries": {"succeeded": 2}, "events": 120, "filtered": 30, "sampled_out": 45,
                                     "consent_withheld": 5, "sent": 40},
            "web_events.warehouse": {"deliveries": {"succeeded": 1, "failed": 1}, "events": 120, "filtered": 0,
                                     "sampled_out": 0, "consent_withheld": 0, "sent": 60}},
            "failed_outputs": ["web_events.warehouse"]}
        earlier = {"outputs": {"web_events.analytics": {"deliveries": {"succeeded": 1}, "events": 9, "filtered": 0,
                                                        "sampled_out": 0, "consent_withheld": 0, "sent": 9}}}
        # Ledger rows are read newest first: the earlier run is written with an older start.
        ledger._write(LedgerEntry("daily-fwd-0", "connections", "daily", as_of, "succeeded",
                                  now - dt.timedelta(days=1), ended_at=now - dt.timedelta(days=1), metrics=earlier))
        ledger._write(LedgerEntry("daily-fwd", "connections", "daily", as_of, "succeeded", now, ended_at=now,
                                  metrics=forwarding))
        yield {"root": root, "config": config, "lake": lake, "as_of": as_of, "stream": stream, "activation": activation,
               "built_at": now}


@pytest.fixture(scope="module")
def report(env):
    return build_report(env["lake"], env["config"], env["as_of"])


@pytest.fixture(scope="module")
def page(env, report, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    return path


def _delta(root: Path, name: str) -> pd.DataFrame:
    return DeltaTable(str(root.joinpath(*name.split(".")))).to_pyarrow_table().to_pandas()


def test_event_and_quarantine_numbers_match_an_independent_reader(env, report):
    events = _delta(env["root"], "bronze.events")
    start = env["as_of"] - dt.timedelta(days=29)
    events = events[(events.event_date >= start) & (events.event_date <= env["as_of"])]
    expected = events.groupby(["event_date", "source"]).size().rename("events").reset_index()
    got = report.section("events").numbers
    assert sorted(zip(got.day, got.source, got.events)) == sorted(zip(expected.event_date, expected.source, expected.events))
    assert set(got.source) >= {"web", "app", "orders"}

    quarantine = _delta(env["root"], "bronze.quarantine")
    # as of the report's day: the demo's own junk was quarantined when the test ran, after the demo's as-of
    quarantine = quarantine[quarantine.quarantined_at.dt.tz_localize(None) < pd.Timestamp(env["as_of"] + dt.timedelta(days=1))]
    quarantine = quarantine.explode("reasons")
    expected_q = quarantine.groupby(["source", "reasons"]).size().to_dict()
    got_q = report.section("quarantine").numbers
    assert {(s, r): n for s, r, n in zip(got_q.source, got_q.reason, got_q.records)} == expected_q
    assert expected_q[("web", "email_valid")] >= 2 and expected_q[("orders", "malformed_csv")] >= 1


def test_identity_sections_match_the_graph_and_mask_profile_ids(env, report):
    graph = _delta(env["root"], "gold.id_graph")
    sizes = graph.groupby("profile_id").size()
    expected = sizes.value_counts().sort_index()
    section = report.section("identity")
    assert dict(zip(section.numbers.identifiers, section.numbers.profiles)) == expected.to_dict()
    caption, largest = section.tables[0]
    assert "masked" in caption
    assert list(largest.identifiers) == sorted(sizes, reverse=True)[: len(largest)]
    assert largest.profile.iloc[0] in {mask_id(p) for p in sizes[sizes == sizes.max()].index}
    html = render_html(report)
    assert not any(pid in html for pid in graph.profile_id.unique())
    assert not any(value in html for value in graph.value.unique() if len(value) > 3)

    counts = report.section("profiles").numbers
    assert counts.profiles.iloc[-1] == graph.profile_id.nunique()


def test_ledger_sections_stream_activation_and_durations(env, report):
    lag = report.section("streaming").numbers
    assert dict(zip(lag.source, lag.max_lag_s)) == {"web": 4.25, "app": 1.75}
    act = report.section("activation").numbers.set_index("destination")
    assert act.loc["ads_webhook", "status"] == "failing" and act.loc["crm_file", "status"] == "ok"
    assert act.loc["crm_file", "records_sent"] == 31 and act.loc["ads_webhook", "skipped_consent"] == 12
    fwd = report.section("connections").numbers.set_index("output")
    assert fwd.loc["web_events.analytics", ["events", "filtered", "sampled_out", "consent_withheld", "sent"]].tolist() \
        == [120, 30, 45, 5, 40]  # the latest run's numbers, not the earlier run's
    assert fwd.loc["web_events.warehouse", "status"] == "failing" and fwd.loc["web_events.warehouse", "failed_deliveries"] == 1
    assert fwd.loc["web_events.analytics", "status"] == "ok" and report.section("connections").svg.startswith("<svg")
    durations = report.section("durations").numbers
    assert {"ingest", "identity"} <= set(durations.stage) and (durations.seconds >= 0).all()


def test_score_and_audience_sections_match_an_independent_reader(env, report):
    scores = _delta(env["root"], "gold.profile_scores")
    latest = scores[scores.as_of == scores[scores.as_of <= env["as_of"]].as_of.max()]
    rfm = report.section("rfm").numbers
    assert dict(zip(rfm.segment, rfm.profiles)) == latest.rfm_segment.value_counts().to_dict()
    clv = report.section("clv")
    if latest.clv.notna().any():
        assert clv.numbers.profiles.sum() == latest.clv.notna().sum()
        assert clv.numbers.bin_from.iloc[0] == round(latest.clv.min(), 2)
    else:  # a small demo may have too few repeat buyers for the CLV models (their minimum-data rule)
        assert not clv.has_data

    sizes = _delta(env["root"], "gold.audience_sizes")
    sizes = sizes[sizes.as_of == env["as_of"]]
    shown = report.section("audiences").numbers
    shown = shown[shown.as_of == env["as_of"]]
    assert dict(zip(shown.audience, shown["size"])) == dict(zip(sizes.audience, sizes["size"]))
    assert len(sizes) >= 4   # the demo's audiences
    html = render_html(report)
    assert html.count("no data yet") == sum(1 for s in report.sections if not s.has_data)


def test_page_is_self_contained_with_a_chart_and_numbers_per_section(report, page):
    html = page.read_text()
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", html)
    with_data = [s for s in report.sections if s.has_data]
    assert len(with_data) >= 7
    for s in with_data:
        block = html[html.index(f"data-section='{s.key}'"):]
        block = block[: block.index("</section>")]
        assert "<svg" in block and "<table class='numbers'>" in block, s.key


@pytest.mark.skipif(not ops_browser.available(), reason="Debian chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(report, page):
    script = """(() => Array.from(document.querySelectorAll('section')).map(s => {
        const svg = s.querySelector('.chart svg');
        const box = svg ? svg.getBoundingClientRect() : null;
        return {key: s.dataset.section, width: box ? box.width : 0, height: box ? box.height : 0,
                shapes: svg ? svg.querySelectorAll('path, rect, line, polyline, use').length : 0,
                empty: !!s.querySelector('.empty')};
    }))()"""
    result = ops_browser.render(page.as_uri(), script)
    assert result.console_errors == []
    drawn = {s["key"]: s for s in result.value}
    assert set(drawn) == {key for key, *_ in SECTIONS}
    for section in report.sections:
        shown = drawn[section.key]
        if section.has_data:
            assert shown["width"] > 200 and shown["height"] > 100 and shown["shapes"] > 5, shown
        else:
            assert shown["empty"], shown
    assert result.screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(result.screenshot) > 20_000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(result.screenshot)
    shutil.copy(page, ARTIFACTS / "report.html")


def test_status_summarises_runs_freshness_lag_and_failing_destinations(env):
    summary = status(env["lake"], env["config"])
    assert summary["stages"]["ingest"]["status"] == summary["stages"]["identity"]["status"] == "succeeded"
    assert summary["stages"]["daily"]["kind"] == "job"
    assert list(summary["stages"])[:3] == ["erasure", "ingest", "identity"]
    fresh = {t["table"]: t for t in summary["tables"]}
    assert fresh["bronze.events"]["rows"] == len(_delta(env["root"], "bronze.events"))
    # The graph was written before the fixture finished; the module's tests may run long after that in a busy suite.
    since_built = (dt.datetime.now(dt.timezone.utc) - env["built_at"]).total_seconds() / 3600
    assert 0 <= fresh["gold.id_graph"]["age_hours"] < since_built + 1
    assert summary["streaming"]["web"]["max_lag_s"] == 4.25
    assert summary["failing_destinations"] == ["ads_webhook"]
    assert all(lease["state"] == "free" for lease in summary["leases"])
    # ingestion per source, from the latest ingest and stream runs
    latest = json.loads(next(r for r in Ledger(env["lake"]).runs(limit=0) if r["step"] == "ingest")["metrics"])
    for name, counts in latest["sources"].items():
        assert {k: summary["ingestion"][name].get(k, 0) for k in ("read", "accepted", "duplicates")} == {
            k: counts[k] for k in ("read", "accepted", "duplicates")}, name
    assert summary["ingestion"]["web (stream)"]["accepted"] == 48


def test_status_shows_ingestion_per_source_reasons_and_files_that_could_not_be_read(env):
    now = dt.datetime.now(dt.timezone.utc)
    metrics = {"sources": {"web": {"read": 12, "accepted": 7, "quarantined": 3, "duplicates": 2, "diverted": 2,
                                   "files_ingested": 4, "files_failed": 1, "reconciled": True,
                                   "quarantine_reasons": {"too_deep": 1, "missing_or_bad:event_time": 2,
                                                          "oversize:email": 1},
                                   "problem_files": [{"path": "day=2026-11-01/cut.json.gz", "status": "failed",
                                                      "error": "Py4JJavaError: java.io.EOFException"}]}}}
    Ledger(env["lake"])._write(LedgerEntry("daily-later", "ingest", "daily", env["as_of"], "succeeded", now,
                                           ended_at=now, metrics=metrics))
    web = status(env["lake"], env["config"])["ingestion"]["web"]
    assert (web["files_ingested"], web["read"], web["accepted"], web["quarantined"], web["duplicates"]) == (4, 12, 7, 3, 2)
    assert web["diverted"] == 2 and web["reconciled"] is True
    assert web["quarantine_reasons"] == {"too_deep": 1, "missing_or_bad:event_time": 2, "oversize:email": 1}
    assert web["problem_files"][0]["path"] == "day=2026-11-01/cut.json.gz"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CDP_LAKE_ROOT", str(env["root"]))
        mp.setenv("COLUMNS", "200")
        code, out, err = _cli("status")
    assert code == 0 and "day=2026-11-01/cut.json.gz (failed: Py4JJavaError: java.io.EOFException)" in out
    assert "web: quarantined by reason: missing_or_bad:event_time 2, oversize:email 1, too_deep 1" in out
    row = next(line for line in out.splitlines() if line.strip("│ ").startswith("web "))
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["web", "4", "12", "7", "3", "2", "0", "2", "yes"]


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--conf", str(CONF)])
    return code, out.getvalue(), err.getvalue()


def test_cli_status_and_report_commands(env, tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CDP_LAKE_ROOT", str(env["root"]))
        code, out, err = _cli("status", "--json")
        assert code == 0, err
        summary = json.loads(out)
        assert summary["failing_destinations"] == ["ads_webhook"]
        assert summary["stages"]["identity"]["status"] == "succeeded"
        code, out, err = _cli("status")
        assert code == 0 and "failing destinations" in out and "bronze.events" in out

        target = tmp_path / "r.html"
        code, out, err = _cli("report", "--as-of", env["as_of"].isoformat(), "--out", str(target), "--json")
        assert code == 0, err
        assert json.loads(out)["sections"]["events"] == "data"
        assert target.read_text().count("<svg") >= 7
