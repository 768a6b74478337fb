"""A landing zone of messy files, one per kind of bad input, with what ingestion must make of each file.

`write_messy(root)` writes `<root>/web/...` (NDJSON, the web source: events and profile records) and
`<root>/orders/...` (CSV) and returns, per source and file (relative path), the expected ledger outcome: status,
(read, accepted, quarantined, duplicates) and the quarantine reasons of its records.
"""
from __future__ import annotations

import bz2
import datetime as dt
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

ORDERS_HEADER = "order_id,order_time,email,phone,quantity,unit_price,currency,note\n"


@dataclass(frozen=True)
class Expect:
    counts: tuple[int, int, int, int] = (0, 0, 0, 0)   # read, accepted, quarantined, duplicates
    reasons: list[str] = field(default_factory=list)   # one entry per quarantined record's reasons, joined by "+"
    status: str = "ingested"


def _t(days_ago: float = 30) -> str:
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _track(mid: str, **extra) -> dict:
    return {"type": "track", "event": "Product Viewed", "messageId": mid, "anonymousId": "anon-" + mid,
            "timestamp": _t(), **extra}


def _lines(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def write_messy(root: Path) -> dict[str, dict[str, Expect]]:
    web, orders = root / "web", root / "orders"
    web.mkdir(parents=True)
    orders.mkdir(parents=True)
    now = dt.datetime.now(dt.timezone.utc)
    expect: dict[str, dict[str, Expect]] = {"web": {}, "orders": {}}

    def put(folder: Path, name: str, data: str | bytes, outcome: Expect) -> None:
        (folder / name).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        expect[folder.name][name] = outcome

    # 1. role both: neither an event (no usable time) nor a profile record (no trait) is quarantined, not lost
    put(web, "both_bad_times.json", _lines(
        _track("t1", timestamp="not a time"), {k: v for k, v in _track("t2").items() if k != "timestamp"},
        _track("t3", timestamp="2026-13-45T99:99:99Z"), _track("t4"), _track("t5"),
        {"type": "identify", "messageId": "i1", "userId": "c1", "traits": {"first_name": "Ann"}},
        {"type": "identify", "messageId": "i2", "userId": "c2"}),
        Expect((7, 3, 4, 0), ["missing_or_bad:event_time"] * 4))
    # 2. nesting: 900 levels quarantined before any parse recurses; 300 levels read
    deep = lambda n: '{"type":"track","event":"x","messageId":"d%d","anonymousId":"a","timestamp":"%s","context":' % (n, _t()) \
        + '{"a":' * (n - 2) + "1" + "}" * (n - 2) + "}"
    put(web, "deep.json", _lines(deep(900), deep(300), _track("d1")), Expect((3, 2, 1, 0), ["too_deep"]))
    # 4. implausible times quarantined; epoch seconds and milliseconds read
    put(web, "times.json", _lines(
        _track("y1", timestamp="0001-01-01T00:00:00Z"), _track("f1", timestamp=_t(-3)),
        _track("e1", timestamp=int((now - dt.timedelta(days=2)).timestamp())),
        _track("e2", timestamp=str(int((now - dt.timedelta(days=2)).timestamp() * 1000)))),
        Expect((4, 2, 2, 0), ["implausible:event_time"] * 2))
    # 6. re-delivered events: within a file and across files
    put(web, "dup_a.json", _lines(_track("r1"), _track("r2"), _track("r1")), Expect((3, 2, 0, 1)))
    put(web, "dup_b.json", _lines(_track("r2"), _track("r3")), Expect((2, 1, 0, 1)))
    # 7. compressed files are read; a compression Spark cannot read is recorded, a corrupt one fails alone
    put(web, "gz.json.gz", gzip.compress(_lines(_track("g1"), _track("g2")).encode()), Expect((2, 2, 0, 0)))
    put(web, "bz.json.bz2", bz2.compress(_lines(_track("b1")).encode()), Expect((1, 1, 0, 0)))
    put(web, "frame.json.lz4", b"\x04\x22\x4d\x18" + b"\x00" * 32, Expect(status="unreadable"))
    put(web, "cut.json.gz", gzip.compress(_lines(_track("c1")).encode())[:-12], Expect(status="failed"))
    # 7. NUL in a value: refused with the field named
    put(web, "nul.json", _lines(_track("n1", event="View\u0000ed"), _track("n2")), Expect((2, 1, 1, 0), ["nul_byte:event_name"]))
    # 10. diverted QA traffic is accepted (and kept in bronze)
    put(web, "diverted.json", _lines(_track("q1", context={"page": {"url": "http://localhost:3000/"}})), Expect((1, 1, 0, 0)))
    # reading: BOM, CRLF, blank lines, a malformed line, invalid UTF-8, an empty file
    put(web, "reading.json", b"\xef\xbb\xbf" + json.dumps(_track("m1")).encode() + b"\r\n\r\n{not json\r\n"
        + json.dumps(_track("m2", event="caf\u00e9")).encode().replace(b"caf\\u00e9", b"caf\xe9") + b"\n",
        Expect((3, 1, 2, 0), ["malformed_json", "invalid_encoding"]))
    put(web, "empty.json", b"", Expect((0, 0, 0, 0)))

    # 7. CSV: a quoted field with line breaks is one record; NUL refused; the usual malformed lines
    row = lambda oid, **kw: ",".join([oid, kw.get("t", _t()), kw.get("email", f"{oid.lower()}@example.com"), "",
                                     kw.get("q", "1"), "5", kw.get("cur", "EUR"), kw.get("note", "")]) + "\n"
    put(orders, "multiline.csv", ORDERS_HEADER + row("O1") + row("O2", note='"deliver to:\r\nback door\r\n""ring twice"""')
        + row("O3"), Expect((3, 3, 0, 0)))
    put(orders, "nul.csv", ORDERS_HEADER + row("O4", email="o4\x00@example.com") + row("O5"),
        Expect((2, 1, 1, 0), ["nul_byte:email"]))
    put(orders, "messy.csv", "\ufeff" + ORDERS_HEADER + row("O6", t="yesterday-ish") + row("O7", cur="ABC")
        + "O8,short\n" + row("O9") + row("O9"),
        Expect((5, 1, 3, 1), ["missing_or_bad:event_time", "currency_known", "malformed_csv"]))
    put(orders, "header_only.csv", ORDERS_HEADER, Expect((0, 0, 0, 0)))
    return expect
