"""Pure message logic of the collector: validation, stamping and clock-skew correction (no I/O, no web stack).

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
import uuid
from typing import Any

TYPES = ("track", "identify", "page", "screen", "group", "alias")
REQUIRED = {"track": "event", "alias": "previousId", "group": "groupId"}
# Fields never stored: the write key is a secret.
STRIPPED = ("writeKey",)


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


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO-8601 string as an aware UTC datetime (naive values are UTC); None if it is not one."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def stamp(message: dict[str, Any], received: dt.datetime, *, kind: str | None = None,
          batch_sent_at: Any = None) -> dict[str, Any]:
    """A copy with `type`, `messageId` (when missing), `receivedAt` and the skew-corrected `timestamp`.

    ``timestamp = receivedAt - (sentAt - originalTimestamp)``; the client's value is kept in `originalTimestamp`.
    Without a usable `sentAt` the client's timestamp is kept; without any timestamp, `receivedAt` is used.
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
    sent = parse_time(m.get("sentAt")) or parse_time(batch_sent_at)
    if original is None:
        m["timestamp"] = iso(received)
    else:
        m["originalTimestamp"] = original_text
        m["timestamp"] = iso(received - (sent - original)) if sent is not None else iso(original)
    if sent is not None and "sentAt" not in m:
        m["sentAt"] = iso(sent)
    return m
