"""A quiet terminal: library logs go to a file under the lake (or to the terminal with -v), the progress display
shows one line per step, and `cdp demo` run as a user runs it prints no log lines and no stack traces.

The subprocess test runs the real command in an empty folder (the packaged configuration, as after `pip install`),
so the JVM is started the way a user's is: its log4j output and its direct prints must land in the log file."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from rich.console import Console

from cdp_spark.ops import logs, progress
from cdp_spark.spark import jvm_logging_options

ROOT = Path(__file__).resolve().parents[1]
CDP = Path(sys.executable).with_name("cdp")
# A log line of Spark/log4j ("26/11/01 12:00:00 WARN ..."), Python logging ("... INFO name: ...", "WARNING:root:"),
# a Python warning ("...: UserWarning: ..."), a Java or Python stack trace.
LOG_LINE = re.compile(r"\b(WARN|WARNING|INFO|DEBUG|ERROR)\b")
PY_WARNING = re.compile(r"\w+Warning: ")
STACK = re.compile(r"^\s+at [\w.$]+\(|Exception in thread|^Caused by: |Traceback \(most recent call last\)|"
                   r"\bjava\.[\w.]+(Exception|Error)\b", re.M)


def noise(text: str) -> list[str]:
    """The lines of ``text`` that look like log lines, Python warnings or stack traces."""
    return [line for line in text.splitlines() if LOG_LINE.search(line) or PY_WARNING.search(line)
            or STACK.search(line)]


def test_routed_logs_go_to_the_file_once_opened_and_warnings_reach_stderr_before(tmp_path, capsys):
    announced = []
    mlflow_logger = logging.getLogger("mlflow")
    own = logging.StreamHandler(sys.stderr)      # MLflow installs a handler of its own like this one
    mlflow_logger.addHandler(own)
    mlflow_logger.propagate = False
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
        assert mlflow_logger.handlers == [own] and mlflow_logger.propagate is False  # restored
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


@pytest.mark.slow
def test_cdp_demo_in_an_empty_folder_prints_no_log_lines_and_no_stack_traces(tmp_path):
    """`cdp demo` as a user runs it: the packaged configuration in an empty folder, a terminal that shows where the
    logs went, one line per step, the tables and the next commands; then `cdp run ... --json` (Spark started
    again) writes nothing but JSON on stdout. The log file holds what the terminal no longer shows."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDP_", "MLFLOW_", "SPARK_", "PYSPARK_"))}
    demo = subprocess.run([str(CDP), "demo", "--people", "120", "--days", "6"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert noise(demo.stdout) == [] and noise(demo.stderr) == [], (demo.stdout, demo.stderr)
    err = demo.stderr.splitlines()
    log_file = tmp_path / re.match(r"logs: (\S+) ", err[0]).group(1)
    assert log_file.is_file() and log_file.parent == tmp_path / "lake" / "_system" / "logs"
    assert err[1].startswith("no conf/cdp.yaml here: the demo runs on cdp-spark's packaged configuration")
    steps = [line.split()[1] for line in err[2:] if line.startswith(("✔", "✘", "↷"))]
    assert steps == ["Spark", "demo", "ingest", "identity", "profiles", "scores", "audiences", "activation"]
    assert "daily run succeeded as of 2026-11-01" in demo.stdout and "gold.audience_sizes" in demo.stdout
    out = demo.stdout.splitlines()
    after = out[out.index("next:") + 1:]
    assert after[0].startswith("  cdp init ") and all(line.startswith("  cdp ") for line in after)
    logged = log_file.read_text()
    assert "stage activation succeeded" in logged          # our own lines, with run id and stage
    assert "WARNING: Using incubator modules" in logged    # the JVM's direct print, through the redirected fd
    assert "Using Spark's default log4j profile" not in logged + demo.stderr  # our log4j2 file was used
    assert "parquet.enable.summary-metadata is deprecated" not in logged  # the setting is made the current way

    init = subprocess.run([str(CDP), "init"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stderr
    run = subprocess.run([str(CDP), "run", "audiences", "--as-of", "2026-11-01", "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["stages"] == {"audiences": "succeeded"}  # stdout is exactly one JSON document
    assert noise(run.stderr) == [] and run.stderr.splitlines()[0].startswith("logs: lake/_system/logs/cdp-run-")
