"""Settings of the `content` stage (`conf/content.yaml`): where pages land, the controlled topic vocabulary,
blocked paths, topic allow and deny lists, the monthly enrichment cap, affinities and recommendations.

Example:
    >>> cfg = ContentConfig.model_validate({"topics": [{"name": "running", "keywords": ["jogging", "marathon"]}],
    ...                                     "deny": ["gossip"], "monthly_cap": 500})
    >>> cfg.topics[0].keywords, cfg.monthly_cap, cfg.affinity.half_life_days
    (['jogging', 'marathon'], 500, 30.0)
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, field_validator, model_validator

from cdp_spark.config_base import Strict, repeated

TOPIC = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class Topic(Strict):
    """One topic of the controlled vocabulary: its name and the words and phrases that stand for it."""

    name: str = Field(pattern=TOPIC, description="topic name (lower-case slug), e.g. running")
    keywords: list[str] = Field(default_factory=list, description="synonyms, keywords and phrases found in text "
                                                                  "or metadata tags (the name itself always counts)")


class TopicAffinitySettings(Strict):
    """User topic affinities: page views of enriched URLs, decayed and banded as the scores stage's affinities."""

    events: list[str] = Field(default_factory=lambda: ["page", "Page Viewed", "page_viewed"],
                              description="event names that are page views (their page_url is joined to content)")
    half_life_days: PositiveFloat = Field(30.0, description="a view's weight halves every this many days")
    lookback_days: PositiveInt = Field(365, description="ignore views older than this")
    normalise: Literal["max", "sum"] = Field("max", description="max: the profile's top topic scores 1; sum: shares")
    top_n: PositiveInt = Field(5, description="topics kept per profile")
    bands: dict[str, float] = Field(default_factory=lambda: {"some": 0.3, "high": 0.6},
                                    description="Low below `some`, Some up to `high`, High above")

    @model_validator(mode="after")
    def _bands(self) -> "TopicAffinitySettings":
        if set(self.bands) != {"some", "high"} or not 0.0 < self.bands["some"] < self.bands["high"] < 1.0:
            raise ValueError("bands needs some and high with 0 < some < high < 1")
        return self


class ContentRecommendationSettings(Strict):
    """Content recommendations: enriched URLs scored by the profile's topic affinities expanded through the
    taxonomy, leaving out the URLs the profile has viewed."""

    enabled: bool = True
    top_n: PositiveInt = Field(10, description="URLs recommended per profile")
    taxonomy_weight: float = Field(0.5, ge=0.0, le=1.0, description="weight of a related topic b reached from an "
                                                                   "affinity topic a: score(a) x P(b|a) x this")


class ContentConfig(Strict):
    """The `content` domain."""

    enabled: bool = True
    path: Optional[str] = Field(None, description="folder of landed pages (*.html, *.htm) and catalogue files "
                                                  "(*.jsonl: url, title, description, meta, text); may use "
                                                  "{demo_dir} and {lake_root}; none: the stage does nothing")
    base_url: Optional[str] = Field(None, description="URL of an HTML file without a canonical link or og:url: "
                                                      "base_url + its path under the folder")
    topics: list[Topic] = Field(default_factory=list, description="the controlled vocabulary")
    metadata_only_vocabulary: bool = Field(
        True, description="true: metadata tags outside the vocabulary are ignored; false: they become topics too")
    allow: list[str] = Field(default_factory=list, description="topics kept (empty: all)")
    deny: list[str] = Field(default_factory=list, description="topics never kept")
    blocked_paths: list[str] = Field(default_factory=list, description="globs on the URL path (/account/*) of "
                                                                       "pages never enriched")
    monthly_cap: PositiveInt = Field(10_000, description="URLs enriched per calendar month; the rest wait for the "
                                                         "next month (reported in the ledger)")
    max_topics: PositiveInt = Field(5, description="topics kept per URL (strongest first)")
    metadata_weight: NonNegativeFloat = Field(1.0, description="raw weight of a topic named in the page's metadata")
    text_weight: NonNegativeFloat = Field(1.0, description="multiplier of a topic's TF-IDF score in the text")
    affinity: TopicAffinitySettings = Field(default_factory=TopicAffinitySettings)
    recommendations: ContentRecommendationSettings = Field(default_factory=ContentRecommendationSettings)

    @field_validator("topics")
    @classmethod
    def _unique(cls, v: list[Topic]) -> list[Topic]:
        names = [t.name for t in v]
        twice = repeated(names)
        if twice:
            raise ValueError(f"expected each topic name once; repeated: {', '.join(twice)}")
        return v

    @model_validator(mode="after")
    def _lists(self) -> "ContentConfig":
        both = sorted(set(self.allow) & set(self.deny))
        if both:
            raise ValueError(f"allow and deny both name {', '.join(both)} (expected a topic either allowed or denied)")
        return self
