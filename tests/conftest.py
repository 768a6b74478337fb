"""Shared fixtures: one SparkSession for the whole test session (see docs/operations.md)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdp_spark.spark import build_session, capabilities, embedded_conf
from tests.spark_settings import TEST_SQL_CONF, cli_keeps_test_settings


IN_CI = os.environ.get("CI", "").lower() == "true"
XDIST_WORKER = "PYTEST_XDIST_WORKER" in os.environ
# `cdp` commands the tests start as processes run small worlds beside the test sessions' own JVMs; at the default
# (half the machine's memory each) a few at once outgrow it.
os.environ.setdefault("CDP_DRIVER_MEMORY", "2g")
# The JVM bundles the production-path tests need (the broker's jars run a test Kafka, off the session's classpath).
TEST_BUNDLES = ("delta", "kafka", "sqlite-jdbc")
# Fetched too, not loaded here: the broker runs in a JVM of its own, and `s3` (S3A) is loaded by the processes of
# the S3-lake tests (tests/test_lake_object_storage.py, tests/test_lake_s3a.py).
FETCHED_ONLY = ("kafka-broker", "s3")
FETCH_FOR_TESTS = "cdp jars fetch delta kafka sqlite-jdbc kafka-broker s3"


def pytest_sessionstart(session):
    """Fetch the test bundles into the per-user jar cache once, where Maven is installed, so the README's test
    command alone runs the production-path tests. Without Maven they skip locally and fail in CI (`unavailable`)."""
    import shutil

    from cdp_spark import jars

    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller fetched them already
        return
    wanted = [*TEST_BUNDLES, *FETCHED_ONLY]
    missing = [name for name in wanted if jars.cached_bundle(name) is None]
    if not missing or not shutil.which("mvn"):
        return
    print(f"\nfetching JVM jar bundles {', '.join(missing)} into {jars.cache_dir()} (once)", flush=True)
    try:
        jars.fetch(missing)
    except jars.JarsError as err:
        if IN_CI:
            pytest.exit(f"CI=true and the test jar bundles cannot be fetched: {err}", returncode=3)
        print(f"could not fetch them: {err}", flush=True)


# The longest test files, longest first. Under xdist's loadfile each file runs whole on one worker, so these start
# at once and the short files fill the gaps around them (xdist's own reorder, by tests per file, put the 2-test
# cluster file last and made it the run's tail).
LONGEST_FIRST = ("test_cluster.py", "test_init.py", "test_daily_exactness.py", "test_privacy_erasure.py",
                 "test_lake_object_storage.py", "test_demo_grow.py", "test_collect_kafka.py", "test_collect_stream.py",
                 "test_collect_stream_kill.py", "test_ingest_json_and_snapshot.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def unavailable(reason: str) -> None:
    """Skip a test whose jar or server is missing here, with the reason; in CI (CI=true) fail instead, so the
    production path can never silently stop being tested."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: run `{FETCH_FOR_TESTS}` before the tests)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from cdp_spark import jars

    jar_settings, missing = jars.session_conf(TEST_BUNDLES)
    if missing and IN_CI:
        pytest.exit(f"CI=true but jar bundles {missing} are not cached at {jars.cache_dir()}: run "
                    f"`{FETCH_FOR_TESTS}`", returncode=3)
    conf = embedded_conf(
        cores=1,
        shuffle_partitions=1,
        extra={**TEST_SQL_CONF, **jar_settings, "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse")),
               # Several sessions on one machine (xdist workers, parallel checkouts) would each take half the RAM.
               "spark.driver.memory": os.environ.get("CDP_TEST_DRIVER_MEMORY") or ("4g" if XDIST_WORKER else "6g")},
    )
    session = build_session("cdp-spark-tests", conf, str(tmp_path_factory.mktemp("checkpoints")))
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def _test_sql_conf_restored():
    """Put the shared session back on the test settings after each test.

    An in-process `cdp ...` call applies the CLI's embedded defaults to the shared session (see
    tests/spark_settings.py); left there they made every later Spark test slower (tests/test_demo_generator.py with
    AQE on and 4 shuffle partitions: 184 CPU seconds instead of 121).
    """
    yield
    if "pyspark.sql" not in sys.modules:  # a pure-Python test: never import Spark for it
        return
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        for key, value in TEST_SQL_CONF.items():
            if active.conf.get(key, None) != value:
                active.conf.set(key, value)


@pytest.fixture(scope="session")
def spark_capabilities(spark):
    return capabilities(spark)


@pytest.fixture
def requires_delta_jvm(spark_capabilities):
    if not spark_capabilities.delta_jvm:
        unavailable("Delta Lake's JVM classes (io.delta) are not on the classpath: run `cdp jars fetch delta`")


@pytest.fixture
def requires_graphframes_jvm(spark_capabilities):
    # Not `unavailable`: GraphFrames' Spark 4 artifacts (io.graphframes:graphframes-spark4_2.13) are not served by the
    # Maven Central these machines reach, so CI cannot fetch them (docs/operations.md, "JVM jars").
    if not spark_capabilities.graphframes_jvm:
        pytest.skip("GraphFrames' JVM classes are not on the classpath: run `cdp jars fetch graphframes` where "
                    "io.graphframes artifacts can be resolved")


