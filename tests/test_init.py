"""Starting from a pip install: the wheel carries the default configuration, `cdp demo` runs on it in an empty folder
with a quiet terminal, `cdp init` writes a commented starter project from it, and all of it works in a fresh
virtualenv outside the repository."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable

from cdp_spark.cli import main
from cdp_spark.config import load_config
from cdp_spark.config.starter import DEMO_ONLY, defaults_dir, starter_files, without_audience_links
from cdp_spark.ingest.sources import Source

ROOT = Path(__file__).resolve().parents[1]
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


def test_the_packaged_defaults_are_the_repository_conf():
    """One set of files: the package's defaults folder is the repository's conf/ (a link), so the tests, the README
    and the wheel use the same configuration."""
    assert defaults_dir().resolve() == (ROOT / "conf").resolve()
    assert load_config(defaults_dir() / "cdp.yaml").model_dump() == load_config(ROOT / "conf" / "cdp.yaml").model_dump()


def test_init_writes_a_commented_starter_project_that_loads(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("CDP_LAKE_ROOT", raising=False)
    project = tmp_path / "my-cdp"
    assert main(["init", str(project), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    conf = project / "conf"
    assert written["conf"] == str(conf / "cdp.yaml")
    config = load_config(conf / "cdp.yaml")
    assert config.lake.root == "./lake" and len(config.catalogue.fields) > 20
    assert {(s.role, s.format) for s in config.sources} == {("both", "json"), ("events", "json"), ("events", "csv"),
                                                            ("profiles", "csv")}
    assert [a.name for a in config.audiences] == ["cart_abandoners", "electronics_fans"]
    assert [(d.name, d.transport.type) for d in config.destinations] == [("crm_file_drop", "file")]
    assert [link.name for link in config.destinations[0].audiences] == ["cart_abandoners", "electronics_fans"]
    assert config.identity.id_types and config.attributes.attributes and config.scores.clv.min_events > 0
    # The other source kinds, as examples beside the loaded ones.
    examples = {p.name: Source.model_validate(yaml.safe_load(p.read_text()))
                for p in (conf / "examples" / "sources").glob("*.yaml")}
    assert {s.kind for s in examples.values()} == {"delta", "jdbc"}
    for path in conf.rglob("*.yaml"):
        assert path.read_text().startswith("#"), f"{path} starts without a comment saying what it is"
    assert not any((conf / p).exists() for p in DEMO_ONLY)


def test_init_in_the_current_folder_prints_the_next_steps(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    assert "starter project written: conf" in out and "  cdp demo " in out and "cd " not in out


def test_destination_links_to_left_out_audiences_are_dropped_with_their_lines():
    text = ("# drop\naudiences:\n  - keep_me\n  - name: gone\n    variants: [a]\n  - {name: kept, variants: [b]}\n"
            "identifiers: [email]\n")
    assert without_audience_links(text, {"gone"}) == ("# drop\naudiences:\n  - keep_me\n"
                                                      "  - {name: kept, variants: [b]}\nidentifiers: [email]\n")
    assert set(starter_files()) >= {"cdp.yaml", "catalogue.yaml", "identity.yaml", "attributes.yaml", "scores.yaml",
                                    "destinations/crm_file_drop.yaml"}


@pytest.mark.slow
def test_the_wheel_in_a_fresh_venv_runs_the_demo_quietly_in_an_empty_folder_then_init(tmp_path):
    """Build the wheel, install it into a new virtualenv outside the repository and, in an empty folder, run
    `cdp demo --people 300` as a user runs it, then `cdp init` and one stage of the starter project with --json.

    The demo (on the packaged configuration: there is no project yet) must show where the logs went, one line per
    step, the tables and the next commands, and no log line, Python warning or stack trace: the JVM is started the
    way a user's is, so its log4j output and its direct prints must land in the log file. This is the one test that
    runs the demo pipeline as a subprocess. Then `cdp init` writes the starter and `cdp run audiences --json` on it
    (Spark started again) writes nothing but one JSON document on stdout.

    The wheel is installed without its dependencies, which come from this environment through a .pth file: the
    same pinned versions, without copying 1.5 GB of packages for each run (this environment's own cdp-spark is an
    editable-install hook that a plain path in a .pth file does not activate, so only the wheel's copy is seen)."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
                   check=True, timeout=600)
    (wheel,) = wheels.glob("cdp_spark-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   timeout=300)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    project = tmp_path / "empty"
    project.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CDP_", "MLFLOW_", "SPARK_", "PYSPARK_", "PYTHON"))}
    where = subprocess.run([str(python), "-c", "import cdp_spark, cdp_spark.config.starter as s; "
                            "print(cdp_spark.__file__); print(s.defaults_dir())"], cwd=project, env=env,
                           check=True, capture_output=True, text=True).stdout.split()
    assert all(w.startswith(str(site)) for w in where), where  # the wheel's copy, not this checkout
    assert (Path(where[1]) / "sources" / "web.yaml").is_file() and not Path(where[1]).is_symlink()

    cdp = venv / "bin" / "cdp"
    demo = subprocess.run([str(cdp), "demo", "--people", "300"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=3600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert noise(demo.stdout) == [] and noise(demo.stderr) == [], (demo.stdout, demo.stderr)
    err = demo.stderr.splitlines()
    log_file = project / re.match(r"logs: (\S+) ", err[0]).group(1)
    assert log_file.is_file() and log_file.parent == project / "lake" / "_system" / "logs"
    assert err[1].startswith("no conf/cdp.yaml here: the demo runs on cdp-spark's packaged configuration")
    steps = [line.split()[1] for line in err[2:] if line.startswith(("✔", "✘", "↷"))]
    assert steps == ["Spark", "demo", "erasure", "ingest", "identity", "profiles", "connections", "scores", "content",
                     "audiences", "activation", "serve"]
    assert "daily run succeeded as of 2026-11-01" in demo.stdout and "gold.audience_members" in demo.stdout
    out = demo.stdout.splitlines()
    after = out[out.index("next:") + 1:]
    assert after[0].startswith("  cdp init ") and all(line.startswith("  cdp ") for line in after)
    logged = log_file.read_text()
    assert "stage activation succeeded" in logged          # our own lines, with run id and stage
    assert "WARNING: Using incubator modules" in logged    # the JVM's direct print, through the redirected fd
    assert "Using Spark's default log4j profile" not in logged + demo.stderr  # our log4j2 file was used
    assert "parquet.enable.summary-metadata is deprecated" not in logged  # the setting is made the current way

    init = subprocess.run([str(cdp), "init"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stderr
    assert (project / "conf" / "cdp.yaml").is_file() and (project / "conf" / "examples" / "README.md").is_file()
    run = subprocess.run([str(cdp), "run", "audiences", "--as-of", "2026-11-02", "--json"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["stages"] == {"audiences": "succeeded"}  # stdout is exactly one JSON document
    assert noise(run.stderr) == [] and run.stderr.splitlines()[0].startswith("logs: lake/_system/logs/cdp-run-")
    sizes = DeltaTable(str(project / "lake" / "gold" / "audience_sizes")).to_pandas()
    assert set(sizes.loc[sizes["as_of"].astype(str) == "2026-11-02", "audience"]) == {"cart_abandoners",
                                                                                       "electronics_fans"}
