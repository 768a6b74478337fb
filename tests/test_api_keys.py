"""API keys: one per use case, scoped, stored hashed, revocable; the file never holds a secret."""
from __future__ import annotations

import hashlib
import json

import pytest

from cdp_spark.api.keys import KeyError_, KeyStore


def test_created_key_verifies_with_its_scopes_and_only_a_salted_hash_is_stored(tmp_path):
    store = KeyStore(tmp_path / "keys.json", org_id="acme")
    secret, key = store.create("crm-sync", ["read", "write", "read"])
    assert key.scopes == ("read", "write")
    assert store.verify(secret).key_id == key.key_id
    raw = (tmp_path / "keys.json").read_text()
    key_id, _, token = secret.partition(".")
    assert token not in raw and secret not in raw
    stored = json.loads(raw)["keys"][0]
    # an independent check of the stored hash: sha-256 of salt + secret
    assert stored["hash"] == hashlib.sha256((stored["salt"] + token).encode()).hexdigest()
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("presented", [None, "", "nodot", "kdeadbeef0000.wrong", "x" * 300])
def test_missing_malformed_or_wrong_keys_do_not_verify(tmp_path, presented):
    store = KeyStore(tmp_path / "keys.json", org_id="acme")
    secret, _ = store.create("reader", ["read"])
    assert store.verify(presented) is None
    assert store.verify(secret[:-1] + ("a" if secret[-1] != "a" else "b")) is None


def test_revocation_reaches_another_process_view_of_the_file(tmp_path):
    writer = KeyStore(tmp_path / "keys.json", org_id="acme")
    reader = KeyStore(tmp_path / "keys.json", org_id="acme")  # e.g. a running API worker
    secret, key = writer.create("audiences", ["read", "pii"])
    assert reader.verify(secret) is not None
    writer.revoke(key.key_id)
    assert reader.verify(secret) is None
    listed = reader.list()[0].public()
    assert listed["active"] is False and "hash" not in listed and "salt" not in listed


def test_a_key_of_another_org_is_refused(tmp_path):
    a = KeyStore(tmp_path / "keys.json", org_id="acme")
    secret, _ = a.create("reader", ["read"])
    assert KeyStore(tmp_path / "keys.json", org_id="globex").verify(secret) is None


@pytest.mark.parametrize("name,scopes", [("ok", ["admin"]), ("ok", []), ("bad name!", ["read"])])
def test_bad_scopes_or_names_are_refused(tmp_path, name, scopes):
    with pytest.raises(KeyError_):
        KeyStore(tmp_path / "keys.json", org_id="acme").create(name, scopes)


def test_one_active_key_per_use_case(tmp_path):
    store = KeyStore(tmp_path / "keys.json", org_id="acme")
    _, first = store.create("crm", ["read"])
    with pytest.raises(KeyError_, match="exists"):
        store.create("crm", ["write"])
    store.revoke(first.key_id)
    store.create("crm", ["write"])
    assert [k.active for k in store.list()] == [False, True]
    with pytest.raises(KeyError_):
        store.revoke("knope")
