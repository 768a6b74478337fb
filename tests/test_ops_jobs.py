"""Deployment examples: the Airflow DAG (checked as plain data, without Airflow), the Databricks bundle, systemd
and cron, and the spark-submit entry points (one per stage, same arguments as the CLI)."""
from __future__ import annotations

import importlib.util
import runpy
import shlex
from pathlib import Path

import pytest
import yaml

import cdp_spark.cli
from cdp_spark.config.models import PipelineConfig

ROOT = Path(__file__).resolve().parents[1]
JOBS = ROOT / "jobs"
PIPELINE = PipelineConfig().stages


def load_dag_module():
    spec = importlib.util.spec_from_file_location("cdp_daily_dag", JOBS / "airflow" / "cdp_daily.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_airflow_dag_runs_one_task_per_stage_in_pipeline_order():
    dag = load_dag_module()
    env = {"CDP_JOBS_DIR": "/opt/cdp/jobs", "CDP_CONF": "/etc/cdp/cdp.yaml",
           "CDP_SPARK_SUBMIT": "spark-submit --master yarn"}
    specs = dag.task_specs(env)
    assert [s["task_id"] for s in specs] == list(PIPELINE)
    assert [s["upstream"] for s in specs] == [[]] + [[stage] for stage in PIPELINE[:-1]]
    for spec in specs:
        argv = shlex.split(spec["bash_command"])
        stage = spec["task_id"]
        assert argv[:4] == ["spark-submit", "--master", "yarn", f"/opt/cdp/jobs/{stage}.py"]
        assert argv[4:] == ["--as-of", "{{", "ds", "}}", "--conf", "/etc/cdp/cdp.yaml", "--log-json"]
        assert (JOBS / f"{stage}.py").exists()
    assert dag.SCHEDULE == "30 2 * * *"
    if importlib.util.find_spec("airflow") is None:
        assert dag.dag is None  # importable without Airflow: the specs are the DAG
    else:  # pragma: no cover - only where Airflow is installed
        assert [t.task_id for t in dag.dag.topological_sort()] == list(PIPELINE)


def test_databricks_bundle_chains_one_task_per_stage():
    bundle = yaml.safe_load((JOBS / "databricks" / "databricks.yml").read_text())
    job = bundle["resources"]["jobs"]["cdp_daily"]
    tasks = job["tasks"]
    assert [t["task_key"] for t in tasks] == list(PIPELINE)
    assert [t.get("depends_on", []) for t in tasks] == [[]] + [[{"task_key": s}] for s in PIPELINE[:-1]]
    for task in tasks:
        python_file = (JOBS / "databricks" / task["spark_python_task"]["python_file"]).resolve()
        assert python_file == JOBS / f"{task['task_key']}.py" and python_file.exists()
        params = task["spark_python_task"]["parameters"]
        assert params[:2] == ["--as-of", "{{job.parameters.as_of}}"] and "--conf" in params
    assert job["max_concurrent_runs"] == 1
    maintain = bundle["resources"]["jobs"]["cdp_maintain"]["tasks"][0]["spark_python_task"]["python_file"]
    assert (JOBS / "databricks" / maintain).resolve() == JOBS / "maintain.py"


def test_systemd_and_cron_run_the_daily_resume_for_yesterday():
    service = (JOBS / "systemd" / "cdp-daily.service").read_text()
    timer = (JOBS / "systemd" / "cdp-daily.timer").read_text()
    cron = (JOBS / "systemd" / "cdp-daily.cron").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    assert "cdp run daily --resume --as-of" in exec_start and "yesterday" in exec_start
    assert "OnCalendar=*-*-* 02:30:00 UTC" in timer and "Persistent=true" in timer
    daily = next(line for line in cron.splitlines() if line.startswith("30 2 * * *"))
    assert "cdp run daily --resume" in daily and r"+\%F" in daily  # % must be escaped in crontab
    assert any(line.startswith("0 5 * * 0") and "cdp maintain" in line for line in cron.splitlines())


@pytest.mark.parametrize("script, prefix", [("daily_rebuild.py", ["run", "daily"]), ("maintain.py", ["maintain"]),
                                            *[(f"{stage}.py", ["run", stage]) for stage in PIPELINE]])
def test_entry_points_pass_their_arguments_to_the_cli(monkeypatch, script, prefix):
    seen = []
    monkeypatch.setattr(cdp_spark.cli, "main", lambda argv: seen.append(argv) or 0)
    monkeypatch.setattr("sys.argv", [script, "--as-of", "2026-11-01", "--resume", "--conf", "c.yaml"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(JOBS / script), run_name="__main__")
    assert exited.value.code == 0
    assert seen == [[*prefix, "--as-of", "2026-11-01", "--resume", "--conf", "c.yaml"]]


def test_run_command_accepts_resume_and_json_logs():
    from typer.testing import CliRunner

    result = CliRunner().invoke(cdp_spark.cli.app, ["run", "--help"])
    assert result.exit_code == 0
    for option in ("--as-of", "--resume", "--log-json", "--log-level", "--conf"):
        assert option in result.output
    result = CliRunner().invoke(cdp_spark.cli.app, ["run", "nosuchstage", "--conf", str(ROOT / "conf" / "cdp.yaml")])
    assert result.exit_code == 2
