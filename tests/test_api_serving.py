"""Serving the Profile API: `cdp api serve --workers N` (uvicorn workers built by the app factory from the
config), every call audited even across workers and shutdown, revocations seen by running workers at once, the
audit appender across commits, and the ASGI audit middleware (request ids, unexpected errors as JSON 500s)."""
from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from deltalake import DeltaTable
from fastapi.testclient import TestClient

from cdp_spark.api.app import app_from_env, create_app, serve
from cdp_spark.api.audit import AuditLog
from cdp_spark.api.keys import KeyStore
from cdp_spark.api.keys import store_for as keys_for
from cdp_spark.api.store import SEP, ServingStore, store_for
from cdp_spark.config import load_config
from cdp_spark.config.models import LakeConfig
from cdp_spark.runtime import metadata_lake

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf" / "cdp.yaml"
ANN = {"profile_id": "p_ann", "identifiers": {"email": ["ann@example.com"]},
       "traits": {"first_name": "Ann", "country": "GB"}}


def _rows(*docs):
    return [(d["profile_id"], json.dumps(d), [f"{t}{SEP}{v}" for t, vs in d["identifiers"].items() for v in vs])
            for d in docs]


def _config(root: Path):
    return load_config(CONF).model_copy(update={"lake": LakeConfig(root=str(root))})


def _audit_rows(config) -> list[dict]:
    lake = metadata_lake(config)
    return DeltaTable(lake.path("ops.api_audit")).to_pyarrow_table().to_pylist()


def test_serve_runs_the_config_workers_through_the_app_factory(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setenv("CDP_CONF", "elsewhere.yaml")  # restored after the test: serve() points the factory at --conf
    config = _config(tmp_path)
    config = config.model_copy(update={"api": config.api.model_copy(update={"workers": 3})})
    serve(config, conf_path=str(CONF))
    serve(config, workers=2, port=9999, conf_path=str(CONF))  # --workers wins over api.workers
    assert [(app, kw["factory"], kw["workers"]) for app, kw in calls] == [
        ("cdp_spark.api.app:app_from_env", True, 3), ("cdp_spark.api.app:app_from_env", True, 2)]
    assert calls[1][1]["port"] == 9999 and os.environ["CDP_CONF"] == str(CONF)


def test_the_app_factory_serves_the_org_of_the_config_in_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CDP_CONF", str(CONF))
    monkeypatch.setenv("CDP_LAKE_ROOT", str(tmp_path))  # conf/cdp.yaml's lake root
    config = load_config(CONF)
    store_for(config).build(_rows(ANN))
    secret = keys_for(config).create("reader", ["read"])[0]
    with TestClient(app_from_env()) as client:  # the lifespan runs: its shutdown flushes the audit buffer
        r = client.get("/v1/profiles/email/ann@example.com", headers={"X-API-Key": secret})
        assert r.status_code == 200 and r.json()["traits"] == {"first_name": "***", "country": "GB"}
    rows = _audit_rows(config)
    assert [(x["action"], x["status"], x["profile_id"]) for x in rows] == [("read", 200, "p_ann")]


def test_a_revoked_key_is_refused_from_the_next_request(tmp_path):
    config = _config(tmp_path)
    store_for(config).build(_rows(ANN))
    secret, key = keys_for(config).create("crm", ["read"])
    audit = AuditLog(None, writer=lambda rows: None, background=False)  # type: ignore[arg-type]
    client = TestClient(create_app(config, audit=audit))
    assert client.get("/v1/profiles/p_ann", headers={"X-API-Key": secret}).status_code == 200
    keys_for(config).revoke(key.key_id)  # what `cdp api keys revoke` does, from another process
    r = client.get("/v1/profiles/p_ann", headers={"X-API-Key": secret})
    assert (r.status_code, r.json()["code"]) == (401, "invalid_key")


def test_a_replaced_key_file_is_reread_even_with_the_same_size_and_mtime(tmp_path):
    path = tmp_path / "keys.json"
    old_secret, key = KeyStore(path, org_id="acme").create("crm", ["read"])
    reader = KeyStore(path, org_id="acme")  # a running worker
    assert reader.verify(old_secret) is not None
    # The key is re-issued under the same id (new salt and hash, same lengths) within one mtime tick: only the
    # file's identity tells the worker that the file changed.
    st = path.stat()
    doc = json.loads(path.read_text())
    doc["keys"][0]["salt"], doc["keys"][0]["hash"] = "0" * 32, "f" * 64
    new = tmp_path / "keys.new"
    new.write_text(json.dumps(doc, indent=1))
    assert new.stat().st_size == st.st_size
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, path)
    assert reader.verify(old_secret) is None


