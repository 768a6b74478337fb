"""A quiet terminal: library logs go to a file under the lake (or to the terminal with -v) and the progress display
shows one line per step.

`cdp demo` run as a user runs it (no log lines, no stack traces on the terminal) is tested with the wheel in a fresh
virtualenv, tests/test_init.py, so that the demo pipeline runs once as a subprocess."""
from __future__ import annotations

import io
import logging
import os
import sys
import warnings
from pathlib import Path

import pytest
from rich.console import Console

from cdp_spark.ops import logs, progress
from cdp_spark.spark import jvm_logging_options


def test_routed_logs_go_to_the_file_once_opened_and_warnings_reach_stderr_before(tmp_path, capsys):
    announced = []
    mlflow_logger = logging.getLogger("mlflow")
    own = logging.StreamHandler(sys.stderr)      # MLflow installs a handler of its own like this one
    mlflow_logger.addHandler(own)
    mlflow_logger.propagate = False
    before = list(mlflow_logger.handlers)        # other tests' capture handlers may already be there
    try:
        with logs.route_logs(command="demo", verbose=False, announce=announced.append) as routing:
            logging.getLogger("cdp_spark.x").info("before the file: dropped")
            logging.getLogger("cdp_spark.x").warning("before the file: shown")
            path = logs.log_file(str(tmp_path / "lake"))
            assert logs.log_file(str(tmp_path / "lake")) == path and announced == [path]  # opened once
            logging.getLogger("cdp_spark.x").info("stage ingest started")
            mlflow_logger.info("Creating initial MLflow database tables...")
            warnings.warn("a library deprecation", FutureWarning)
            assert routing.path == path
        assert mlflow_logger.handlers == before and own in before and mlflow_logger.propagate is False  # restored
    finally:
        mlflow_logger.removeHandler(own)
        mlflow_logger.propagate = True
    assert path.parent == tmp_path / "lake" / "_system" / "logs" and path.name.startswith("cdp-demo-")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "before the file: shown" in err
    written = path.read_text()
    for line in ("stage ingest started", "Creating initial MLflow database tables", "FutureWarning: a library"):
        assert line in written
    assert "dropped" not in written and logs.log_file(str(tmp_path)) is None  # no routing outside a command


def test_verbose_sends_every_log_line_to_the_terminal_and_opens_no_file(tmp_path, capsys):
    with logs.route_logs(command="run", verbose=True, announce=lambda p: None):
        assert logs.log_file(str(tmp_path / "lake")) is None  # the JVM keeps Spark's own console logging
        logging.getLogger("py4j.clientserver").warning("py4j says")
        logging.getLogger("cdp_spark.pipeline").info("stage identity started")
    err = capsys.readouterr().err
    assert "py4j says" in err and "stage identity started" in err
    assert not (tmp_path / "lake").exists()


def test_old_log_files_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "KEEP_LOG_FILES", 3)
    folder = tmp_path / "_system" / "logs"
    folder.mkdir(parents=True)
    for i in range(5):
        (folder / f"cdp-run-2026110{i}T000000Z-1.log").write_text("x")
        os.utime(folder / f"cdp-run-2026110{i}T000000Z-1.log", (1_000_000 + i, 1_000_000 + i))
    with logs.route_logs(command="run", verbose=False, announce=lambda p: None):
        current = logs.log_file(str(tmp_path))
    kept = sorted(p.name for p in folder.glob("cdp-*.log"))
    assert current.name in kept and len(kept) == 3
    assert "cdp-run-20261104T000000Z-1.log" in kept and "cdp-run-20261100T000000Z-1.log" not in kept


def test_jvm_logging_flags_name_the_properties_and_quote_paths_with_spaces():
    flags = jvm_logging_options("/data/my lake/_system/logs/cdp-demo.log")
    assert flags.startswith("-Dlog4j2.configurationFile=") and flags.endswith(
        '-Dcdp.log.file="/data/my lake/_system/logs/cdp-demo.log"')
    properties = Path(flags.split()[0].split("=", 1)[1]).read_text()
    assert "appender.file.fileName = ${sys:cdp.log.file}" in properties


def test_progress_display_prints_one_line_per_step_with_rows_and_counts():
    console = Console(file=io.StringIO(), width=120)
    display = progress.TerminalProgress(console, live=False)
    with display, progress.attached(display):
        with progress.step("generate", "demo data"):
            pass
        progress.started("ingest")
        progress.advance(2, 4, "sources")
        progress.advance(4, 4, "sources")
        progress.finished("ingest", "succeeded", rows_in=1910, rows_out=1979)
        progress.started("profiles")
        progress.finished("profiles", "succeeded", rows_in=None, rows_out=280)
        progress.finished("scores", "skipped", detail="already done")
        with pytest.raises(RuntimeError), progress.step("activation"):
            raise RuntimeError("webhook down")
    lines = console.file.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["✔", "demo"], ["✔", "ingest"], ["✔", "profiles"],
                                                    ["↷", "scores"], ["✘", "activation"]]
    assert "4/4 sources" in lines[1] and "in 1,910 → out 1,979 rows" in lines[1]
    assert "out 280 rows" in lines[2] and "in " not in lines[2] and "already done" in lines[3]
    progress.advance(1, 2, "files")  # nothing attached: a no-op


def test_verbose_flag_is_accepted_after_the_command():
    from cdp_spark.cli import _verbose_first

    assert _verbose_first(["demo", "--people", "300", "-v"]) == ["--verbose", "demo", "--people", "300"]
    assert _verbose_first(["run", "daily", "--", "-v"]) == ["run", "daily", "--", "-v"]
