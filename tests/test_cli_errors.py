"""Errors people can act on: every `cdp` error ends with one line saying what to do next (``next: ...``), with the
exit code schedulers rely on (2 configuration or usage, 1 a failure). None of these cases starts Spark."""
from __future__ import annotations

from pathlib import Path

import pytest

from cdp_spark.cli import main
from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.lake.registry import default_registry
from cdp_spark.ops.lock import Lease

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "cdp.yaml"


def run(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()]


def test_missing_config_says_to_run_cdp_init(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CDP_CONF", raising=False)
    code, err = run(capsys, "status")
    assert code == 2
    assert err[0] == "configuration error: conf/cdp.yaml: file not found"
    assert err[-1].startswith("next: run `cdp init`")


def test_bad_value_points_at_config_check(capsys, tmp_path):
    bad = tmp_path / "cdp.yaml"
    bad.write_text("pipeline:\n  stale_after_minutes: soon\n")
    code, err = run(capsys, "runs", "--conf", str(bad))
    assert code == 2 and "pipeline.stale_after_minutes: got 'soon'" in " ".join(err)
    assert err[-1].startswith("next: ") and "`cdp config check`" in err[-1]


@pytest.mark.parametrize("command", [("status",), ("tables",), ("runs",), ("history", "ops.job_runs"), ("console",),
                                     ("api", "serve")])
def test_lake_not_found_names_the_root_and_lake_root_setting(capsys, tmp_path, monkeypatch, command):
    missing = tmp_path / "no-such-lake"
    monkeypatch.setenv("CDP_LAKE_ROOT", str(missing))
    code, err = run(capsys, *command, "--conf", str(CONF))
    assert code == 1
    assert err[0] == f"lake error: lake not found: {missing} does not exist (lake.root in {CONF})"
    assert err[-1].startswith(f"next: check `lake.root` in {CONF}")
    assert not missing.exists()  # a read-only command creates nothing


def test_stage_already_running_names_the_holder_and_says_to_wait(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_LAKE_ROOT", str(tmp_path))
    lake = EmbeddedLake(None, str(tmp_path), default_registry())  # type: ignore[arg-type]
    lease = Lease(lake, run_id="daily-20261101T020000Z-holder", job="daily", heartbeat=False).acquire()
    try:
        code, err = run(capsys, "run", "identity", "--as-of", "2026-11-01", "--conf", str(CONF))
    finally:
        lease.release()
    assert code == 1
    assert err[0].startswith("not started: another run holds the 'pipeline' lease on this lake: run "
                             "daily-20261101T020000Z-holder")
    assert err[-1] == "next: wait for that run to finish (`cdp status` shows it), then run this command again"


def test_unknown_audience_lists_them_and_says_how_to_see_them(capsys):
    code, err = run(capsys, "audience", "preview", "cart_abandonerz", "--conf", str(CONF))
    assert code == 2
    assert err[0].startswith("error: unknown audience 'cart_abandonerz' (defined: cart_abandoners,")
    assert err[-1] == "next: `cdp audience list` shows the audiences; each is a file in conf/audiences/"


def test_unknown_stage_and_usage_errors_end_with_a_next_step(capsys):
    code, err = run(capsys, "run", "identiy", "--conf", str(CONF))
    assert code == 2 and err[0].startswith("error: unknown stage 'identiy' (registered: ") and " identity," in err[0]
    assert err[-1].startswith("next: run `cdp run daily`")
    code, err = run(capsys, "run", "daily", "--bogus")
    assert code == 2 and err == ["error: No such option: --bogus", "next: see `cdp run --help`"]


def test_an_unexpected_error_is_one_scrubbed_line_and_a_next_step_not_a_traceback(capsys, monkeypatch):
    def boom(*_args, **_kwargs):
        raise RuntimeError("could not parse ann@example.com")

    monkeypatch.setattr("cdp_spark.cli.load_config_with_sources", boom)
    code, err = run(capsys, "config", "check", "--conf", str(CONF))
    assert code == 1
    assert err == ["unexpected error: RuntimeError: could not parse <email>",
                   "next: rerun with -v for the traceback; please report it with that log"]


def test_init_refuses_an_existing_project(capsys, tmp_path):
    (tmp_path / "conf").mkdir()
    code, err = run(capsys, "init", str(tmp_path))
    assert code == 2 and err[0] == f"error: {tmp_path / 'conf'}: a configuration folder already exists here"
    assert err[-1].startswith("next: edit the configuration in")
