"""Which profile fields are PII, and masking them for keys without the `pii` scope.

PII classes come from the catalogue: identifiers and traits marked ``pii``/``sensitive`` are masked, and so is a
calculated attribute that reads such a field (``field``), a free-form event property (``properties.*``, PII in
``bronze.events``) or, for formulas, names a PII trait.

Example:
    >>> policy = MaskPolicy(identifier_types={"email"}, traits={"first_name"}, attributes=set(), mask="***")
    >>> policy.apply({"identifiers": {"email": ["a@x.com"]}, "traits": {"first_name": "Ann", "country": "GB"}})
    {'identifiers': {'email': ['***']}, 'traits': {'first_name': '***', 'country': 'GB'}}
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig


@dataclass(frozen=True)
class MaskPolicy:
    identifier_types: set[str] | frozenset[str]
    traits: set[str] | frozenset[str]
    attributes: set[str] | frozenset[str]
    mask: str = "***"
    mask_unknown_identifiers: bool = True

    def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``doc`` with PII values replaced (nulls stay null, so presence is not revealed twice)."""
        out = dict(doc)
        ids = doc.get("identifiers")
        if isinstance(ids, dict):
            out["identifiers"] = {t: ([self.mask for _ in v] if isinstance(v, list) else self.mask)
                                  if (t in self.identifier_types or self.mask_unknown_identifiers) and v is not None
                                  else v for t, v in ids.items()}
        for section, names in (("traits", self.traits), ("attributes", self.attributes)):
            values = doc.get(section)
            if isinstance(values, dict):
                out[section] = {k: (self.mask if k in names and v is not None else v) for k, v in values.items()}
        return out


def policy_for(config: "CdpConfig") -> MaskPolicy:
    fields = config.catalogue.fields
    pii = {n for n, f in fields.items() if f.pii != "none"}
    id_types = {n for n in config.catalogue.group("identifier") if n in pii}
    traits = {n for n in config.catalogue.group("trait") if n in pii}
    attributes = set()
    attrs = getattr(getattr(config, "attributes", None), "attributes", None) or {}
    pii_traits = re.compile(r"\b(" + "|".join(map(re.escape, sorted(traits))) + r")\b") if traits else None
    for name, a in attrs.items():
        field = getattr(a, "field", None) or ""
        expr = getattr(a, "expr", None) or ""
        if field in pii or field.startswith("properties.") or (pii_traits and pii_traits.search(expr)):
            attributes.add(name)
    return MaskPolicy(frozenset(id_types), frozenset(traits), frozenset(attributes), config.api.mask)  # type: ignore[attr-defined]
