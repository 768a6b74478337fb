"""Landed pages: HTML and catalogue parsing, URL normalisation (Python and Spark agree), blocked paths."""
from __future__ import annotations

import pytest

from cdp_spark.content.pages import (Page, is_blocked, landed_files, normalise_url, parse_catalogue_line, parse_files,
                                     parse_html, url_column)

ARTICLE = """<!doctype html><html><head>
<title>  Trail   running shoes </title>
<meta name="description" content="Grip and comfort.">
<meta property="og:url" content="HTTPS://Shop.Example.com/journal/trail/?utm_source=mail#top">
<meta property="og:title" content="OG title is not the title">
<meta property="article:tag" content="Running">
<meta property="article:tag" content="Gear">
<meta property="article:section" content="Sports">
<meta name="topics" content="trail running, , outdoors">
<link rel="canonical" href="https://shop.example.com/other">
<style>.x { color: red }</style></head>
<body><h1>Shoes</h1><p>Grip on wet rock &amp; mud.</p><script>var marathon = 1;</script></body></html>"""


def test_an_html_page_gives_url_title_tags_and_text_without_scripts():
    page = parse_html(ARTICLE, "journal/trail.html")
    assert page.url == "https://shop.example.com/journal/trail"        # og:url wins over the canonical link
    assert page.title == "Trail running shoes" and page.description == "Grip and comfort."
    assert page.tags == ("Running", "Gear", "Sports", "trail running", "outdoors")
    assert page.text == "Shoes Grip on wet rock & mud." and "marathon" not in page.document
    assert page.source_file == "journal/trail.html"


def test_the_url_falls_back_to_the_canonical_link_then_the_base_url_and_else_is_an_error():
    assert parse_html('<link rel="canonical" href="https://s.example/a/">', "x.html").url == "https://s.example/a"
    assert parse_html("<title>t</title>", "blog/b.html", "https://s.example/").url == "https://s.example/blog/b.html"
    with pytest.raises(ValueError, match="no URL"):
        parse_html("<title>t</title>", "blog/b.html")


def test_og_title_and_description_fill_in_when_the_page_has_none():
    page = parse_html('<meta property="og:title" content="From OG"><meta property="og:description" content="D">'
                      '<meta property="og:url" content="https://s.example/p">', "p.html")
    assert (page.title, page.description) == ("From OG", "D")


def test_catalogue_lines_and_files_count_invalid_records_and_duplicate_urls():
    line = parse_catalogue_line('{"url": "https://s.example/a?x=1", "title": "A", "meta": {"article:tag": ["x", "y"], '
                                '"topics": "z"}, "text": "words"}', "c.jsonl")
    assert (line.url, line.title, line.tags, line.text) == ("https://s.example/a", "A", ("x", "y", "z"), "words")
    landed = parse_files([
        ("b.jsonl", b'{"url": "https://s.example/a"}\n{"title": "no url"}\nnot json\n\n'),
        ("a/page.html", b'<meta property="og:url" content="https://s.example/a/">'),   # same URL, earlier path wins
        ("c.html", b"<title>no url</title>"),
    ])
    assert [p.source_file for p in landed.pages] == ["a/page.html"]
    assert (landed.files, landed.invalid, landed.duplicates) == (3, 3, 1)


def test_content_hash_follows_the_content_not_the_file():
    a = Page("u", "t", "d", ("x",), "text", "a.html")
    assert a.content_hash == Page("u", "t", "d", ("x",), "text", "b.html").content_hash
    assert a.content_hash != Page("u", "t", "d", ("x",), "text!", "a.html").content_hash


def test_blocked_paths_are_globs_on_the_url_path():
    globs = ["/account/*", "/cart"]
    assert is_blocked("https://s.example/account/help", globs) and is_blocked("https://s.example/cart", globs)
    assert not is_blocked("https://s.example/journal/account", globs)
    assert not is_blocked("https://s.example/cart/items", globs)


URLS = ["HTTPS://Shop.Example.com/Journal/Run/?utm=1#x", "https://shop.example.com", "https://shop.example.com/",
        "https://shop.example.com/a//", "/relative/path/?q", "https://s.example/p#frag", " https://s.example/x "]


def test_spark_url_normalisation_matches_python(spark):
    df = spark.createDataFrame([(u,) for u in URLS], "u string")
    got = [r[0] for r in df.select(url_column("u")).collect()]
    assert got == [normalise_url(u) for u in URLS]
    assert normalise_url(URLS[0]) == "https://shop.example.com/Journal/Run"
    assert normalise_url(URLS[1]) == normalise_url(URLS[2]) == "https://shop.example.com/"


def test_landed_files_reads_pages_and_catalogues_below_the_folder(spark, tmp_path):
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "a.html").write_text("<title>a</title>")
    (tmp_path / "c.jsonl").write_text('{"url": "https://s.example/c"}\n')
    (tmp_path / "notes.txt").write_text("ignored")
    files = sorted(landed_files(spark, str(tmp_path)))
    assert files == [("c.jsonl", b'{"url": "https://s.example/c"}\n'), ("journal/a.html", b"<title>a</title>")]
    assert landed_files(spark, str(tmp_path / "missing")) == []