def test_an_unexpected_error_is_a_json_500_audited_with_its_request_id(tmp_path, caplog):
    class BrokenStore(ServingStore):
        def by_profile_id(self, profile_id):
            raise RuntimeError("disk on fire near ann@example.com")

    config = _config(tmp_path)
    secret = keys_for(config).create("reader", ["read"])[0]
    rows: list[dict] = []
    audit = AuditLog(None, writer=rows.extend, background=False)  # type: ignore[arg-type]
    client = TestClient(create_app(config, store=BrokenStore(tmp_path / "serving"), audit=audit),
                        raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR):
        r = client.get("/v1/profiles/p_ann", headers={"X-API-Key": secret})
    assert (r.status_code, r.json()) == (500, {"code": "internal_error", "message": "internal error"})
    refused = client.get("/v1/profiles/p_ann")  # no key
    assert refused.status_code == 401
    audit.flush()
    assert [(x["action"], x["status"], x["request_id"]) for x in rows] == [
        ("read", 500, r.headers["x-request-id"]), ("read", 401, refused.headers["x-request-id"])]
    assert r.headers["x-request-id"] != refused.headers["x-request-id"]
    assert "RuntimeError" in caplog.text and "ann@example.com" not in caplog.text


def test_the_audit_writer_keeps_its_table_open_and_reopens_it_after_a_failure(tmp_path):
    config = _config(tmp_path)
    lake = metadata_lake(config)
    audit = AuditLog(lake, background=False)
    other = AuditLog(lake, background=False)  # another API worker appending to the same table

    def row(i: int) -> dict:
        import datetime as dt

        now = dt.datetime.now(dt.timezone.utc)
        return {"at": now, "at_date": now.date(), "action": "read", "status": 200, "request_id": f"r{i}"}

    for i in range(6):
        (audit if i % 2 else other).record(row(i))
        assert (audit if i % 2 else other).flush() == 1
    assert sorted(x["request_id"] for x in _audit_rows(config)) == [f"r{i}" for i in range(6)]
    shutil.rmtree(lake.path("ops.api_audit"))  # e.g. an operator dropped the table under a running server
    audit.record(row(6))
    assert audit.flush() == 0 and audit.pending() == 1  # the kept handle fails; the row waits for the next tick
    assert audit.flush() == 1
    assert [x["request_id"] for x in _audit_rows(config)] == ["r6"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workers_of(pid: int) -> int:
    """uvicorn worker processes under its supervisor (Linux /proc)."""
    n = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                n += "spawn_main" in (entry / "cmdline").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
    return n


@pytest.mark.slow
def test_two_workers_serve_see_revocations_and_audit_every_call_through_shutdown(tmp_path):
    config = _config(tmp_path)
    store_for(config).build(_rows(ANN))
    keys = keys_for(config)
    secret, key = keys.create("reader", ["read"])
    port = _free_port()
    env = {**os.environ, "CDP_LAKE_ROOT": str(tmp_path)}
    server = subprocess.Popen([sys.executable, "-m", "cdp_spark.cli", "api", "serve", "--workers", "2",
                               "--port", str(port), "--conf", str(CONF)], cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # generous: a loaded 2-core CI machine starts 3 Python processes
        while _workers_of(server.pid) < 2 or not _up(url):
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        sent = collections.Counter()
        for i in range(40):  # a new connection each: the kernel hands them to either worker
            path = "/v1/profiles/p_ann" if i % 4 else "/v1/profiles/p_nobody"
            r = httpx.get(url + path, headers={"X-API-Key": secret})
            sent[r.status_code] += 1
        assert sent == {200: 30, 404: 10}
        keys.revoke(key.key_id)
        refused = [httpx.get(url + "/v1/profiles/p_ann", headers={"X-API-Key": secret}).status_code for _ in range(10)]
        assert refused == [401] * 10
        sent[401] += 10
    finally:
        server.send_signal(signal.SIGTERM)  # uvicorn stops its workers; each flushes its audit buffer
        assert server.wait(120) == 0
    audited = collections.Counter(x["status"] for x in _audit_rows(config) if x["route"] != "/health")
    assert audited == sent


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
