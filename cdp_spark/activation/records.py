"""From audience members to destination records: identifier choice, consent gating, platform formats, and the
adds/removes to send given what the destination already holds.

Pure Python over plain dicts, so every rule is tested without Spark.

Example:
    >>> m = Member("buyers", "p1", "all", {"email": ["Jane.Doe@gmail.com"]}, {"country": "US"}, {})
    >>> prepare(m, Destination.model_validate({"name": "g", "format": "google_customer_match",
    ...     "audiences": ["buyers"], "transport": {"type": "file"}})).payload["hashed_email"][:12]
    'd6117306485e'
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from cdp_spark.activation import normalise as N
from cdp_spark.activation.config import Destination

ACTIONS = ("add", "remove")
COLUMNS = {
    "google_customer_match": ["hashed_email", "hashed_phone_number", "mobile_id", "hashed_first_name",
                              "hashed_last_name", "country_code", "postal_code", "ad_user_data", "ad_personalization"],
    "meta_custom_audience": ["EMAIL", "PHONE", "FN", "LN", "COUNTRY", "ZIP", "MADID"],
}
_MATCH_KEYS = ("email", "phone", "maid", "customer_id", "crm_id")


@dataclass(frozen=True)
class Member:
    """One audience member with what the profile view knows about them."""

    audience: str
    profile_id: str
    variant: Optional[str]
    identifiers: dict[str, list[str]]
    traits: dict[str, Any]
    consent: dict[str, str]
    entered_at: Optional[Any] = None   # when the profile entered the audience (exports show it)


@dataclass(frozen=True)
class Prepared:
    """A member ready for a destination, or the reason it is skipped (``consent`` or ``no_identifier``)."""

    audience: str
    profile_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    skipped: Optional[str] = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.audience, self.profile_id)

    @property
    def record_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Item:
    """One record to send: add or remove, with its payload."""

    action: str
    audience: str
    profile_id: str
    payload: dict[str, Any]
    record_hash: str

    def body(self) -> dict[str, Any]:
        return {"action": self.action, "audience": self.audience, **self.payload}

    def body_json(self) -> str:
        """`body` as JSON text: what a webhook batch carries for this record."""
        return json.dumps(self.body(), default=str)


def _first(ids: dict[str, list[str]], *types: str) -> Optional[str]:
    for t in types:
        values = sorted(v for v in (ids.get(t) or []) if v)
        if values:
            return values[0]
    return None


def raw_identifiers(m: Member) -> dict[str, Optional[str]]:
    """The raw value of every identifier a destination may ask for (first value of each type, sorted)."""
    t = m.traits or {}
    return {"email": _first(m.identifiers, "email"), "phone": _first(m.identifiers, "phone"),
            "maid": _first(m.identifiers, "idfa", "gaid"), "customer_id": _first(m.identifiers, "customer_id"),
            "crm_id": _first(m.identifiers, "crm_id"), "first_name": t.get("first_name"), "last_name": t.get("last_name"),
            "country": t.get("country"), "zip": t.get("zip") or t.get("postal_code")}


def _normalised(kind: str, raw: dict[str, Optional[str]], fmt: str) -> Optional[str]:
    v, country = raw.get(kind), raw.get("country")
    if kind == "email":
        return N.google_email(v) if fmt == "google_customer_match" else N.basic_email(v)
    if kind == "phone":
        return N.meta_phone(v, country) if fmt == "meta_custom_audience" else N.e164(v, country)
    if kind == "maid":
        return N.maid(v)
    if kind in ("first_name", "last_name"):
        return N.meta_name(v) if fmt == "meta_custom_audience" else N.name(v)
    if kind == "country":
        return N.meta_country(v) if fmt == "meta_custom_audience" else N.country_code(v)
    if kind == "zip":
        return N.meta_zip(v, country) if fmt == "meta_custom_audience" else N.postal_code(v, country)
    return None if v is None or not str(v).strip() else str(v).strip()


def _chosen(d: Destination, raw: dict[str, Optional[str]]) -> dict[str, str]:
    values = {k: _normalised(k, raw, d.format) for k in d.identifiers}
    values = {k: v for k, v in values.items() if v is not None}
    if d.match == "first":
        first = next((k for k in d.identifiers if k in values and k in _MATCH_KEYS), None)
        values = {k: v for k, v in values.items() if k == first or k not in _MATCH_KEYS}
    return values


def _usable(values: dict[str, str]) -> bool:
    if any(k in values for k in _MATCH_KEYS):
        return True
    return "first_name" in values and "last_name" in values and ("zip" in values or "country" in values)


def _dma(d: Destination, m: Member, country: Optional[str]) -> tuple[Optional[dict[str, str]], bool]:
    """Google's DMA fields from consent; (fields, allowed). EEA users need ad_user_data granted to be sent."""
    status = {"granted": "GRANTED", "denied": "DENIED"}
    user_data = (m.consent or {}).get(d.dma.ad_user_data, "unknown")
    personalization = (m.consent or {}).get(d.dma.ad_personalization, "unknown")
    fields = {"ad_user_data": status.get(user_data, "UNSPECIFIED"),
              "ad_personalization": status.get(personalization, "UNSPECIFIED")}
    eea = (country or "").upper() in {c.upper() for c in d.eea_countries}
    return fields, not (eea and user_data != "granted")


