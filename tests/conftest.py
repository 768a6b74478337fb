"""Shared fixtures: one SparkSession for the whole test session (see docs/operations.md)."""
from __future__ import annotations

import pytest

from cdp_spark.spark import build_session, capabilities, embedded_conf


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    # local[1], one shuffle partition, AQE off: measured fastest for many tiny tests on 2 cores.
    conf = embedded_conf(
        cores=1,
        shuffle_partitions=1,
        extra={"spark.sql.adaptive.enabled": "false", "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse"))},
    )
    session = build_session("cdp-spark-tests", conf, str(tmp_path_factory.mktemp("checkpoints")))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def spark_capabilities(spark):
    return capabilities(spark)


@pytest.fixture
def requires_delta_jvm(spark_capabilities):
    if not spark_capabilities.delta_jvm:
        pytest.skip("Delta Lake JVM classes (io.delta) are not on the classpath; run on a cluster with delta-spark")


@pytest.fixture
def requires_graphframes_jvm(spark_capabilities):
    if not spark_capabilities.graphframes_jvm:
        pytest.skip("GraphFrames JVM classes are not on the classpath; run with --packages io.graphframes:graphframes-spark4_2.13")
