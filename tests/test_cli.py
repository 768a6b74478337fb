"""The `cdp` command: exit codes, JSON output, redaction."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdp_spark.cli import main


@pytest.fixture
def conf(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CDP_TEST_SECRET", "hunter2-secret")
    path = tmp_path / "cdp.yaml"
    path.write_text(
        f"lake:\n  root: {tmp_path / 'lake'}\n  storage_options:\n    token: ${{CDP_TEST_SECRET}}\n"
        "engine:\n  cores: 1\n  shuffle_partitions: 1\n"
    )
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_config_check_prints_resolved_config_without_secrets(capsys, conf):
    code, out, _ = run(capsys, "config", "check", "--conf", str(conf), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["lake"]["storage_options"]["token"] == "***"
    assert "hunter2" not in out
    assert data["engine"]["cores"] == 1


def test_bad_config_exits_2_naming_file_and_key(capsys, tmp_path):
    bad = tmp_path / "cdp.yaml"
    bad.write_text("pipeline:\n  stale_after_minutes: soon\n")
    code, _, err = run(capsys, "config", "check", "--conf", str(bad))
    assert code == 2
    assert "pipeline.stale_after_minutes: got 'soon', expected a valid integer" in err.replace("\n", "")


def test_unknown_stage_exits_2_before_starting_spark(capsys, conf):
    code, _, err = run(capsys, "run", "no-such-stage", "--conf", str(conf))
    assert code == 2 and "unknown stage 'no-such-stage'" in err


def test_bad_as_of_exits_2(capsys, conf):
    code, _, err = run(capsys, "run", "daily", "--as-of", "2026-13-40", "--conf", str(conf))
    assert code == 2 and "expected YYYY-MM-DD" in err


@pytest.mark.slow
def test_run_daily_then_runs_tables_and_history_as_json(spark, capsys, conf):
    code, out, _ = run(capsys, "run", "daily", "--as-of", "2026-11-01", "--conf", str(conf), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["status"] == "succeeded" and report["as_of"] == "2026-11-01"
    code, out, _ = run(capsys, "runs", "--conf", str(conf), "--json")
    rows = json.loads(out)
    assert code == 0 and rows[0]["run_id"] == report["run_id"] and rows[0]["status"] == "succeeded"
    code, out, _ = run(capsys, "tables", "--conf", str(conf), "--json")
    tables = {t["name"]: t for t in json.loads(out)}
    assert tables["ops.job_runs"]["rows"] >= 1
    code, out, _ = run(capsys, "history", "ops.job_runs", "--conf", str(conf), "--json")
    assert code == 0 and {c["cdp.operation"] for c in json.loads(out) if "cdp.operation" in c} == {"merge"}


def test_history_of_unknown_table_exits_1(capsys, conf):
    code, _, err = run(capsys, "history", "gold.nothing", "--conf", str(conf))
    assert code == 1 and "unknown table 'gold.nothing'" in err