def consented(m: Member, purposes: Iterable[str]) -> bool:
    """Whether every purpose is ``granted`` for the member (absent or ``unknown`` is not consent).

    Example:
        >>> consented(Member("a", "p1", None, {}, {}, {"ads": "granted", "email": "denied"}), ["ads"])
        True
    """
    consent = m.consent or {}
    return all(consent.get(p) == "granted" for p in purposes)


def prepare(m: Member, d: Destination) -> Prepared:
    """The record for one member in the destination's format, or why it is skipped."""
    if not consented(m, d.consent):
        return Prepared(m.audience, m.profile_id, skipped="consent")
    raw = raw_identifiers(m)
    values = _chosen(d, raw)
    if not _usable(values):
        return Prepared(m.audience, m.profile_id, skipped="no_identifier")
    fmt = d.format
    if fmt == "google_customer_match":
        dma, allowed = _dma(d, m, N.country_code(raw.get("country")))
        if not allowed:
            return Prepared(m.audience, m.profile_id, skipped="consent")
        payload = {"hashed_email": N.sha256_hex(values.get("email")),
                   "hashed_phone_number": N.sha256_hex(values.get("phone")), "mobile_id": values.get("maid"),
                   "hashed_first_name": N.sha256_hex(values.get("first_name")),
                   "hashed_last_name": N.sha256_hex(values.get("last_name")),
                   "country_code": values.get("country"), "postal_code": values.get("zip"), **(dma or {})}
    elif fmt == "meta_custom_audience":
        payload = {"EMAIL": N.sha256_hex(values.get("email")), "PHONE": N.sha256_hex(values.get("phone")),
                   "FN": N.sha256_hex(values.get("first_name")), "LN": N.sha256_hex(values.get("last_name")),
                   "COUNTRY": N.sha256_hex(values.get("country")), "ZIP": N.sha256_hex(values.get("zip")),
                   "MADID": values.get("maid")}
    elif fmt == "liveramp":
        payload = {}
        for k in d.identifiers:
            v = values.get(k)
            if k in ("country", "zip", "customer_id", "crm_id"):
                payload[k.upper()] = v
                continue
            for alg in d.hash_algorithms:
                payload[f"{k.upper()}_{alg.upper()}"] = N.digest(v, alg)
    else:
        hashed = d.hash == "sha256"
        payload = {"profile_id": m.profile_id, "variant": m.variant}
        for k in d.identifiers:
            v = values.get(k)
            payload[f"{k}_sha256" if hashed and k not in ("country", "zip") else k] = (
                N.sha256_hex(v) if hashed and k not in ("country", "zip") else v)
    return Prepared(m.audience, m.profile_id, payload)


