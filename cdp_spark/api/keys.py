"""API keys: one per use case, with scopes, stored hashed in the org's lake (`cdp api keys create/list/revoke`).

A key looks like ``<key_id>.<secret>``; only ``key_id``, a per-key salt and sha-256(salt + secret) are stored.
(sha-256 rather than scrypt: the secret is 256 random bits, so a slow hash adds no protection against guessing,
only latency to every request.) The file is rewritten atomically and re-read when it changes, so a revocation
reaches running API workers within one request.

Example:
    >>> store = KeyStore("/tmp/keys.json", org_id="default")                    # doctest: +SKIP
    >>> secret, key = store.create("crm-sync", ["read", "write"])               # doctest: +SKIP
    >>> store.verify(secret).scopes                                             # doctest: +SKIP
    ('read', 'write')
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

from cdp_spark.lake.files import LakeFiles

SCOPES = ("read", "write", "delete", "pii")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class KeyError_(ValueError):
    """Bad key-management input (unknown scope, duplicate name, unknown key id)."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never the secret)."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    org_id: str
    created_at: str
    revoked_at: str | None = None
    salt: str = ""
    hash: str = ""

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        """What `cdp api keys list` shows: everything but the salt and hash."""
        d = asdict(self)
        d.pop("salt"), d.pop("hash")
        d["scopes"] = list(self.scopes)
        d["active"] = self.active
        return d


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256((salt + secret).encode("utf-8")).hexdigest()


class KeyStore:
    """The org's keys in one JSON file (0600 on local disk), local or in the lake on object storage."""

    # A local stat costs ~1 us, so every request checks it; on object storage the check is an HTTP HEAD, so a
    # worker checks at most once per this many seconds (a revocation reaches it within that time).
    REMOTE_CHECK_SECONDS = 1.0

    def __init__(self, path: str | os.PathLike[str], *, org_id: str,
                 storage_options: Mapping[str, str] | None = None):
        self.path = os.fspath(path)
        folder, _, self._name = self.path.rstrip("/").rpartition("/")
        self._files = LakeFiles(folder or ".", storage_options)
        self.org_id = org_id
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._keys: dict[str, ApiKey] = {}

    # ---- reading (cached, reloaded when the file changes) ----
    def _load(self) -> dict[str, ApiKey]:
        # Every save replaces the file, so its inode changes even within one mtime tick.
        if self._files.remote and self._stamp is not None and time.monotonic() - self._checked < self.REMOTE_CHECK_SECONDS:
            return self._keys
        stamp = self._files.stamp(self._name)
        self._checked = time.monotonic()
        if stamp == self._stamp:
            return self._keys
        with self._lock:
            keys: dict[str, ApiKey] = {}
            if stamp is not None:
                doc = json.loads(self._files.read_text(self._name))
                for k in doc.get("keys", []):
                    keys[k["key_id"]] = ApiKey(**{**k, "scopes": tuple(k["scopes"])})
            self._keys, self._stamp = keys, stamp
            return keys

    def list(self) -> list[ApiKey]:
        return sorted(self._load().values(), key=lambda k: k.created_at)

    def verify(self, presented: str | None) -> ApiKey | None:
        """The active key matching ``presented`` (``key_id.secret``), else None (missing, unknown or revoked)."""
        if not presented or "." not in presented or len(presented) > 256:
            return None
        key_id, _, secret = presented.partition(".")
        key = self._load().get(key_id)
        if key is None or not key.active or key.org_id != self.org_id:
            return None
        return key if hmac.compare_digest(_digest(key.salt, secret), key.hash) else None

    def key_id_of(self, presented: str | None) -> str | None:
        """The key id part of a presented key if such a key exists (for the audit of refused calls)."""
        if not presented or "." not in presented:
            return None
        key_id = presented.partition(".")[0]
        return key_id if key_id in self._load() else None

    # ---- changes (CLI) ----
    def _save(self, keys: Iterable[ApiKey]) -> None:
        doc = {"keys": [{**asdict(k), "scopes": list(k.scopes)} for k in keys]}
        self._files.write_text(self._name, json.dumps(doc, indent=1), private=True)
        self._stamp = None

    def create(self, name: str, scopes: Iterable[str]) -> tuple[str, ApiKey]:
        """A new key for one use case; returns (the secret to hand over once, the stored key)."""
        scopes = tuple(dict.fromkeys(s.strip().lower() for s in scopes if s.strip()))
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise KeyError_(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(bad) or 'none'}")
        if not _NAME.match(name):
            raise KeyError_("a key name is 1-64 letters, digits, '_', '.' or '-' (one key per use case)")
        keys = self._load()
        if any(k.name == name and k.active for k in keys.values()):
            raise KeyError_(f"an active key named {name!r} exists; revoke it first or pick another name")
        key_id = "k" + secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        key = ApiKey(key_id, name, scopes, self.org_id, _now(), None, salt, _digest(salt, secret))
        self._save([*keys.values(), key])
        return f"{key_id}.{secret}", key

    def revoke(self, key_id: str) -> ApiKey:
        keys = dict(self._load())
        if key_id not in keys:
            raise KeyError_(f"no key with id {key_id!r}")
        old = keys[key_id]
        keys[key_id] = ApiKey(**{**asdict(old), "revoked_at": old.revoked_at or _now()})
        self._save(keys.values())
        return keys[key_id]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def store_for(config: Any) -> KeyStore:
    """The key store of the config's org (under its lake root)."""
    return KeyStore(config.api.keys_file(config.lake.root), org_id=config.org.id,
                    storage_options=config.lake.storage_options)
