"""Session settings and capability detection."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdp_spark import spark as spark_mod
from cdp_spark.config import CdpConfig


def test_embedded_conf_follows_the_measured_settings():
    conf = spark_mod.embedded_conf(cores=2)
    assert conf["spark.master"] == "local[2]"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.shuffle.partitions"] == "4"
    assert conf["spark.sql.adaptive.enabled"] == "true"
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.parquet.outputTimestampType"] == "TIMESTAMP_MICROS"
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"


def test_embedded_jvm_options_come_first_and_the_users_are_appended():
    assert spark_mod.embedded_conf(cores=2)["spark.driver.extraJavaOptions"] == "-XX:-DontCompileHugeMethods"
    conf = spark_mod.embedded_conf(cores=2, extra={"spark.driver.extraJavaOptions": "-XX:+DontCompileHugeMethods"})
    assert conf["spark.driver.extraJavaOptions"] == "-XX:-DontCompileHugeMethods -XX:+DontCompileHugeMethods"


def test_the_running_driver_jvm_got_the_embedded_options(spark):
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    assert "-XX:-DontCompileHugeMethods" in list(runtime.getInputArguments())
    assert spark.conf.get("spark.sql.codegen.aggregate.map.twolevel.enabled") == "false"
    assert spark.conf.get("spark.sql.inMemoryColumnarStorage.compressed") == "false"


def test_capabilities_detect_missing_jvm_packages(spark):
    caps = spark_mod.capabilities(spark)
    # Whatever the classpath holds, detection must agree with an actual class load.
    try:
        spark.sparkContext._jvm.io.delta.tables.DeltaTable.forPath  # noqa: B018
        has_delta = "JavaClass" in type(spark.sparkContext._jvm.io.delta.tables.DeltaTable).__name__
    except Exception:
        has_delta = False
    assert caps.delta_jvm == has_delta
    assert caps.spark_version.startswith("4.")


def test_session_reuses_running_session_and_sets_utc(spark):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.sparkContext.getCheckpointDir() is not None


@pytest.mark.parametrize(
    "text,version", [('openjdk version "17.0.15" 2025-04-15', 17), ('java version "1.8.0_392"', 8), ("", 0)]
)
def test_java_version_parsing(text, version):
    assert spark_mod._parse_java_version(text) == version


def test_missing_java_gives_install_instructions(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(spark_mod.JavaNotFoundError, match="Java 17 or newer"):
        spark_mod.check_java()


def test_cluster_detection(monkeypatch):
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    assert not spark_mod.running_under_cluster()
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    assert spark_mod.running_under_cluster()


def test_checkpoint_dir_defaults_under_the_lake():
    assert CdpConfig.model_validate({"lake": {"root": "/x/lake"}}).lake.checkpoint_dir == "/x/lake/_system/checkpoints"


def test_the_embedded_driver_heap_follows_cdp_driver_memory_then_the_memory_the_process_may_use(monkeypatch):
    monkeypatch.setenv("CDP_DRIVER_MEMORY", "3g")
    assert spark_mod.embedded_memory() == "3g"
    monkeypatch.delenv("CDP_DRIVER_MEMORY")
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limited = {"/sys/fs/cgroup/memory.max": str(4 << 30)}   # a container limited to 4 GiB
    real_read = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: limited[str(self)] if str(self) in limited
                        else real_read(self, *a, **k))
    assert spark_mod.embedded_memory() == f"{max(1024, min(4 << 30, machine) // 2 >> 20)}m"
    limited["/sys/fs/cgroup/memory.max"] = "max"   # cgroup v2 without a limit: the machine's memory
    assert spark_mod.embedded_memory() == f"{max(1024, min(machine // 2 >> 20, 32 * 1024))}m"
