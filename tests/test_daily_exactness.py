"""Daily runs equal a full rebuild: a small demo world run one day at a time, then rebuilt in full from the same
bronze in a copy of the lake, gives the same identity and profile tables.

The days hold what makes incremental runs hard:

- day 1: a late record for an earlier day that merges two profiles;
- day 2: a record joining one customer's id to another customer's email (a limit split) and an erasure;
- every day: the demo's own late deliveries and re-deliveries, and a 3-day attribute
  (``most_viewed_product_last_3_days``) whose window slides past older events.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest

from cdp_spark.config import load_config
from cdp_spark.demo import generate, grow
from cdp_spark.ingest.tables import EVENTS
from cdp_spark.lake import default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.pipeline import FULL_STAGES, run_job
from cdp_spark.privacy import erase
from tests.conftest import CONF
from tests.lake_compare import VOLATILE, table_snapshot
from tests.test_identity_demo import events

pytestmark = pytest.mark.slow

END = dt.date(2026, 11, 1)
WORLD = {"people": 40, "days": 6, "seed": 13, "end_date": END}
STAGES = ["erasure", "ingest", "identity", "profiles"]
# Every table the daily stages above derive from bronze; gold.profile_id_history is left out on purpose: it records
# each run's changes, so daily runs hold a row per day's merge where one rebuild holds none.
DERIVED = ("silver.identifiers", "silver.id_links", "gold.id_graph", "gold.event_profiles", "gold.profiles")


@pytest.fixture(scope="module")
def lakes(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("exactness")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CDP_LAKE_ROOT", str(root / "a"))
        config = load_config(str(CONF))
    config = config.model_copy(update={"pipeline": config.pipeline.model_copy(update={"stages": STAGES})})
    generate(spark, config.demo_dir, truth_dir=str(root / "truth"), **WORLD)
    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    # Two little profiles a late record will merge.
    lake.append(EVENTS.name, events(spark, "plant-1", [
        (dt.datetime(2026, 10, 29, 8), {"email": "m1@merge.example", "cookie_id": "m-c1"}),
        (dt.datetime(2026, 10, 29, 9), {"email": "m2@merge.example", "cookie_id": "m-c2"})]))
    run_job(spark, config, lake, "daily", END, lock=False)
    graph = {(r.id_type, r.value): r.profile_id for r in lake.read("gold.id_graph").collect()}
    customers = sorted(v for t, v in graph if t == "customer_id")
    email_of = {c: sorted(v for (t, v), p in graph.items() if t == "email" and p == graph[("customer_id", c)])
                for c in customers[:3]}
    growth = grow(spark, config.demo_dir, truth_dir=str(root / "truth"), next_days=3, **WORLD)
    runs = []
    try:
        for i, day in enumerate(growth.days):
            growth.land(spark, day)
            if i == 0:  # late, dated before the first run: merges the two little profiles
                lake.append(EVENTS.name, events(spark, "plant-2", [
                    (dt.datetime(2026, 10, 30, 10), {"email": "m2@merge.example", "cookie_id": "m-c1"})]))
            if i == 1:  # two customer ids in one record: the limit of one customer id splits them again
                lake.append(EVENTS.name, events(spark, "plant-3", [
                    (dt.datetime.combine(day, dt.time(7)), {"customer_id": customers[0],
                                                            "email": email_of[customers[1]][0]})]))
                erase.request(config, lake, [f"email:{email_of[customers[2]][0]}"])
            runs.append(run_job(spark, config, lake, "daily", day, lock=False))
    finally:
        growth.close(spark)
    last = growth.days[-1]
    # The rebuild: a copy of the lake, identity and profiles rebuilt in full from all of bronze (`cdp run daily
    # --full`). Profile ids are history (the oldest id survives a merge), so the rebuild keeps them, as in place.
    shutil.copytree(root / "a", root / "b")
    rebuilt = EmbeddedLake(spark, str(root / "b"), default_registry())
    rebuild = [run_job(spark, config, rebuilt, stage, last, lock=False, registry=FULL_STAGES).results[stage]
               for stage in ("identity", "profiles")]
    return {"a": lake, "b": rebuilt, "root": root, "runs": runs, "rebuild": rebuild, "last": last, "graph": graph,
            "customers": customers}


def test_the_days_were_incremental_and_held_a_merge_a_split_and_an_erasure(lakes):
    a = lakes["a"]
    for stage in ("identity", "profiles"):
        modes = [r.results[stage].metrics["mode"] for r in lakes["runs"]]
        assert modes == ["incremental", "full", "incremental"], stage  # the erasure rewrote bronze on day 2
    profiles = a.read("gold.profiles").count()
    for day in (0, 2):
        assert 0 < lakes["runs"][day].results["profiles"].metrics["profiles_rebuilt"] < profiles
    history = {(h.reason, h.as_of) for h in a.read("gold.profile_id_history").collect()}
    assert ("merge", lakes["last"] - dt.timedelta(days=2)) in history
    g = {(r.id_type, r.value): r.profile_id for r in a.read("gold.id_graph").collect()}
    c0, c1 = lakes["customers"][:2]
    assert g[("customer_id", c0)] != g[("customer_id", c1)]
    assert ("customer_id", lakes["customers"][2]) not in g
    # New events and late ones were assigned after day 1: the assignment table grew without being rewritten.
    inc = lakes["runs"][0].results["identity"].rows_out["gold.event_profiles"]
    assert 0 < inc < a.read("gold.event_profiles").count() / 2


@pytest.mark.parametrize("name", DERIVED)
def test_daily_runs_equal_a_full_rebuild(lakes, name):
    assert [r.metrics["mode"] for r in lakes["rebuild"]] == ["full", "full"]
    root = lakes["root"]
    ignore = VOLATILE.get(name, set())
    a, b = (table_snapshot(str(root / side), name, ignore) for side in ("a", "b"))
    assert a["rows"] and a == b


def _values(text: str) -> dict:
    """An attributes JSON object, doubles to 12 significant digits (sums add up in partition order)."""
    return {k: float(f"{v:.12g}") if isinstance(v, float) else v for k, v in json.loads(text).items()}


def test_attributes_of_the_last_day_equal_a_full_rebuild(lakes):
    last = lakes["last"].isoformat()
    a, b = ({r.profile_id: (_values(r.attributes), r.definitions_hash) for r in
             lakes[side].read("gold.profile_attributes").where(f"as_of = '{last}'").collect()} for side in ("a", "b"))
    assert a and a == b
    assert any(v.get("most_viewed_product_last_3_days") for v, _ in a.values()), "no sliding 3-day attribute"
    # Carried rows moved their day counts on: somebody untouched on the last day has a count above one day.
    assert any((v.get("days_since_last_seen") or 0) > 1 for v, _ in a.values())
