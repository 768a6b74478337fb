"""Pure message logic of the collector: validation, nesting depth, stamping and clock-skew correction (no I/O, no
web stack).

Example:
    >>> import datetime as dt
    >>> now = dt.datetime(2026, 11, 1, 12, 0, 10, tzinfo=dt.timezone.utc)
    >>> m = stamp({"type": "track", "event": "x", "userId": "u", "timestamp": "2026-11-01T12:00:00Z",
    ...            "sentAt": "2026-11-01T12:00:05Z"}, now)
    >>> m["timestamp"], m["originalTimestamp"]
    ('2026-11-01T12:00:05.000Z', '2026-11-01T12:00:00Z')
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

TYPES = ("track", "identify", "page", "screen", "group", "alias")
REQUIRED = {"track": "event", "alias": "previousId", "group": "groupId"}
# Fields never stored: the write key is a secret.
STRIPPED = ("writeKey",)


class Unusable(ValueError):
    """A message that cannot be stored as sent; ``reason`` is its dead-letter code (no data values).

    Example:
        >>> Unusable("invalid:timestamp").reason
        'invalid:timestamp'
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def problem(message: Any, expected_type: str | None = None) -> str | None:
    """Why a message is invalid (a short code, no data values), or None.

    Example:
        >>> problem({"type": "track", "userId": "u"})
        'missing:event'
    """
    if not isinstance(message, dict):
        return "not_an_object"
    kind = expected_type or message.get("type")
    if kind not in TYPES:
        return "unknown_type"
    if expected_type and message.get("type") not in (None, expected_type):
        return "type_mismatch"
    if not _present(message.get("userId")) and not _present(message.get("anonymousId")):
        return "missing:userId_or_anonymousId"
    need = REQUIRED.get(kind)
    if need and not _present(message.get(need)):
        return f"missing:{need}"
    for name in ("messageId", "userId", "anonymousId"):
        value = message.get(name)
        if value is not None and not isinstance(value, (str, int)):
            return f"invalid:{name}"
    for name in ("properties", "traits", "context"):
        if message.get(name) is not None and not isinstance(message.get(name), dict):
            return f"invalid:{name}"
    return None


def _present(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def parse_time(value: Any, name: str = "timestamp") -> dt.datetime | None:
    """An ISO-8601 string as an aware UTC datetime (naive values are UTC); None if it is not one.

    Raises `Unusable` (``invalid:<name>``) for a valid ISO-8601 time that UTC cannot represent, such as
    ``0001-01-01T00:30:00+01:00`` (before year 1).

    Example:
        >>> parse_time("2026-11-01T13:00:00+01:00").isoformat()
        '2026-11-01T12:00:00+00:00'
    """
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    try:
        return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)
    except OverflowError:
        raise Unusable(f"invalid:{name}") from None


def iso(t: dt.datetime) -> str:
    """UTC ISO-8601 with milliseconds and ``Z`` (four-digit years, also before 1000).

    Example:
        >>> iso(dt.datetime(999, 5, 1, tzinfo=dt.timezone.utc))
        '0999-05-01T00:00:00.000Z'
    """
    return t.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stamp(message: dict[str, Any], received: dt.datetime, *, kind: str | None = None,
          batch_sent_at: Any = None) -> dict[str, Any]:
    """A copy with `type`, `messageId` (when missing), `receivedAt` and the skew-corrected `timestamp`.

    ``timestamp = receivedAt - (sentAt - originalTimestamp)``; the client's value is kept in `originalTimestamp`.
    Without a usable `sentAt` the client's timestamp is kept; without any timestamp, `receivedAt` is used.
    Raises `Unusable` when a time, or the corrected time, lies outside the years 1-9999.
    """
    m = {k: v for k, v in message.items() if k not in STRIPPED}
    if kind:
        m["type"] = kind
    if not _present(m.get("messageId")):
        m["messageId"] = f"cdp-{uuid.uuid4()}"
    else:
        m["messageId"] = str(m["messageId"])
    m["receivedAt"] = iso(received)
    original_text = m.get("timestamp") if m.get("timestamp") is not None else m.get("originalTimestamp")
    original = parse_time(original_text)
    sent = parse_time(m.get("sentAt"), "sentAt") or parse_time(batch_sent_at, "sentAt")
    if original is None:
        m["timestamp"] = iso(received)
    else:
        m["originalTimestamp"] = original_text
        try:
            m["timestamp"] = iso(received - (sent - original)) if sent is not None else iso(original)
        except OverflowError:  # a skew of millennia: the corrected time leaves the calendar
            raise Unusable("invalid:sentAt") from None
    if sent is not None and "sentAt" not in m:
        m["sentAt"] = iso(sent)
    return m


# ---- nesting depth, by scanning bytes (json.loads recurses once per level; a scan never recurses) ----
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]', re.S)
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")


def too_deep(raw: bytes, limit: int) -> bool:
    """Whether JSON text nests deeper than ``limit`` levels (each object or array is a level), from a linear scan
    of the brackets outside strings. Malformed text gives some answer; parsing it then fails anyway.

    Example:
        >>> too_deep(b'{"a": [1, {"b": "[[[["}]}', 3), too_deep(b'{"a": [1, {"b": "[[[["}]}', 2)
        (False, True)
    """
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw))
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    depth = 0
    for b in brackets:
        if b in _OPEN:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def split_batch(raw: bytes) -> tuple[bytes, list[bytes]] | None:
    """A batch body cut into its envelope (the body with an empty ``batch`` array) and the text of each element of
    ``batch``, found by scanning the bytes, not by parsing: this works however deep an element nests. None when the
    body has no single top-level ``"batch": [...]``.

    Example:
        >>> split_batch(b'{"batch": [{"a": 1}, [[2]]], "sentAt": "x"}')
        (b'{"batch": [], "sentAt": "x"}', [b'{"a": 1}', b' [[2]]'])
    """
    depth, last, key = 0, b"", b""
    start = end = item_from = None
    items: list[bytes] = []
    for m in _TOKEN.finditer(raw):
        tok = m.group()
        if tok[0] in _OPEN:
            if depth == 1 and tok == b"[" and last == b":" and key == b'"batch"':
                if start is not None:
                    return None  # two batch keys: ambiguous
                start, item_from = m.start(), m.end()
            depth += 1
        elif tok[0] in _CLOSE:
            depth -= 1
            if depth < 0:
                return None
            if depth == 1 and item_from is not None:
                items.append(raw[item_from:m.start()])
                end, item_from = m.end(), None
        elif tok == b"," and depth == 2 and item_from is not None:
            items.append(raw[item_from:m.start()])
            item_from = m.end()
        elif depth == 1 and tok[0] == 0x22 and last in (b"{", b","):
            key = tok
        if depth == 1:
            last = tok[:1]
    if start is None or end is None:
        return None
    if len(items) == 1 and not items[0].strip():
        items = []
    return raw[:start] + b"[]" + raw[end:], items
