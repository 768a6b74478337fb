"""Topic extraction: TF-IDF over the controlled vocabulary against scikit-learn used directly and against the
formula by hand, metadata tags, allow and deny lists, the per-URL cap and normalisation."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from cdp_spark.content.config import ContentConfig, Topic
from cdp_spark.content.topics import TOKEN, TopicExtractor, vocabulary

TOPICS = [Topic(name="running", keywords=["marathon", "Trail Running"]), Topic(name="yoga", keywords=["pose"]),
          Topic(name="cooking", keywords=["recipe"])]
CORPUS = ["Marathon training: a marathon plan for trail running.",
          "Yoga pose of the day and a running warm-up.",
          "A recipe for pasta, and a recipe for soup.",
          "Nothing relevant here."]


def config(**kw) -> ContentConfig:  # type: ignore[no-untyped-def]
    return ContentConfig(topics=TOPICS, **kw)


def test_text_scores_equal_sklearn_tfidf_summed_per_topic():
    extractor = TopicExtractor(config(), CORPUS)
    got = extractor.text_scores(CORPUS)
    terms = {"running": ["running", "marathon", "trail running"], "yoga": ["yoga", "pose"],
             "cooking": ["cooking", "recipe"]}
    vocab = sorted({t for ts in terms.values() for t in ts})
    direct = TfidfVectorizer(vocabulary=vocab, token_pattern=TOKEN, ngram_range=(1, 2)).fit(CORPUS)
    matrix = direct.transform(CORPUS).toarray()
    for i, scores in enumerate(got):
        expected = {topic: sum(matrix[i, vocab.index(t)] for t in ts) for topic, ts in terms.items()}
        expected = {k: v for k, v in expected.items() if v > 0}
        assert scores == pytest.approx(expected)
    assert got[3] == {}


def test_text_scores_equal_the_tfidf_formula_by_hand():
    # Document 0 of CORPUS: marathon x2, running x1, "trail running" x1; no other vocabulary term.
    n = len(CORPUS)
    df = {"marathon": 1, "running": 2, "trail running": 1}
    idf = {t: math.log((1 + n) / (1 + d)) + 1 for t, d in df.items()}
    raw = {"marathon": 2 * idf["marathon"], "running": 1 * idf["running"], "trail running": 1 * idf["trail running"]}
    norm = math.sqrt(sum(v * v for v in raw.values()))
    assert TopicExtractor(config(), CORPUS).text_scores([CORPUS[0]])[0] == pytest.approx(
        {"running": sum(raw.values()) / norm})


def test_vocabulary_analyses_keywords_like_text_and_shares_terms():
    topics = [Topic(name="trail-running"), Topic(name="hiking", keywords=["Trail running"])]
    vocab = vocabulary(ContentConfig(topics=topics))
    assert vocab == {"trail running": ["trail-running", "hiking"], "hiking": ["hiking"]}


def test_metadata_and_text_combine_into_weights_summing_to_one():
    extractor = TopicExtractor(config(metadata_weight=1.0, text_weight=1.0), CORPUS)
    text = extractor.text_scores([CORPUS[1]])[0]
    got = dict(extractor.topics(["Recipe", "unknown tag"], CORPUS[1]))
    raw = {"running": text["running"], "yoga": text["yoga"], "cooking": 1.0}
    total = sum(raw.values())
    assert got == pytest.approx({k: v / total for k, v in raw.items()})
    assert sum(got.values()) == pytest.approx(1.0)
    ordered = extractor.topics(["Recipe"], CORPUS[1])
    assert [w for _, w in ordered] == sorted((w for _, w in ordered), reverse=True)


def test_unknown_metadata_tags_become_topics_only_when_allowed_by_the_config():
    assert TopicExtractor(config(), []).metadata_topics(["Pose", "Trail  running", "Cats"]) == ["yoga", "running"]
    open_cfg = config(metadata_only_vocabulary=False)
    assert TopicExtractor(open_cfg, []).metadata_topics(["Pose", "Big Cats"]) == ["yoga", "big-cats"]


def test_deny_and_allow_lists_and_max_topics():
    tags = ["running", "yoga", "recipe"]
    assert [t for t, _ in TopicExtractor(config(deny=["yoga"]), CORPUS).topics(tags, "")] == ["cooking", "running"]
    assert [t for t, _ in TopicExtractor(config(allow=["yoga"]), CORPUS).topics(tags, "")] == ["yoga"]
    assert TopicExtractor(config(allow=["yoga"], deny=["running"]), CORPUS).topics(["running"], "") == []
    two = TopicExtractor(config(max_topics=2), CORPUS).topics(tags, "")   # equal weights: ties by name
    assert two == [("cooking", 0.5), ("running", 0.5)]
    with pytest.raises(ValueError, match="either allowed or denied"):
        config(allow=["yoga"], deny=["yoga"])


def test_extraction_is_deterministic_and_fitted_on_the_corpus():
    a = TopicExtractor(config(), CORPUS).topics(["pose"], CORPUS[0])
    b = TopicExtractor(config(), list(CORPUS)).topics(["pose"], CORPUS[0])
    assert a == b
    # Another corpus gives other IDF weights: the extractor really uses the corpus it was given.
    other = TopicExtractor(config(), CORPUS + ["marathon"] * 5).text_scores([CORPUS[1]])[0]
    assert other != TopicExtractor(config(), CORPUS).text_scores([CORPUS[1]])[0]


def test_no_vocabulary_means_metadata_only():
    extractor = TopicExtractor(ContentConfig(metadata_only_vocabulary=False), CORPUS)
    assert extractor.text_scores(CORPUS) == [{}] * 4
    assert extractor.topics(["Running"], "marathon") == [("running", 1.0)]
    assert np.isclose(sum(w for _, w in extractor.topics(["a", "b", "c"], "")), 1.0)
