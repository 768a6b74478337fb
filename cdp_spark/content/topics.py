"""Topics of a page: from its metadata tags and from its text, over a controlled vocabulary.

Text scores are scikit-learn TF-IDF (``TfidfVectorizer`` with its defaults: smoothed IDF, l2-normalised rows)
restricted to the vocabulary's terms (each topic's name and keywords, lower-cased, tokenised as words of letters
and digits, phrases as n-grams) and fitted on the whole landed corpus; a topic's text score is the sum of its
terms' TF-IDF values. A tag in the metadata matches a topic when it equals the topic's name or one of its keywords
(case and spacing aside). A topic's raw weight is ``metadata_weight`` (when tagged) + ``text_weight`` x its text
score; denied topics and, with an allow list, topics outside it are dropped; the ``max_topics`` strongest are kept
(ties by name) and their weights normalised to sum to 1 per URL. Everything is deterministic: same pages and
settings, same weights.

Example:
    >>> from cdp_spark.content.config import Topic
    >>> cfg = ContentConfig(topics=[Topic(name="running", keywords=["marathon"]), Topic(name="yoga")])
    >>> extractor = TopicExtractor(cfg, ["a marathon a day", "yoga at dawn", "cake"])
    >>> extractor.topics(("Running",), "marathon training")
    [('running', 1.0)]
"""
from __future__ import annotations

import re
from typing import Sequence

from cdp_spark.content.config import ContentConfig

TOKEN = r"(?u)\b\w+\b"   # single letters count too: keywords such as "3d" or "e bike" must tokenise alike


def terms(text: str) -> list[str]:
    """Lower-cased word tokens, as the vectorizer sees them.

    Example:
        >>> terms("E-Bike  Tours!")
        ['e', 'bike', 'tours']
    """
    return re.findall(TOKEN, text.lower())


def vocabulary(config: ContentConfig) -> dict[str, list[str]]:
    """Analysed term (``"trail running"``) -> the topics it stands for, in vocabulary order.

    Example:
        >>> from cdp_spark.content.config import Topic
        >>> vocabulary(ContentConfig(topics=[Topic(name="running", keywords=["Trail-Running"])]))
        {'running': ['running'], 'trail running': ['running']}
    """
    out: dict[str, list[str]] = {}
    for topic in config.topics:
        for word in (topic.name.replace("-", " ").replace("_", " "), *topic.keywords):
            term = " ".join(terms(word))
            if term and topic.name not in out.setdefault(term, []):
                out[term].append(topic.name)
    return out


class TopicExtractor:
    """Topic weights of pages, with TF-IDF fitted once on ``corpus`` (the documents of every landed page)."""

    def __init__(self, config: ContentConfig, corpus: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.config = config
        self.vocab = vocabulary(config)
        self.names = {t.name for t in config.topics}
        self._vectorizer = None
        if self.vocab:
            longest = max(len(t.split()) for t in self.vocab)
            self._vectorizer = TfidfVectorizer(vocabulary=sorted(self.vocab), token_pattern=TOKEN,
                                               ngram_range=(1, longest))
            self._vectorizer.fit(list(corpus) or [""])

    def text_scores(self, documents: Sequence[str]) -> list[dict[str, float]]:
        """Per document, topic -> summed TF-IDF of its terms (topics without a term in the document left out)."""
        if self._vectorizer is None or not documents:
            return [{} for _ in documents]
        matrix = self._vectorizer.transform(list(documents)).tocsr()
        names = self._vectorizer.get_feature_names_out()
        out = []
        for i in range(matrix.shape[0]):
            row = matrix.getrow(i)
            scores: dict[str, float] = {}
            for j, value in zip(row.indices, row.data):
                for topic in self.vocab[names[j]]:
                    scores[topic] = scores.get(topic, 0.0) + float(value)
            out.append(scores)
        return out

    def metadata_topics(self, tags: Sequence[str]) -> list[str]:
        """Topics named by metadata tags: vocabulary matches, and unknown tags as slugs unless the config keeps
        metadata to the vocabulary.

        Example:
            >>> from cdp_spark.content.config import Topic
            >>> TopicExtractor(ContentConfig(topics=[Topic(name="running", keywords=["jogging"])]),
            ...                []).metadata_topics(["Jogging", "cats"])
            ['running']
        """
        found: list[str] = []
        for tag in tags:
            term = " ".join(terms(tag))
            matched = self.vocab.get(term)
            if matched is None and not self.config.metadata_only_vocabulary and term:
                matched = [term.replace(" ", "-")]
            for topic in matched or []:
                if topic not in found:
                    found.append(topic)
        return found

    def combine(self, tagged: Sequence[str], text: dict[str, float]) -> list[tuple[str, float]]:
        """(topic, weight) pairs, strongest first, weights summing to 1 (empty when no topic is left)."""
        cfg = self.config
        raw: dict[str, float] = {t: cfg.text_weight * s for t, s in text.items()}
        for topic in tagged:
            raw[topic] = raw.get(topic, 0.0) + cfg.metadata_weight
        allow, deny = set(cfg.allow), set(cfg.deny)
        kept = sorted(((t, w) for t, w in raw.items() if w > 0 and t not in deny and (not allow or t in allow)),
                      key=lambda tw: (-tw[1], tw[0]))[:cfg.max_topics]
        total = sum(w for _, w in kept)
        return [(t, w / total) for t, w in kept] if total > 0 else []

    def topics(self, tags: Sequence[str], document: str) -> list[tuple[str, float]]:
        """One page's topics from its tags and document."""
        return self.combine(self.metadata_topics(tags), self.text_scores([document])[0])
