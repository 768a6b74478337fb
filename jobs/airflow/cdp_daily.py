"""Airflow DAG for the daily rebuild: one task per stage, in pipeline order, each a spark-submit of its own job.

Copy this file into the DAGs folder. Settings come from the environment of the Airflow workers:
CDP_JOBS_DIR (where cdp-spark's `jobs/` folder is), CDP_CONF (cdp.yaml), CDP_SPARK_SUBMIT (the spark-submit
command with its cluster options) and CDP_STAGES (comma-separated, default the pipeline's stages).

A failed task is retried by Airflow; each stage is idempotent for its as-of date, so a retry (or "clear" on the
failed task) resumes the day from the failed stage. `{{ ds }}` (the logical date, the day before the run at
02:30 UTC) is the as-of date. `max_active_runs=1` and the lake's pipeline lease keep runs from overlapping.

The task list is plain data (`task_specs`), so it can be checked without Airflow installed; the DAG object is
only built where Airflow imports.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

DAG_ID = "cdp_daily"
SCHEDULE = "30 2 * * *"  # 02:30 UTC: after the day's files have landed
DEFAULT_STAGES = ("erasure", "ingest", "identity", "profiles", "connections", "scores", "content", "audiences",
                  "activation", "serve")


def settings(env: dict[str, str] | None = None) -> dict[str, object]:
    env = dict(os.environ if env is None else env)
    return {
        "stages": [s.strip() for s in env.get("CDP_STAGES", ",".join(DEFAULT_STAGES)).split(",") if s.strip()],
        "jobs_dir": env.get("CDP_JOBS_DIR", "/opt/cdp-spark/jobs").rstrip("/"),
        "conf": env.get("CDP_CONF", "/etc/cdp/cdp.yaml"),
        "spark_submit": env.get("CDP_SPARK_SUBMIT", "spark-submit"),
    }


def task_specs(env: dict[str, str] | None = None, as_of: str = "{{ ds }}") -> list[dict[str, object]]:
    """One task per stage: task_id, the command it runs, and the task it waits for.

    Example:
        >>> task_specs({"CDP_STAGES": "ingest,identity"})[1]["upstream"]
        ['ingest']
    """
    s = settings(env)
    stages: list[str] = s["stages"]  # type: ignore[assignment]
    specs = []
    for i, stage in enumerate(stages):
        command = f"{s['spark_submit']} {s['jobs_dir']}/{stage}.py --as-of {as_of} --conf {s['conf']} --log-json"
        specs.append({"task_id": stage, "bash_command": command, "upstream": [stages[i - 1]] if i else []})
    return specs


def build_dag(env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """The Airflow DAG (needs Airflow 2.4+ or 3)."""
    from airflow import DAG

    try:  # Airflow 3
        from airflow.providers.standard.operators.bash import BashOperator
    except ImportError:  # Airflow 2
        from airflow.operators.bash import BashOperator

    with DAG(
        dag_id=DAG_ID,
        schedule=SCHEDULE,
        start_date=datetime(2026, 11, 1),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
        tags=["cdp-spark"],
        doc_md=__doc__,
    ) as dag:
        tasks = {spec["task_id"]: BashOperator(task_id=spec["task_id"], bash_command=spec["bash_command"])
                 for spec in task_specs(env)}
        for spec in task_specs(env):
            for upstream in spec["upstream"]:  # type: ignore[union-attr]
                tasks[upstream] >> tasks[spec["task_id"]]
    return dag


try:
    import airflow  # noqa: F401
except ImportError:  # checked and documented without Airflow: the specs above are the DAG
    dag = None
else:
    dag = build_dag()
