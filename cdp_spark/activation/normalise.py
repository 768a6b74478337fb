"""Normalisation and hashing of identifiers by each platform's published rules, as pure functions.

- Google (Customer Match / Data Manager API): trim, lower-case; for gmail.com and googlemail.com remove dots and
  a ``+suffix`` before the @; phones in E.164; names lower-cased and trimmed; SHA-256 hex; country and postal code
  are not hashed.
- Meta Custom Audiences: EMAIL trimmed lower-case; PHONE digits only with the country code (no ``+``, no leading
  zeros); FN/LN lower-case letters only; COUNTRY ISO-3166 alpha-2 lower-case; ZIP lower-case without spaces (US: 5
  digits); all SHA-256 hex, except MADID which is sent lower-case and unhashed.

Example:
    >>> google_email("Cloudy.SanFrancisco+shopping@gmail.com")
    'cloudysanfrancisco@gmail.com'
    >>> e164("(800)555-0100", "US")
    '+18005550100'
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Optional

GMAIL_DOMAINS = ("gmail.com", "googlemail.com")


def sha256_hex(value: Optional[str]) -> Optional[str]:
    """Lower-case hex SHA-256 of the UTF-8 text (None stays None)."""
    return None if value is None else hashlib.sha256(value.encode("utf-8")).hexdigest()


def digest(value: Optional[str], algorithm: str) -> Optional[str]:
    return None if value is None else hashlib.new(algorithm, value.encode("utf-8")).hexdigest()


def _blank(value: Optional[str]) -> bool:
    return value is None or not str(value).strip()


def basic_email(value: Optional[str]) -> Optional[str]:
    """Trim, remove inner whitespace and lower-case; None unless it looks like an address."""
    if _blank(value):
        return None
    email = re.sub(r"\s+", "", str(value)).lower()
    return email if email.count("@") == 1 and not email.startswith("@") and not email.endswith("@") else None


def google_email(value: Optional[str]) -> Optional[str]:
    """Google's rule: basic normalisation, then for gmail.com/googlemail.com drop dots and ``+suffix`` locally."""
    email = basic_email(value)
    if email is None:
        return None
    local, domain = email.split("@")
    if domain in GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
    return f"{local}@{domain}" if local else None


def e164(value: Optional[str], country: Optional[str] = None) -> Optional[str]:
    """A phone number in E.164 (``+`` and digits), using ``country`` for national numbers; None if invalid."""
    if _blank(value):
        return None
    import phonenumbers

    text = str(value).strip()
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else (country or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def name(value: Optional[str]) -> Optional[str]:
    """Google: names trimmed and lower-cased."""
    return None if _blank(value) else str(value).strip().lower()


def country_code(value: Optional[str]) -> Optional[str]:
    """ISO-3166 alpha-2, upper-case (Google's region_code); None unless two letters."""
    if _blank(value):
        return None
    c = str(value).strip().upper()
    return c if re.fullmatch(r"[A-Z]{2}", c) else None


def postal_code(value: Optional[str], country: Optional[str] = None) -> Optional[str]:
    """Trimmed; US codes kept as 5 digits (or 5+4); others without inner spaces changed."""
    if _blank(value):
        return None
    z = str(value).strip()
    if (country or "").upper() == "US":
        digits = re.sub(r"\D", "", z)
        return digits[:5] if len(digits) >= 5 else None
    return z


def maid(value: Optional[str]) -> Optional[str]:
    """Mobile advertising id (IDFA/GAID) lower-cased; the all-zero opted-out id is not an id."""
    if _blank(value):
        return None
    m = str(value).strip().lower()
    return None if re.fullmatch(r"[0-]+", m) else m


# ---- Meta ----
def meta_phone(value: Optional[str], country: Optional[str] = None) -> Optional[str]:
    """Meta: digits only with the country code, no '+' and no leading zeros."""
    p = e164(value, country)
    return p[1:] if p else None


def meta_name(value: Optional[str]) -> Optional[str]:
    """Meta: lower-case, letters only (accents kept as UTF-8 letters, punctuation and spaces removed)."""
    if _blank(value):
        return None
    text = unicodedata.normalize("NFC", str(value)).lower()
    letters = "".join(ch for ch in text if ch.isalpha())
    return letters or None


def meta_country(value: Optional[str]) -> Optional[str]:
    c = country_code(value)
    return c.lower() if c else None


def meta_zip(value: Optional[str], country: Optional[str] = None) -> Optional[str]:
    if _blank(value):
        return None
    if (country or "").upper() == "US":
        return postal_code(value, "US")
    return re.sub(r"\s+", "", str(value)).lower()
