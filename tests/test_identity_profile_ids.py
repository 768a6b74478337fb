"""`identity.profiles.assign_profile_ids` on hand-made groups: fresh ids (checked against hashlib), the oldest id
surviving a merge, a split keeping the old id with the larger part, and the history of both."""
from __future__ import annotations

import datetime as dt
import hashlib

from cdp_spark.identity.profiles import assign_profile_ids

DAY1, DAY2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
MIDNIGHT2 = dt.datetime(2026, 11, 2)
GROUPS = "vid long, id_type string, value string, group long"
PREVIOUS = "vid long, profile_id string, profile_created_at date, assigned_at timestamp"


def fresh(as_of: dt.date, group: int, org: str | None = None) -> str:
    text = "|".join([*([org] if org else []), as_of.isoformat(), str(group)])
    return "p_" + hashlib.sha256(text.encode()).hexdigest()[:24]


def by_vid(graph) -> dict[int, tuple]:
    return {r.vid: (r.profile_id, r.profile_created_at, r.assigned_at) for r in graph.collect()}


def history(df) -> set[tuple]:
    return {(r.old_profile_id, r.new_profile_id, r.reason, r.identifiers) for r in df.collect()}


def test_without_a_previous_graph_every_group_gets_a_fresh_id_salted_by_org(spark):
    groups = spark.createDataFrame([(1, "email", "a", 7), (2, "phone", "1", 7), (3, "email", "b", 9)], GROUPS)
    graph, hist = assign_profile_ids(groups, None, DAY2)
    assert by_vid(graph) == {1: (fresh(DAY2, 7), DAY2, MIDNIGHT2), 2: (fresh(DAY2, 7), DAY2, MIDNIGHT2),
                             3: (fresh(DAY2, 9), DAY2, MIDNIGHT2)}
    assert history(hist) == set()
    acme, _ = assign_profile_ids(groups, None, DAY2, org="acme")
    assert {r.profile_id for r in acme.collect()} == {fresh(DAY2, 7, "acme"), fresh(DAY2, 9, "acme")}


def test_a_merge_keeps_the_oldest_id_and_records_the_other_as_merged(spark):
    t1 = dt.datetime(2026, 11, 1, 3)
    previous = spark.createDataFrame([(1, "p_old", DAY1, t1), (2, "p_new", DAY2, t1), (3, "p_new", DAY2, t1)],
                                     PREVIOUS)
    groups = spark.createDataFrame([(1, "email", "a", 5), (2, "email", "b", 5), (3, "phone", "1", 5)], GROUPS)
    graph, hist = assign_profile_ids(groups, previous, DAY2)
    # the surviving id keeps its creation date; identifiers already under it keep their assignment time
    assert by_vid(graph) == {1: ("p_old", DAY1, t1), 2: ("p_old", DAY1, MIDNIGHT2), 3: ("p_old", DAY1, MIDNIGHT2)}
    assert history(hist) == {("p_new", "p_old", "merge", 2)}


def test_a_split_leaves_the_old_id_with_the_larger_part_and_a_fresh_id_to_the_rest(spark):
    t1 = dt.datetime(2026, 11, 1, 3)
    previous = spark.createDataFrame([(1, "p_one", DAY1, t1), (2, "p_one", DAY1, t1), (3, "p_one", DAY1, t1)],
                                     PREVIOUS)
    groups = spark.createDataFrame([(1, "email", "a", 4), (2, "email", "b", 4), (3, "phone", "1", 8)], GROUPS)
    graph, hist = assign_profile_ids(groups, previous, DAY2)
    assert by_vid(graph) == {1: ("p_one", DAY1, t1), 2: ("p_one", DAY1, t1), 3: (fresh(DAY2, 8), DAY2, MIDNIGHT2)}
    assert history(hist) == {("p_one", fresh(DAY2, 8), "split", 1)}
