"""How a person's identifiers are found in data: normalised values, search patterns and SQL predicates.

One identifier gives several needles: its clear value (case-insensitive, bounded so that ``C0000012`` does not
hit ``C00000123``), its SHA-256 hex (hashed exports), and for phones every usual written form of the number
(E.164, spaced, national with a leading 0). Patterns avoid backslashes and look-arounds so that the same text is
a valid regex for Python, RE2 (pyarrow), Rust (delta-rs/DataFusion) and Java (Spark), inside SQL literals too.

Example:
    >>> ident = Identifier("email", "Ann@Example.com ")
    >>> ident.value
    'ann@example.com'
    >>> import re
    >>> bool(re.search(ident.pattern(), "x,ANN@example.COM,y", re.I)), bool(re.search(ident.pattern(), "joann@example.com", re.I))
    (True, False)
    >>> bool(re.search(Identifier("phone", "+447700900123").pattern(), "tel: 07700 900123", re.I))
    True
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

_WORD = "A-Za-z0-9"
_SEP = "[ .()-]*"  # separators people type inside phone numbers


def normalise(id_type: str, value: str) -> str:
    """The normalised form identity uses: trimmed; emails and advertising ids lower-cased; phones E.164.

    Example:
        >>> normalise("phone", "+44 7700 900123"), normalise("email", " A@B.com")
        ('+447700900123', 'a@b.com')
    """
    value = value.strip()
    if id_type in ("email", "idfa", "gaid"):
        return value.lower()
    if id_type == "phone":
        import phonenumbers

        try:
            parsed = phonenumbers.parse(value, None)
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            return value
    return value


def _literal(text: str) -> str:
    """Regex-escape without backslashes: special characters become one-character classes."""
    out = []
    for ch in text:
        if ch.isalnum() or ch in "@_ ,:;'\"!#%&=<>~`/":
            out.append(ch)
        elif ch in "\\^]":
            out.append(".")  # cannot be written portably without a backslash: any character (slight over-match)
        else:
            out.append(f"[{ch}]")
    return "".join(out)


@dataclass(frozen=True)
class Identifier:
    """One identifier of a person, normalised on creation."""

    id_type: str
    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", normalise(self.id_type, self.value))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.value.encode("utf-8")).hexdigest()

    def _phone_digits(self) -> tuple[str, str] | None:
        if self.id_type != "phone":
            return None
        import phonenumbers

        try:
            parsed = phonenumbers.parse(self.value, None)
        except phonenumbers.NumberParseException:
            return None
        return str(parsed.country_code), str(parsed.national_number)

    def pattern(self) -> str:
        """A case-insensitive regex (use the engine's ignore-case flag) matching any written form of the value."""
        phone = self._phone_digits()
        if phone is not None:
            cc, national = phone
            digits = _SEP.join(national)
            return f"(^|[^0-9])([+]?{cc}{_SEP}|0)?{digits}([^0-9]|$)"
        return f"(^|[^{_WORD}]){_literal(self.value)}([^{_WORD}]|$)"

    def hash_pattern(self) -> str:
        return f"(^|[^{_WORD}]){self.sha256}([^{_WORD}]|$)"

    def patterns(self) -> list[str]:
        return [self.pattern(), self.hash_pattern()]


def combined_pattern(identifiers: list[Identifier], *, hashes: bool = True) -> str:
    """One alternation of every identifier's patterns (for a single pass over a text)."""
    parts = [p for i in identifiers for p in (i.patterns() if hashes else [i.pattern()])]
    return "|".join(f"({p})" for p in parts)


def sql_string(value: str) -> str:
    """A SQL string literal (single quotes doubled); values never contain backslash escapes we rely on."""
    return "'" + value.replace("'", "''") + "'"