def erasure_payload(d: Destination, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload of an erasure's remove: for CSV/NDJSON records, whose rows carry the profile id, only the
    profile id and variant (the identifiers the destination got are not repeated); platform formats match on
    their hashed identifiers, so those stay.

    Example:
        >>> d = Destination.model_validate({"name": "crm", "audiences": ["a"], "transport": {"type": "file"}})
        >>> erasure_payload(d, {"profile_id": "p1", "variant": "all", "email": "ann@x.com"})
        {'profile_id': 'p1', 'variant': 'all', 'email': None}
    """
    if d.format in ("csv", "ndjson"):
        return {k: (v if k in ("profile_id", "variant") else None) for k, v in payload.items()}
    return dict(payload)


def columns(d: Destination) -> list[str]:
    """The fixed column order of a destination's records (after ``action`` and ``audience``)."""
    if d.format in COLUMNS:
        return COLUMNS[d.format]
    if d.format == "liveramp":
        cols: list[str] = []
        for k in d.identifiers:
            cols += [k.upper()] if k in ("country", "zip", "customer_id", "crm_id") else [
                f"{k.upper()}_{a.upper()}" for a in d.hash_algorithms]
        return cols
    hashed = d.hash == "sha256"
    return ["profile_id", "variant"] + [f"{k}_sha256" if hashed and k not in ("country", "zip") else k
                                        for k in d.identifiers]


@dataclass
class StateRow:
    """What the destination holds for one (audience, profile): the payload last sent and by which delivery."""

    record_hash: str
    payload: dict[str, Any]
    delivery_id: str


def plan_items(d: Destination, prepared: Iterable[Prepared], state: dict[tuple[str, str], StateRow],
               snapshot_id: Optional[str] = None) -> list[Item]:
    """What to send: in ``changes`` mode new or changed records (add) and records no longer wanted (remove);
    in ``snapshot`` mode every wanted record not yet sent by this snapshot (so a failed snapshot resumes).

    Sorted (removes first, then by audience and profile) so batches and their idempotency keys are stable.
    """
    wanted = {p.key: p for p in prepared if p.skipped is None}
    items: list[Item] = []
    if d.mode == "snapshot":
        for k, p in wanted.items():
            held = state.get(k)
            if held is None or held.delivery_id != snapshot_id or held.record_hash != p.record_hash:
                items.append(Item("add", p.audience, p.profile_id, p.payload, p.record_hash))
    else:
        for k, p in wanted.items():
            held = state.get(k)
            if held is None or held.record_hash != p.record_hash:
                items.append(Item("add", p.audience, p.profile_id, p.payload, p.record_hash))
        for k, held in state.items():
            if k not in wanted:
                items.append(Item("remove", k[0], k[1], held.payload, held.record_hash))
    return sorted(items, key=lambda i: (i.action != "remove", i.audience, i.profile_id))


def apply_sent(state: dict[tuple[str, str], StateRow], sent: Iterable[Item], delivery_id: str) -> None:
    """Update the held state with the items the destination acknowledged."""
    for i in sent:
        if i.action == "remove":
            state.pop((i.audience, i.profile_id), None)
        else:
            state[(i.audience, i.profile_id)] = StateRow(i.record_hash, i.payload, delivery_id)


def batches(items: list[Item], size: int) -> list[list[Item]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def idempotency_key(destination: str, batch: list[Item]) -> str:
    """Stable for the same batch content, so a re-sent batch (after a crash or a retry) is recognisable."""
    h = hashlib.sha256(destination.encode())
    for i in batch:
        h.update(f"|{i.action}|{i.audience}|{i.profile_id}|{i.record_hash}".encode())
    return h.hexdigest()[:32]


def delivery_id(destination: str, items: list[Item]) -> str:
    return f"{destination}-{idempotency_key(destination, items)[:16]}"
