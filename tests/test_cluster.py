"""The production path on a real multi-process cluster: a Spark standalone master and two workers on loopback, the
README's cluster commands run exactly as written (spark-submit with delta-spark from Maven), and the tables equal
the embedded backend's on the same demo world."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from deltalake import DeltaTable

from cdp_spark.activation.receiver import WebhookReceiver
from tests.lake_compare import assert_lakes_equal
from tests.spark_cluster import StandaloneCluster

pytestmark = [pytest.mark.slow, pytest.mark.delta_spark]
REPO = Path(__file__).resolve().parents[1]


def readme_cluster_commands() -> str:
    """The indented command block of README.md's "Running on a cluster" that follows the install line."""
    section = (REPO / "README.md").read_text().split("## Running on a cluster", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"((?:\n    .*\S.*)+)", section)
    block = next(b for b in blocks if "spark-submit" in b)
    return "\n".join(line[4:] for line in block.strip("\n").splitlines())


def test_readme_names_the_pinned_delta_artifact():
    from cdp_spark.jars import BUNDLES

    assert f"--packages {BUNDLES['delta'].coordinates[0]}" in readme_cluster_commands()


def test_readme_cluster_commands_on_a_standalone_cluster_give_the_embedded_tables(embedded_batch_demo, tmp_path):
    lake_root = tmp_path / "lake"
    # A small cluster's defaults: a few shuffle partitions instead of 200 tiny tasks per shuffle.
    defaults = {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4"}
    with StandaloneCluster(tmp_path / "cluster", workers=2, cores=1, memory="2g", defaults=defaults) as cluster, \
            WebhookReceiver() as hook:
        env = cluster.submit_env(CDP_LAKE_ROOT=str(lake_root), CDP_LAKE_BACKEND="auto", CDP_DEMO_WEBHOOK_URL=hook.url)
        with open(tmp_path / "submit.log", "w+") as log:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_cluster_commands()], cwd=REPO, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, timeout=1500)
            log.seek(0)
            output = log.read()
        assert done.returncode == 0, output[-4000:]
        apps = cluster.state()["completedapps"]
        # The job really ran on the cluster's executors, in JVMs other than the driver's.
        assert len(apps) == 1 and apps[0]["state"] == "FINISHED" and apps[0]["cores"] == 2
    # Delta's JVM writer committed the tables (lake.backend: auto picked delta-spark under spark-submit).
    assert "Delta-Lake/" in DeltaTable(str(lake_root / "gold" / "profiles")).history(1)[0]["engineInfo"]
    assert_lakes_equal(str(embedded_batch_demo.root), str(lake_root))
