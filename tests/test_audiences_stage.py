"""The audiences stage on an embedded lake: entered/exited across two runs, merge and split following, re-runs
adding no duplicate changes, sizes/volatility; preview writes nothing; CSV export.

The profile view is a DataFrame of the contract's shape (the profiles package is built in parallel)."""
from __future__ import annotations

import datetime as dt
import io

import pytest

from cdp_spark.audiences import stage
from cdp_spark.audiences.cli import export_members, preview_audience
from cdp_spark.config import CdpConfig
from cdp_spark.identity.tables import PROFILE_ID_HISTORY
from cdp_spark.lake import default_registry
from cdp_spark.pipeline import STAGES, stage_function

pytestmark = pytest.mark.slow  # the module's lake runs the pipeline up to audiences

D1, D2 = dt.date(2026, 11, 1), dt.date(2026, 11, 4)
VIEW = ("profile_id string, identifiers map<string,array<string>>, traits struct<first_name:string,country:string>, "
        "attributes struct<orders:bigint>, consent map<string,string>")
EVENTS = "profile_id string, event_id string, event_name string, event_time timestamp, event_date date, category string, price double, properties string"

AUDIENCES = [
    {"name": "buyers", "rule": {"event": {"name": "order_completed", "within": {"days": 7}}}},
    {"name": "gb", "rule": {"trait": {"field": "country", "op": "=", "value": "gb"}}},
    {"name": "gb_buyers", "rule": {"all": [{"audience": "buyers"}, {"audience": "gb"}]},
     "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]},
]


def _t(day, hour=12):
    return dt.datetime.combine(day, dt.time(hour))


class World:
    """What identity/profiles would give on each day."""

    def __init__(self):
        self.day = D1

    def profiles(self, spark):
        rows = [("p1", {"email": ["one@x.com"]}, ("Ann", "GB"), (1,), {}), ("p2", {"email": ["two@x.com"]}, ("Bo", "FR"), (0,), {}),
                ("p3", {}, ("Cy", "FR"), (2,), {}), ("p4", {"email": ["four@x.com"]}, ("Di", "GB"), (1,), {})]
        if self.day == D2:  # p1 was merged into p2 but the view still lags with p1; p3 split off p5
            rows.append(("p5", {}, ("Ed", "FR"), (0,), {}))
        return spark.createDataFrame(rows, VIEW)

    def events(self, spark, as_of):
        owner_of_p1 = "p2" if self.day == D2 else "p1"  # after the merge p1's events belong to p2
        rows = [(owner_of_p1, "e1", "order_completed", _t(dt.date(2026, 10, 31))), ("p3", "e2", "order_completed", _t(dt.date(2026, 10, 30))),
                ("p4", "e3", "order_completed", _t(dt.date(2026, 10, 27))), ("p2", "e4", "product viewed", _t(dt.date(2026, 10, 31)))]
        if self.day == D2:
            rows.append(("p5", "e5", "order_completed", _t(D2, 9)))
        rows = [(p, e, n, t, t.date(), None, None, None) for p, e, n, t in rows if t.date() <= as_of]
        return spark.createDataFrame(rows, EVENTS)


@pytest.fixture(scope="module")
def env(make_lake, spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("aud") / "lake"
    config = CdpConfig.model_validate({"lake": {"root": str(root)}, "audiences": AUDIENCES})
    lake = make_lake(config.lake.root, default_registry())
    world = World()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stage, "profiles_frame", lambda spark, config, lake: world.profiles(spark))
        mp.setattr(stage, "events_frame", lambda spark, config, lake, as_of, since: world.events(spark, as_of))
        first = stage.run(spark, config, lake, D1)
        changes1 = {(r.audience, r.profile_id, r.change) for r in lake.read("gold.audience_changes").collect()}
        members1 = {(r.audience, r.profile_id): r for r in lake.read("gold.audience_members").collect()}
        versions = {t: lake.version(t) for t in ("gold.audience_changes", "gold.audience_members", "gold.audience_sizes")}
        again = stage.run(spark, config, lake, D1)
        versions_again = {t: lake.version(t) for t in versions}
        world.day = D2
        hist = [("p1", "p2", "merge", 3, D2, "identity-x"), ("p3", "p5", "split", 1, D2, "identity-x")]
        lake.append(PROFILE_ID_HISTORY.name, spark.createDataFrame(hist, PROFILE_ID_HISTORY.schema))
        second = stage.run(spark, config, lake, D2)
        rerun = stage.run(spark, config, lake, D2)
        preview_versions = {t: lake.version(t) for t in versions}
        preview = preview_audience(spark, config, lake, "gb_buyers", D1, sample=5)
        preview_after = {t: lake.version(t) for t in versions}
        buf = io.StringIO()
        exported = export_members(spark, config, lake, "buyers", buf)
        yield {"lake": lake, "first": first, "again": again, "changes1": changes1, "members1": members1,
               "versions": versions, "versions_again": versions_again, "second": second, "rerun": rerun,
               "preview": preview, "preview_versions": (preview_versions, preview_after), "export": (exported, buf.getvalue())}


def test_registered():
    assert stage_function("audiences") is stage.run and STAGES["audiences"] == "cdp_spark.audiences.stage:run"
    assert {"gold.audience_members", "gold.audience_changes", "gold.audience_sizes"} <= set(default_registry().names())


def test_first_run_members_and_entries(env):
    want = {("buyers", "p1"), ("buyers", "p3"), ("buyers", "p4"), ("gb", "p1"), ("gb", "p4"), ("gb_buyers", "p1"), ("gb_buyers", "p4")}
    assert set(env["members1"]) == want
    assert env["changes1"] == {(a, p, "entered") for a, p in want}
    assert {r.variant for k, r in env["members1"].items() if k[0] == "gb_buyers"} <= {"a", "b"}
    assert env["first"].metrics["sizes"] == {"buyers": 3, "gb": 2, "gb_buyers": 2}
    assert env["first"].metrics["event_scans"] == 1


def test_rerun_same_day_changes_nothing(env):
    assert env["again"].metrics["skipped"] == "already committed"
    assert env["versions_again"] == env["versions"]
    assert env["rerun"].metrics["skipped"] == "already committed"


def test_second_run_follows_merge_split_and_windows(env):
    lake = env["lake"]
    rows = lake.read("gold.audience_changes").collect()
    day2 = {(r.audience, r.profile_id, r.change) for r in rows if r.at == dt.datetime(2026, 11, 5)}
    assert day2 == {
        ("buyers", "p1", "exited"),    # merged away (even though the lagging view still lists it)
        ("buyers", "p2", "entered"),   # the survivor qualifies through the merged events
        ("buyers", "p4", "exited"),    # its purchase left the 7-day window
        ("buyers", "p5", "entered"),   # split-off profile qualifies on its own
        ("gb", "p1", "exited"), ("gb_buyers", "p1", "exited"), ("gb_buyers", "p4", "exited"),
    }
    keys = [(r.audience, r.profile_id, r.change, r.run_id) for r in rows]
    assert len(keys) == len(set(keys)) == 7 + 7   # no duplicates after two re-runs
    members = {(r.audience, r.profile_id): r for r in lake.read("gold.audience_members").collect()}
    assert set(members) == {("buyers", "p2"), ("buyers", "p3"), ("buyers", "p5"), ("gb", "p4")}
    assert members[("buyers", "p3")].entered_at == dt.datetime(2026, 11, 2)  # kept from its first entry
    sizes = {(r.audience, r.as_of): r for r in lake.read("gold.audience_sizes").collect()}
    b = sizes[("buyers", D2)]
    assert (b.size, b.entered, b.exited, b.volatility) == (3, 2, 2, pytest.approx(4 / 3))
    assert (sizes[("gb_buyers", D2)].size, sizes[("gb", D1)].size) == (0, 2)


def test_preview_writes_nothing_and_masks(env):
    before, after = env["preview_versions"]
    assert before == after
    p = env["preview"]
    # evaluated now (day-2 world) for day 1: p1 is merged away, so only p4 is a British buyer
    assert p["size"] == 1 and sum(p["variants"].values()) == 1
    assert [s["email"] for s in p["sample"]] == ["f***@x.com"]


def test_export_csv(env):
    record, text = env["export"]
    lines = text.strip().splitlines()
    assert record["rows"] == 3 and lines[0] == "profile_id,variant,entered_at,email"
    assert [line.split(",")[0] for line in lines[1:]] == ["p2", "p3", "p5"]


def test_topic_affinities_are_usable_next_to_category_affinities_of_another_run(make_lake, spark, tmp_path):
    from cdp_spark.content.tables import TOPIC_AFFINITIES
    from cdp_spark.ml.tables import AFFINITIES

    audiences = [{"name": "runners", "rule": {"affinity": {"dimension": "topic", "value": "Running", "band": "High"}}},
                 {"name": "book_fans", "rule": {"affinity": {"dimension": "category", "value": "books", "score": 0.5}}}]
    config = CdpConfig.model_validate({"lake": {"root": str(tmp_path / "lake")}, "audiences": audiences})
    lake = make_lake(config.lake.root, default_registry())
    old, new = D1 - dt.timedelta(days=3), D1   # the scores stage ran days before the content stage
    lake.overwrite(AFFINITIES.name, spark.createDataFrame(
        [("p1", old, "category", "books", 0.9, "High", 1), ("p2", old - dt.timedelta(days=1), "category", "books", 1.0,
                                                              "High", 1)], AFFINITIES.schema))
    lake.overwrite(TOPIC_AFFINITIES.name, spark.createDataFrame(
        [("p2", new, "running", 0.8, "High", 1), ("p3", new, "running", 0.4, "Some", 1)], TOPIC_AFFINITIES.schema))
    world = World()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stage, "profiles_frame", lambda spark, config, lake: world.profiles(spark))
        members, _, info = stage.current_members(spark, config, lake, D1)
    got = {(r.audience, r.profile_id) for r in members.collect()}
    # Each dimension's latest run counts: p2's older category row is left out, p1's is kept next to the topic rows.
    assert got == {("runners", "p2"), ("book_fans", "p1")} and info["unavailable"] == {}
