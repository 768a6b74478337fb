"""Structured logs: run id and stage on every line (JSON or text), isolated per thread, and no PII."""
from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from cdp_spark.ops.logs import StageLogger, bind, configure_logging, current, scrub


@pytest.fixture
def capture():
    stream = io.StringIO()
    handlers = []

    def install(json_format: bool) -> io.StringIO:
        handlers.append(configure_logging(json_format=json_format, level="INFO", stream=stream))
        return stream

    yield install
    for handler in handlers:
        logging.getLogger().removeHandler(handler)


@pytest.mark.parametrize("text, hidden", [
    ("delivered to ann.lee+promo@mail.example.co.uk", "ann.lee+promo@mail.example.co.uk"),
    ("phone +44 20 7946 0958 rejected", "7946 0958"),
    ("customer 0612345678901", "0612345678901"),
    ("token 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "9f86d081884c7d659a2feaa0c55ad015"),
])
def test_scrub_masks_personal_values(text, hidden):
    assert hidden not in scrub(text)


def test_scrub_keeps_dates_counts_and_run_ids():
    text = "run daily-20261101T020000Z-1a2b3c4d as of 2026-11-01 02:00:00 wrote 12,345 rows (1234567)"
    assert scrub(text) == text


def test_json_lines_carry_run_id_and_stage_and_no_pii(capture):
    stream = capture(json_format=True)
    log = logging.getLogger("cdp_spark.test")
    with bind(run_id="daily-1"):
        log.info("job started")
        with bind(stage="identity"):
            log.warning("merged %s into one profile for %s", 3, "bob@example.org")
            try:
                raise ValueError("bad row for bob@example.org")
            except ValueError:
                log.exception("stage failed")
        log.info("job done")
    log.info("outside")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(l["run_id"], l["stage"]) for l in lines] == [("daily-1", "-"), ("daily-1", "identity"),
                                                          ("daily-1", "identity"), ("daily-1", "-"), ("-", "-")]
    assert lines[1]["message"] == "merged 3 into one profile for <email>" and lines[1]["level"] == "WARNING"
    assert lines[2]["error"] == "ValueError: bad row for <email>"
    assert "bob@example.org" not in stream.getvalue()
    assert all({"time", "level", "logger", "message"} <= set(l) for l in lines)


def test_text_lines_and_adapter_carry_the_context(capture):
    stream = capture(json_format=False)
    with bind(run_id="daily-2", stage="scores"):
        StageLogger(logging.getLogger("cdp_spark.test"), {}).info("fitted %d models", 2)
        assert current() == {"run_id": "daily-2", "stage": "scores"}
    assert "[run=daily-2 stage=scores] fitted 2 models" in stream.getvalue()


def test_context_is_per_thread(capture):
    stream = capture(json_format=True)
    log = logging.getLogger("cdp_spark.test")
    barrier = threading.Barrier(2)

    def work(stage: str) -> None:
        with bind(run_id="daily-3", stage=stage):
            barrier.wait()
            log.info("in %s", stage)

    threads = [threading.Thread(target=work, args=(s,)) for s in ("ingest", "identity")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {(l["stage"], l["message"]) for l in lines} == {("ingest", "in ingest"), ("identity", "in identity")}
