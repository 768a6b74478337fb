"""Replaying landed NDJSON through a loopback collector over real HTTP (what `cdp demo --realtime` does)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cdp_spark.collect.replay import ReplayError, replay
from cdp_spark.config import CdpConfig


def _config(tmp_path: Path, enabled: bool = True) -> CdpConfig:
    return CdpConfig.model_validate({
        "lake": {"root": str(tmp_path / "lake")},
        "collector": {"sources": {"web": {"enabled": enabled, "keys": [{"key": "replay-web-key"}]}},
                      "spool": {"rotate_seconds": 3600}},
    })


def _landed(root: Path) -> list[dict]:
    lines = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            data = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
            lines += [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    return lines


def test_every_line_is_acknowledged_landed_and_the_file_moved_out_of_the_batch_folder(tmp_path):
    config = _config(tmp_path)
    day = tmp_path / "landing" / "web" / "day=2026-11-01"
    day.mkdir(parents=True)
    messages = [{"type": "track", "messageId": f"m{i}", "event": "Product Viewed", "anonymousId": f"a{i % 7}",
                 "timestamp": "2026-11-01T10:00:00Z"} for i in range(250)]
    messages.append({"type": "track", "messageId": "bad"})          # no userId/anonymousId: dead-lettered, not lost
    source = day / "events-00000.json"
    source.write_text("\n".join(json.dumps(m) for m in messages) + "\n\n")

    report = replay(config, [str(source)], "web", batch_size=100, moved_to=str(tmp_path / "replayed"))

    assert (report.files, report.sent, report.requests) == (1, 251, 3)
    assert not source.exists() and (tmp_path / "replayed" / "day=2026-11-01" / "events-00000.json").exists()
    landed = _landed(Path(config.collector.landing(config.lake.root)))
    assert sorted(m["messageId"] for m in landed) == sorted(m["messageId"] for m in messages)
    assert all("receivedAt" in m for m in landed)


def test_a_disabled_source_stops_before_anything_is_sent_or_moved(tmp_path):
    config = _config(tmp_path, enabled=False)
    f = tmp_path / "e.json"
    f.write_text(json.dumps({"type": "track", "messageId": "m", "event": "x", "userId": "u"}) + "\n")
    with pytest.raises(ReplayError, match="collector.sources.web"):
        replay(config, [str(f)], "web", moved_to=str(tmp_path / "replayed"))
    assert f.exists()
