"""Benchmark result files are exactly what one documented command writes: the command line is recorded, and a
run writes only what it measured (no section carried over from an earlier run under a new date)."""
from __future__ import annotations

import json

from bench import scores


def test_a_scores_run_writes_only_the_sections_it_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_BENCH_RESULTS", str(tmp_path))
    stale = {"benchmark": "scores", "measured_at": "2020-01-01T00:00:00Z", "stage": {"stage_seconds": 1.0},
             "spark": {"clv_summary_seconds": 1.0}, "cdnow": {"customers": 1}, "note": "edited by hand"}
    (tmp_path / "scores.json").write_text(json.dumps(stale))
    argv = ["--customers", "300", "--skip-spark", "--skip-stage"]
    scores.main(argv)
    doc = json.loads((tmp_path / "scores.json").read_text())
    assert set(doc) == {"benchmark", "measured_at", "machine", "command", "scale", "targets", "fit",
                        "load_average_1_5_15"}
    assert doc["command"] == "python -m bench.scores --customers 300 --skip-spark --skip-stage"
    assert doc["fit"]["customers"] == 300 and doc["measured_at"] != stale["measured_at"]
