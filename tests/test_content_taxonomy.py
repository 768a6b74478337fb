"""The topic taxonomy: edge weights equal P(b | a) computed independently with pandas."""
from __future__ import annotations

import itertools

import pandas as pd
import pytest

from cdp_spark.content.tables import CONTENT
from cdp_spark.content.taxonomy import topic_taxonomy, url_topics

PAGES = {"u1": ["running", "yoga"], "u2": ["running", "cycling", "yoga"], "u3": ["running"], "u4": ["cycling", "yoga"],
         "u5": [], "u6": ["cooking"]}


def content_frame(spark, pages):  # type: ignore[no-untyped-def]
    rows = [(url, url, "", [(t, 1.0 / len(ts)) for t in ts], "h", f"{url}.html", None, "2026-11")
            for url, ts in pages.items()]
    return spark.createDataFrame(rows, CONTENT.schema)


def pandas_taxonomy(pages) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    pairs = pd.DataFrame([(u, t) for u, ts in pages.items() for t in ts], columns=["url", "topic"])
    support = pairs.groupby("topic").url.nunique()
    rows = []
    for a, b in itertools.permutations(sorted(support.index), 2):
        both = len(set(pairs[pairs.topic == a].url) & set(pairs[pairs.topic == b].url))
        if both:
            rows.append((a, b, both / support[a], both, support[a]))
    return pd.DataFrame(rows, columns=["topic_a", "topic_b", "weight", "support_ab", "support_a"])


def test_edge_weights_are_p_b_given_a_and_the_graph_is_directed(spark):
    got = topic_taxonomy(content_frame(spark, PAGES)).toPandas().sort_values(["topic_a", "topic_b"])
    want = pandas_taxonomy(PAGES).sort_values(["topic_a", "topic_b"])
    assert got[["topic_a", "topic_b"]].values.tolist() == want[["topic_a", "topic_b"]].values.tolist()
    assert got.weight.tolist() == pytest.approx(want.weight.tolist())
    assert got.support_ab.tolist() == want.support_ab.tolist() and got.support_a.tolist() == want.support_a.tolist()
    edge = got.set_index(["topic_a", "topic_b"]).weight
    assert edge[("running", "yoga")] == pytest.approx(2 / 3) and edge[("yoga", "running")] == pytest.approx(2 / 3)
    assert edge[("cycling", "running")] == pytest.approx(1 / 2) and edge[("running", "cycling")] == pytest.approx(1 / 3)
    assert "cooking" not in set(got.topic_a) | set(got.topic_b)   # a topic alone on its page has no edge


def test_url_topics_explodes_topic_weight_pairs(spark):
    rows = url_topics(content_frame(spark, {"u1": ["a", "b"]})).orderBy("topic").collect()
    assert [(r.url, r.topic, r.weight) for r in rows] == [("u1", "a", 0.5), ("u1", "b", 0.5)]
