"""The collector as a real process: `kill -9` right after acks loses nothing; the official Segment client works."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from cdp_spark.collect.spool import recover

pytestmark = pytest.mark.slow  # starts the collector as a process and kills it

KEY = "proc-web-write-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"collector exited with {proc.returncode}")
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("collector did not become ready")


SERVER = textwrap.dedent("""
    import sys, uvicorn
    from cdp_spark.collect.app import create_app
    from cdp_spark.collect.config import CollectorConfig
    cfg = CollectorConfig.model_validate({"sources": {"web": {"keys": [{"key": sys.argv[3]}]}},
                                          "spool": {"rotate_seconds": 3600}, "rate_limit": {"per_second": 100000}})
    uvicorn.run(create_app(cfg, sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
""")


def landed_ids(landing: Path) -> set[str]:
    ids = set()
    for f in landing.glob("*/*"):
        for line in f.read_bytes().splitlines():
            if line.strip():
                ids.add(json.loads(line)["messageId"])
    return ids


def test_kill_9_right_after_acks_loses_no_acknowledged_message(tmp_path):
    landing, port = tmp_path / "landing", free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(landing), str(port), KEY], cwd=Path(__file__).parents[1])
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc)
        acked: list[str] = []
        stop = threading.Event()

        def sender(worker: int) -> None:
            with httpx.Client(base_url=url, auth=(KEY, ""), timeout=5) as c:
                n = 0
                while not stop.is_set():
                    ids = [f"w{worker}-{n}-{i}" for i in range(50)]
                    batch = [{"type": "track", "event": "e", "userId": "u", "messageId": m} for m in ids]
                    try:
                        r = c.post("/v1/batch", json={"batch": batch})
                    except httpx.HTTPError:
                        return  # the server died mid-request: not acknowledged
                    if r.status_code == 200:
                        acked.extend(ids)
                    n += 1

        threads = [threading.Thread(target=sender, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        os.kill(proc.pid, signal.SIGKILL)   # while requests are in flight, right after acks
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acked) > 100
    assert set(acked) <= landed_ids(landing)             # every acked messageId is in the landing zone
    visible = recover(landing)                           # the dead writer's file is made visible for the stream
    assert visible and all(not p.name.startswith(".") for p in visible)
    assert set(acked) <= landed_ids(landing)


def test_official_segment_client_sends_through_the_collector(tmp_path):
    from segment import analytics  # test extra: the official client
    import uvicorn

    from cdp_spark.collect.app import create_app
    from cdp_spark.collect.config import CollectorConfig

    landing, port = tmp_path / "landing", free_port()
    cfg = CollectorConfig.model_validate({"sources": {"web": {"keys": [{"key": KEY}]}}, "spool": {"rotate_seconds": 3600}})
    server = uvicorn.Server(uvicorn.Config(create_app(cfg, str(landing)), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        errors: list[object] = []
        client = analytics.Client(write_key=KEY, host=f"http://127.0.0.1:{port}", sync_mode=True,
                                  on_error=lambda e, batch: errors.append(e))
        import datetime as dt

        past = dt.datetime(2026, 11, 1, 10, 0, 0, tzinfo=dt.timezone.utc)
        client.identify("user-1", {"email": "ann@example.com"}, timestamp=past)
        client.track("user-1", "Order Completed", {"order_id": "o1", "revenue": 10.5}, timestamp=past)
        client.page("user-1", "Shop", "Home", {"url": "https://shop.example/"}, timestamp=past)
        client.alias("anon-1", "user-1", timestamp=past)
        client.flush()
        assert errors == []
    finally:
        server.should_exit = True
        thread.join(10)
    rows = []
    for f in landing.glob("*/*"):
        rows += [json.loads(line) for line in f.read_text().splitlines() if line]
    by_type = {r["type"]: r for r in rows}
    assert set(by_type) == {"identify", "track", "page", "alias"}
    assert by_type["identify"]["traits"]["email"] == "ann@example.com" and by_type["track"]["event"] == "Order Completed"
    assert by_type["alias"]["previousId"] == "anon-1"
    for r in rows:
        # the client stamped sentAt now and timestamp in the past: the skew correction keeps that distance
        assert r["originalTimestamp"].startswith("2026-11-01T10:00:00")
        assert r["timestamp"].startswith("2026-11-01T10:00:0")          # receivedAt - (sentAt - timestamp)
        assert r["userId"] == "user-1" and r["messageId"] and "writeKey" not in r
