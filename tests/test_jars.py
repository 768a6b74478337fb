"""The JVM jar bundles: pins that agree with the Python packages, Maven resolution into the cache, and what a
session loads from it (pure Python; Maven runs only where a test says so)."""
from __future__ import annotations

import configparser
import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest

from cdp_spark import jars
from cdp_spark.spark import jar_conf

REPO = Path(__file__).resolve().parents[1]


def test_pins_agree_with_the_python_packages():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    requires = cfg["options"]["install_requires"]
    assert f"pyspark=={jars.SPARK_VERSION}" in requires
    assert version("pyspark") == jars.SPARK_VERSION
    delta = re.search(r"delta-spark>=(\d+\.\d+),<(\d+\.\d+)", requires)
    assert delta and jars.DELTA_VERSION.startswith(delta.group(1) + ".")
    assert version("delta-spark").startswith(delta.group(1) + ".")
    # Delta's artifact for this Spark carries the Spark minor version, per Delta's compatibility table.
    assert jars.BUNDLES["delta"].coordinates == (f"io.delta:delta-spark_4.2_2.13:{jars.DELTA_VERSION}",)
    assert jars.BUNDLES["kafka"].coordinates == (f"org.apache.spark:spark-sql-kafka-0-10_2.13:{jars.SPARK_VERSION}",)


def test_artifacts_that_pyspark_ships_are_recognised_from_file_names(tmp_path):
    for name in ("spark-core_2.13-4.2.0.jar", "zstd-jni-1.5.7-3.jar", "jackson-datatype-jdk8-2.13.5.jar",
                 "hadoop-client-api-3.5.0.jar", "RoaringBitmap-1.3.0.jar", "README.txt"):
        (tmp_path / name).write_text("")
    assert jars.provided_artifacts(tmp_path) == {"spark-core_2.13", "zstd-jni", "jackson-datatype-jdk8",
                                                 "hadoop-client-api", "RoaringBitmap"}


def _fake_bundle(root: Path, name: str, coordinates=None, files=("a-1.0.jar",)) -> Path:
    directory = jars.bundle_dir(name, root)
    directory.mkdir(parents=True)
    for f in files:
        (directory / f).write_bytes(b"jar")
    manifest = {"coordinates": list(coordinates or jars.BUNDLES[name].coordinates),
                "jars": [{"file": f} for f in files], "resolved_at": "2026-12-07T00:00:00+00:00"}
    (directory / jars.MANIFEST).write_text(json.dumps(manifest))
    return directory


def test_a_cached_bundle_counts_only_when_complete_and_for_the_current_pins(tmp_path):
    assert jars.cached_bundle("delta", tmp_path) is None
    directory = _fake_bundle(tmp_path, "delta", files=("a-1.0.jar", "b-2.0.jar"))
    assert [p.name for p in jars.cached_bundle("delta", tmp_path).jars] == ["a-1.0.jar", "b-2.0.jar"]
    (directory / "b-2.0.jar").unlink()
    assert jars.cached_bundle("delta", tmp_path) is None           # a lost file
    _fake_bundle(tmp_path, "kafka", coordinates=["org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.0"])
    assert jars.cached_bundle("kafka", tmp_path) is None            # fetched for other pins


def test_session_settings_load_cached_bundles_and_name_the_missing_ones(tmp_path):
    directory = _fake_bundle(tmp_path, "delta")
    conf, missing = jars.session_conf(["delta", "kafka", "kafka-broker"], root=tmp_path)
    assert missing == ["kafka"]                                     # the broker is never a session jar
    assert conf["spark.jars"] == str(directory / "a-1.0.jar")
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"


def test_engine_jars_modes_without_maven(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CDP_JARS_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))                       # no mvn on it
    assert jar_conf("none", ["delta"]) == {}
    assert jar_conf("auto", ["delta"]) == {}                        # said so, fell back to the embedded path
    assert "not available" in caplog.text and "Maven (`mvn`) was not found" in caplog.text
    with pytest.raises(jars.JarsError, match="cdp jars fetch delta"):
        jar_conf("required", ["delta"])


def test_unknown_bundles_are_refused(tmp_path):
    from cdp_spark.config import CdpConfig

    with pytest.raises(jars.JarsError, match="known: delta"):
        jars.bundle("deltaa")
    with pytest.raises(ValueError, match="jar_bundles"):
        CdpConfig.model_validate({"engine": {"jar_bundles": ["kafka-broker"]}})


def test_fetch_with_maven_reports_an_unresolvable_artifact_by_name(tmp_path, monkeypatch):
    import shutil

    if shutil.which("mvn") is None:
        from tests.conftest import unavailable

        unavailable("Maven (mvn) is not installed")
    monkeypatch.setitem(jars.BUNDLES, "nope", jars.Bundle("nope", ("io.cdp-spark.test:no-such-artifact:0.0.1",), "x"))
    with pytest.raises(jars.JarsError, match="io.cdp-spark.test:no-such-artifact"):
        jars.fetch(["nope"], root=tmp_path)
    assert not jars.bundle_dir("nope", tmp_path).exists()           # nothing half-copied in the cache


def test_the_s3_bundle_matches_pysparks_hadoop():
    """hadoop-aws must be the exact Hadoop version pyspark ships (its hadoop-client-api jar), or S3A fails to load."""
    shipped = sorted(p.name for p in jars.spark_jars_dir().glob("hadoop-client-api-*.jar"))
    assert shipped == [f"hadoop-client-api-{jars.HADOOP_VERSION}.jar"]
    s3 = jars.BUNDLES["s3"]
    assert s3.coordinates[0] == f"org.apache.hadoop:hadoop-aws:{jars.HADOOP_VERSION}"
    assert s3.probe == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    # The SDK's S3 modules instead of its ~690 MB `bundle` (tests/test_lake_s3a.py runs S3A on them).
    assert all(c.startswith("software.amazon.awssdk:") and c.endswith(f":{jars.AWS_SDK_VERSION}") for c in s3.coordinates[1:])
    assert s3.excludes == ("software.amazon.awssdk:bundle",)


def test_a_bundles_exclusions_reach_every_dependency_of_the_pom():
    import xml.etree.ElementTree as ET

    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.fromstring(jars._pom(["g:a:1", "g:b:2"], ["x:bundle"]))
    deps = pom.findall("m:dependencies/m:dependency", ns)
    assert [d.findtext("m:artifactId", namespaces=ns) for d in deps] == ["a", "b"]
    assert all([(e.findtext("m:groupId", namespaces=ns), e.findtext("m:artifactId", namespaces=ns))
                for e in d.findall("m:exclusions/m:exclusion", ns)] == [("x", "bundle")] for d in deps)


def test_a_bundle_cached_with_other_exclusions_is_fetched_again(tmp_path):
    directory = _fake_bundle(tmp_path, "s3")
    assert jars.cached_bundle("s3", tmp_path) is None               # cached before the exclusions were pinned
    manifest = json.loads((directory / jars.MANIFEST).read_text())
    (directory / jars.MANIFEST).write_text(json.dumps({**manifest, "excludes": ["software.amazon.awssdk:bundle"]}))
    assert jars.cached_bundle("s3", tmp_path) is not None