# The second backend runs in the full suite; the everyday subset (`-m "not slow"`) runs the embedded one.
LAKE_BACKENDS = ("embedded", pytest.param("delta-spark", marks=[pytest.mark.delta_spark, pytest.mark.slow]))


@pytest.fixture(scope="module", params=LAKE_BACKENDS)
def lake_backend(request, spark_capabilities) -> str:
    """Each lake backend in turn, for the contract and stage tests (module-scoped: a module's shared setup is built
    once per backend)."""
    if request.param == "delta-spark" and not spark_capabilities.delta_jvm:
        unavailable("Delta Lake's JVM classes (io.delta) are not on the classpath: run `cdp jars fetch delta`")
    return request.param


@pytest.fixture(scope="module")
def make_lake(spark, lake_backend):
    """``make_lake(root, registry=None)``: a lake of the module's backend (the default registry unless given)."""
    from cdp_spark.lake import default_registry
    from cdp_spark.lake.delta_spark import DeltaSparkLake
    from cdp_spark.lake.embedded import EmbeddedLake

    cls = DeltaSparkLake if lake_backend == "delta-spark" else EmbeddedLake
    return lambda root, registry=None, **kwargs: cls(spark, str(root), registry or default_registry(), **kwargs)


CONF = Path(__file__).resolve().parents[1] / "conf" / "cdp.yaml"


@dataclass(frozen=True)
class DemoLake:
    """A lake built by `cdp demo --realtime` on the shipped configuration (see the `demo_lake` fixture)."""

    root: Path
    report: dict
    backend: str = "embedded"

    @contextlib.contextmanager
    def env(self):
        """Point the shipped `conf/cdp.yaml` at this lake (root and backend come from CDP_LAKE_ROOT and
        CDP_LAKE_BACKEND), and keep the shared session on the test settings while the in-process CLI reuses it."""
        with pytest.MonkeyPatch.context() as mp, cli_keeps_test_settings():
            mp.setenv("CDP_LAKE_ROOT", str(self.root))
            mp.setenv("CDP_LAKE_BACKEND", self.backend)
            yield

    def cli(self, *args: str) -> tuple[int, object]:
        """Run `cdp <args> --conf conf/cdp.yaml --json` against this lake: (exit code, parsed JSON or raw text)."""
        from cdp_spark.cli import main

        buffer = io.StringIO()
        with self.env(), contextlib.redirect_stdout(buffer):
            code = main([*args, "--conf", str(CONF), "--json"])
        return code, json.loads(buffer.getvalue()) if code == 0 else buffer.getvalue()


# Session fixtures that run the whole pipeline on a demo world (minutes each on two cores): a test that uses one,
# directly or through its own fixtures, is an end-to-end test and is marked `slow` (left out of `-m "not slow"`).
END_TO_END_FIXTURES = frozenset({"demo_lake", "embedded_batch_demo"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if END_TO_END_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def demo_lake(spark, tmp_path_factory) -> DemoLake:
    """The whole daily pipeline on a small demo world, built once per test session. Tests that use it only read it
    or re-run the same as-of (which must change nothing); tests that mutate a lake build their own."""
    lake = DemoLake(tmp_path_factory.mktemp("demo-lake"), {})
    code, report = lake.cli("demo", "--people", "120", "--days", "6", "--realtime")
    assert code == 0, report
    return DemoLake(lake.root, report)


# The demo world of the production-path tests: the README's cluster commands generate the same one.
BATCH_DEMO = ("--people", "120", "--days", "6")


def batch_demo(tmp_path_factory, backend: str) -> DemoLake:
    lake = DemoLake(tmp_path_factory.mktemp(f"batch-demo-{backend}"), {}, backend)
    code, report = lake.cli("demo", *BATCH_DEMO)
    assert code == 0, report
    return DemoLake(lake.root, report, backend)


@pytest.fixture(scope="session")
def embedded_batch_demo(spark, tmp_path_factory) -> DemoLake:
    """`cdp demo` (batch, no collector) on the embedded backend: the reference the delta-spark backend and the
    standalone cluster must reproduce table for table."""
    return batch_demo(tmp_path_factory, "embedded")


@dataclass(frozen=True)
class S3Server:
    """A local S3 endpoint (moto's server mode on loopback) with one bucket; ``storage_options`` are the
    ``lake.storage_options`` a deployment on it would configure (see docs/operations.md, "Deploying on object
    storage")."""

    endpoint: str
    bucket: str
    storage_options: dict[str, str]

    def root(self, name: str) -> str:
        """A fresh lake root in the bucket, e.g. ``s3://cdp-test/<name>``."""
        return f"s3://{self.bucket}/{name}"


@pytest.fixture(scope="session")
def s3_server() -> S3Server:
    """A real S3 HTTP endpoint for the whole session (moto's server on 127.0.0.1, a free port; tests/s3_server.py)."""
    from tests import s3_server as server

    try:
        proc, endpoint = server.start("cdp-test", "cdp-test", "cdp-test-secret")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    options = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "cdp-test",
               "AWS_SECRET_ACCESS_KEY": "cdp-test-secret", "AWS_ALLOW_HTTP": "true"}
    yield S3Server(endpoint, "cdp-test", options)
    server.stop(proc)


@pytest.fixture
def s3_root(s3_server, request) -> str:
    """A lake root of its own on the session's S3 server, per test."""
    import uuid

    return s3_server.root(f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}")
