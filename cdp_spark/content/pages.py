"""Landed pages: HTML files and JSON-lines catalogue records parsed into `Page`s (URL, title, description,
metadata topic tags, text), URL normalisation shared with page-view events, and blocked paths.

Metadata topic tags are the values of ``<meta property="article:tag">`` and ``article:section`` (Open Graph's
article namespace) and of a custom ``<meta name="topics" content="a, b">``; ``og:title``, ``og:description`` and
``description`` fill the title and description when the page has none of its own, and ``og:url`` or a canonical
link gives the URL. Script and style bodies are not text. A catalogue line carries the same fields as JSON:
``{"url", "title", "description", "meta": {"article:tag": [...], "topics": "a, b"}, "text"}``.

Example:
    >>> page = parse_html('<html><head><title>Trail shoes</title><meta name="topics" content="Running, gear">'
    ...                   '<link rel="canonical" href="https://Shop.example/blog/trail/?utm=x"></head>'
    ...                   '<body><p>Grip on wet rock.</p><script>var x;</script></body></html>', "blog/trail.html")
    >>> page.url, page.title, page.tags, page.text
    ('https://shop.example/blog/trail', 'Trail shoes', ('Running', 'gear'), 'Grip on wet rock.')
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Iterable, Sequence
from urllib.parse import urlsplit

from pyspark.sql import Column
from pyspark.sql import functions as F

TAG_PROPERTIES = ("article:tag", "article:section")   # Open Graph article tags that name topics
TOPICS_META = "topics"                                 # the custom <meta name="topics" content="a, b">
HTML_SUFFIXES = (".html", ".htm")
CATALOGUE_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class Page:
    """One landed page, as the topic extraction reads it."""

    url: str
    title: str
    description: str
    tags: tuple[str, ...]
    text: str
    source_file: str

    @property
    def content_hash(self) -> str:
        """A digest of what topics are extracted from: a page re-landed unchanged is not enriched again."""
        body = json.dumps([self.title, self.description, list(self.tags), self.text], ensure_ascii=False)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]

    @property
    def document(self) -> str:
        """The text TF-IDF reads: title, description and body."""
        return "\n".join(p for p in (self.title, self.description, self.text) if p)


def normalise_url(url: str) -> str:
    """Scheme and host lower-cased, query and fragment dropped, trailing slashes dropped (the root stays ``/``).

    Example:
        >>> normalise_url("HTTPS://Shop.Example/Blog/Run/?utm_source=x#top"), normalise_url("https://shop.example")
        ('https://shop.example/Blog/Run', 'https://shop.example/')
    """
    base = re.sub(r"[?#].*$", "", url.strip())
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/]*)(.*)$", base)
    if not match:
        return base
    head, path = match.group(1).lower(), match.group(2)
    path = re.sub(r"/+$", "", path)
    return head + (path or "/")


def url_column(column: str | Column) -> Column:
    """:func:`normalise_url` as a Spark column (page views' ``page_url`` meets ``gold.content.url`` with it).

    Example:
        >>> events.select(url_column("page_url").alias("url"))   # doctest: +SKIP
    """
    col = F.col(column) if isinstance(column, str) else column
    base = F.regexp_replace(F.trim(col), r"[?#].*$", "")
    pattern = r"^([A-Za-z][A-Za-z0-9+.-]*://[^/]*)(.*)$"
    head = F.lower(F.regexp_extract(base, pattern, 1))
    path = F.regexp_replace(F.regexp_extract(base, pattern, 2), r"/+$", "")
    return F.when(F.length(head) == 0, base).otherwise(
        F.concat(head, F.when(F.length(path) == 0, F.lit("/")).otherwise(path)))


def url_path(url: str) -> str:
    """The path of a URL (``/`` when empty).

    Example:
        >>> url_path("https://shop.example/account/orders")
        '/account/orders'
    """
    return urlsplit(url).path or "/"


def is_blocked(url: str, globs: Sequence[str]) -> bool:
    """Whether the URL's path matches one of the blocked globs (case-sensitive, ``*`` crosses ``/``).

    Example:
        >>> globs = ["/account/*"]
        >>> is_blocked("https://s.example/account/orders", globs), is_blocked("https://s.example/blog", globs)
        (True, False)
    """
    path = url_path(url)
    return any(fnmatch.fnmatchcase(path, g) for g in globs)


def split_tags(value: str) -> list[str]:
    """Comma-separated tag values, trimmed, empties dropped.

    Example:
        >>> split_tags(" running, , Trail Gear ")
        ['running', 'Trail Gear']
    """
    return [t.strip() for t in value.split(",") if t.strip()]


class _PageParser(HTMLParser):
    _SKIP = {"script", "style", "noscript", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, list[str]] = {}
        self.canonical: str | None = None
        self.title: list[str] = []
        self.text: list[str] = []
        self._in_title = False
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "meta":
            key = (a.get("property") or a.get("name") or "").strip().lower()
            if key and "content" in a:
                self.meta.setdefault(key, []).append(a["content"].strip())
        elif tag == "link" and "canonical" in a.get("rel", "").lower().split() and a.get("href"):
            self.canonical = self.canonical or a["href"].strip()
        elif tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._skip and data.strip():
            self.text.append(data.strip())


def _page(url: str, title: str, description: str, meta: dict[str, list[str]], text: str, source_file: str) -> Page:
    tags: list[str] = []
    for key in TAG_PROPERTIES:
        tags += [t for v in meta.get(key, []) for t in split_tags(v)]
    tags += [t for v in meta.get(TOPICS_META, []) for t in split_tags(v)]
    def first(key: str) -> str:
        return (meta.get(key) or [""])[0]

    return Page(url=normalise_url(url), title=" ".join((title or first("og:title")).split()),
                description=" ".join((description or first("description") or first("og:description")).split()),
                tags=tuple(dict.fromkeys(tags)), text=" ".join(text.split()), source_file=source_file)


def parse_html(html: str, relative_path: str, base_url: str | None = None) -> Page:
    """A page from an HTML document; its URL is ``og:url``, else the canonical link, else ``base_url`` + the file's
    path under the landing folder. Raises ValueError when none gives a URL.

    Example:
        >>> parse_html("<title>Hi</title>", "a/b.html", "https://s.example/").url
        'https://s.example/a/b.html'
    """
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    url = (parser.meta.get("og:url") or [None])[0] or parser.canonical
    if not url and base_url:
        url = base_url.rstrip("/") + "/" + relative_path.lstrip("/")
    if not url:
        raise ValueError("no URL: expected og:url, a canonical link or content.base_url")
    return _page(url, "".join(parser.title), "", parser.meta, " ".join(parser.text), relative_path)


def parse_catalogue_line(line: str, relative_path: str) -> Page:
    """A page from one catalogue line (JSON object with ``url`` and optional title, description, meta, text).

    Example:
        >>> parse_catalogue_line('{"url": "https://s.example/a", "meta": {"topics": "x, y"}}', "c.jsonl").tags
        ('x', 'y')
    """
    record = json.loads(line)
    if not isinstance(record, dict) or not isinstance(record.get("url"), str) or not record["url"].strip():
        raise ValueError("expected a JSON object with a url")
    meta: dict[str, list[str]] = {}
    for key, value in (record.get("meta") or {}).items():
        values = value if isinstance(value, list) else [value]
        meta[str(key).lower()] = [str(v) for v in values if v is not None]
    return _page(record["url"], str(record.get("title") or ""), str(record.get("description") or ""), meta,
                 str(record.get("text") or ""), relative_path)


@dataclass
class Landed:
    """Pages parsed from a landing folder, one per URL, with the counts of what was set aside."""

    pages: list[Page]
    files: int = 0
    invalid: int = 0          # unreadable files or lines (no URL, bad JSON)
    duplicates: int = 0       # more pages for a URL already taken (the first file path wins)


def parse_files(files: Iterable[tuple[str, bytes]], base_url: str | None = None) -> Landed:
    """Pages from (relative path, content) pairs; the first file path (in sorted order) wins a URL.

    Example:
        >>> parse_files([("a.jsonl", b'{"url": "https://s.example/a"}\\nnot json\\n')]).invalid
        1
    """
    landed = Landed(pages=[])
    seen: set[str] = set()
    for path, content in sorted(files):
        landed.files += 1
        text = content.decode("utf-8", errors="replace")
        if path.lower().endswith(CATALOGUE_SUFFIXES):
            candidates = []
            for line in text.splitlines():
                if not line.strip():
                    continue
                try:
                    candidates.append(parse_catalogue_line(line, path))
                except ValueError:  # json.JSONDecodeError is a ValueError
                    landed.invalid += 1
        else:
            try:
                candidates = [parse_html(text, path, base_url)]
            except ValueError:
                landed.invalid += 1
                candidates = []
        for page in candidates:
            if page.url in seen:
                landed.duplicates += 1
                continue
            seen.add(page.url)
            landed.pages.append(page)
    return landed


def landed_files(spark, folder: str) -> list[tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    """(path under ``folder``, bytes) of every page and catalogue file below ``folder``, read in one Spark job
    (any file system Spark reads); empty when the folder does not exist.

    Example:
        >>> landed_files(spark, "/data/landing/content")[:1]   # doctest: +SKIP
        [('blog/trail.html', b'<html>...')]
    """
    from pyspark.errors import AnalysisException

    suffixes = (*HTML_SUFFIXES, *CATALOGUE_SUFFIXES)
    try:
        df = (spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(folder)
              .where(F.lower("path").rlike("(" + "|".join(re.escape(s) for s in suffixes) + ")$")))
        rows = df.select("path", "content").collect()
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            return []
        raise
    root = folder.split("://", 1)[-1] if "://" in folder else os.path.abspath(folder)
    root = root.rstrip("/")
    out = []
    for r in rows:
        path = r["path"]
        at = path.find(root)
        relative = path[at + len(root):] if at >= 0 else path.rsplit("/", 1)[-1]
        out.append((relative.lstrip("/"), bytes(r["content"])))
    return out
