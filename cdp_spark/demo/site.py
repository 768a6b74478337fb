"""The demo retailer's journal: a small site of HTML articles with Open Graph and topics meta tags, landed under
``landing/content`` for the `content` stage. Web sessions of the demo start on one of these articles (most often
one about the visitor's favourite product category), so page views meet enriched content.

Each product category has ``ARTICLES_PER_CATEGORY`` articles. An article is about one main topic of its category
(tagged with ``article:tag`` and named in its text several times) and, every other article, a second topic of the
next category (in the ``topics`` meta tag and once in the text): the topic taxonomy then has edges between them.
One help page lives under ``/account/``, a path the shipped content.yaml blocks.

Example:
    >>> len(articles()), articles()[0].path
    (32, '/journal/electronics-1')
"""
from __future__ import annotations

import html
from dataclasses import dataclass

from cdp_spark.demo.model import CATEGORIES

ARTICLES_PER_CATEGORY = 4
SHOP = "https://shop.example.com"

# topic -> keywords, as in the shipped conf/content.yaml (the text uses them; the stage reads them from the config)
TOPICS: dict[str, list[str]] = {
    "gadgets": ["smartphone", "headphones", "laptop"],
    "reading": ["novel", "author", "bookshelf"],
    "interiors": ["sofa", "lamp", "decor"],
    "cooking": ["recipe", "oven", "baking"],
    "style": ["outfit", "jacket", "wardrobe"],
    "skincare": ["serum", "moisturiser", "sunscreen"],
    "running": ["marathon", "trainers", "jogging"],
    "cycling": ["bike", "saddle", "cyclist"],
    "play": ["puzzle", "board game", "building blocks"],
    "gardening": ["compost", "seedlings", "lawn"],
}
CATEGORY_TOPICS: dict[str, list[str]] = {
    "electronics": ["gadgets"], "books": ["reading"], "home": ["interiors", "cooking"], "fashion": ["style"],
    "beauty": ["skincare"], "sports": ["running", "cycling"], "toys": ["play"], "garden": ["gardening"],
}


@dataclass(frozen=True)
class Article:
    """One page of the journal."""

    path: str
    title: str
    topic: str
    second: str | None

    @property
    def url(self) -> str:
        return SHOP + self.path

    def html(self) -> str:
        """The page: title, description, og:url, article:tag, the topics meta tag and a few paragraphs."""
        words = TOPICS[self.topic]
        body = [f"Our {words[0]} notes: how to choose, care for and enjoy it.",
                f"Readers asked about {words[1]} and {words[2]}; here is what our team learned about {self.topic}.",
                f"A short checklist on {words[0]} before you buy."]
        topics = [self.topic]
        if self.second:
            body.append(f"It pairs well with {TOPICS[self.second][0]}, too.")
            topics.append(self.second)
        description = f"A guide to {words[0]} and {words[1]}."
        e = html.escape
        return ("<!doctype html>\n<html><head>\n"
                f"<title>{e(self.title)}</title>\n"
                f'<meta name="description" content="{e(description)}">\n'
                f'<meta property="og:url" content="{e(self.url)}">\n'
                f'<meta property="og:title" content="{e(self.title)}">\n'
                f'<meta property="og:type" content="article">\n'
                f'<meta property="article:tag" content="{e(self.topic)}">\n'
                f'<meta name="topics" content="{e(", ".join(topics))}">\n'
                "<style>p { margin: 0 }</style>\n</head><body>\n"
                + "".join(f"<p>{e(p)}</p>\n" for p in body)
                + "<script>window.analytics && analytics.page();</script>\n</body></html>\n")


def articles() -> list[Article]:
    """Every journal article, in a fixed order (category, then number)."""
    out = []
    for c, category in enumerate(CATEGORIES):
        own = CATEGORY_TOPICS[category]
        nxt = CATEGORY_TOPICS[CATEGORIES[(c + 1) % len(CATEGORIES)]]
        for i in range(ARTICLES_PER_CATEGORY):
            topic = own[i % len(own)]
            second = nxt[i % len(nxt)] if i % 2 == 1 else None
            title = f"{topic.capitalize()} journal, part {i + 1}"
            out.append(Article(f"/journal/{category}-{i + 1}", title, topic, second))
    return out


def article_paths() -> list[str]:
    """URL paths of the articles, in :func:`articles` order (the web events pick one by index)."""
    return [a.path for a in articles()]


def site_files() -> dict[str, str]:
    """Relative file path under ``landing/content`` -> HTML text: the articles and one blocked help page."""
    files = {f"journal/{a.path.rsplit('/', 1)[-1]}.html": a.html() for a in articles()}
    help_page = Article("/account/help", "Account help", "gadgets", None)
    files["account/help.html"] = help_page.html()
    return files
