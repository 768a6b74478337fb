"""Replay landed Segment-style NDJSON through a real collector on loopback (`cdp demo --realtime`).

The demo normally loads its web history in batch. With ``--realtime`` the last day's web files are instead sent,
100 messages per ``/v1/batch`` request over real HTTP with the source's write key (as an SDK would), to a collector
started on a free loopback port; the stream job then moves them into bronze. The replayed files are moved out of
the batch landing folder first, so the batch ingest never sees them too: each event arrives exactly one way.

Example:
    >>> report = replay(config, ["/lake/demo/landing/web/day=2026-11-01/events-00000.json"], "web")  # doctest: +SKIP
    >>> report.sent                                                                                # doctest: +SKIP
    4210
"""
from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import httpx

from cdp_spark.collect.app import create_app

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig


class ReplayError(RuntimeError):
    """The replay could not start or a request was refused; the message says which."""


@dataclass
class ReplayReport:
    files: int
    sent: int
    requests: int


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def loopback_collector(config: "CdpConfig") -> Iterator[str]:
    """A collector (uvicorn, one worker) on a free 127.0.0.1 port for the duration of the block; yields its URL.
    Leaving the block stops it, which rotates its open landing file into view for the stream."""
    import uvicorn

    host = "127.0.0.1"
    port = _free_port(host)
    app = create_app(config.collector, config.collector.landing(config.lake.root))
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="cdp-replay-collector", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ReplayError(f"the loopback collector did not start on {host}:{port}")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _write_key(config: "CdpConfig", source: str) -> str:
    src = config.collector.sources.get(source)
    keys = [k for k in (src.keys if src else []) if k.enabled]
    if not src or not src.enabled or not keys:
        raise ReplayError(f"collector.sources.{source}: no enabled source with an enabled write key in collector.yaml")
    return keys[0].key.get_secret_value()


def replay(config: "CdpConfig", files: list[str], source: str, *, batch_size: int = 100,
           moved_to: str | None = None) -> ReplayReport:
    """POST every NDJSON line of ``files`` to a loopback collector as ``source``; then move the files to
    ``moved_to`` (if given) so that batch ingestion skips them. A refused request stops the replay (ReplayError)
    before any file is moved, so a rerun starts over and the stream's messageId dedup drops what already landed."""
    key = _write_key(config, source)
    sent = requests = 0
    with loopback_collector(config) as url, httpx.Client(base_url=url, auth=(key, ""), timeout=30) as client:
        for path in files:
            lines = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
            for i in range(0, len(lines), batch_size):
                batch = lines[i:i + batch_size]
                response = client.post("/v1/batch", json={"batch": batch})
                requests += 1
                if response.status_code != 200:
                    raise ReplayError(f"the collector answered {response.status_code} to a replayed batch of {path}: "
                                      f"{response.json().get('code', '')}")
                sent += len(batch)  # invalid messages are dead-lettered by the collector and counted by the stream
    if moved_to:
        for path in files:
            target = Path(moved_to) / Path(path).parent.name / Path(path).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
    return ReplayReport(files=len(files), sent=sent, requests=requests)


def replay_demo_day(spark, config: "CdpConfig", lake, *, source: str = "web") -> dict:  # type: ignore[no-untyped-def]
    """`cdp demo --realtime`: replay the demo's last day of ``source`` through the collector and stream it into
    bronze (recorded in the ledger as ``collect_stream``); returns the replay and stream metrics."""
    from cdp_spark.collect.stream import run_with_ledger

    day = Path(config.demo_dir) / "landing" / source / f"day={config.demo.end_date.isoformat()}"
    files = sorted(str(p) for p in day.glob("*.json"))
    if not files:
        raise ReplayError(f"no demo {source} files for {config.demo.end_date} under {day}")
    report = replay(config, files, source, moved_to=str(Path(config.demo_dir) / "replayed" / source))
    stream = run_with_ledger(spark, config, lake, available_now=True, sources=[source])
    return {"replay": report.__dict__, "stream": stream["sources"][source]}
