"""The JVM side of the production path, pinned in one place: which Maven artifacts, resolved once into a cache.

The embedded default needs no jars (Spark writes Parquet, delta-rs commits). Delta's JVM writer, Structured
Streaming's Kafka source and the test Kafka broker are Maven artifacts: `cdp jars fetch` resolves them with Maven
into a per-user cache (`~/.cache/cdp-spark/jars`, or `$CDP_JARS_DIR`), and sessions then load them from there,
offline. Jars that pyspark's wheel already ships are left out, so Spark's own versions are the only ones loaded.

Example:
    >>> BUNDLES["delta"].coordinates
    ('io.delta:delta-spark_4.2_2.13:4.4.0',)
    >>> cached_bundle("delta") is None or cached_bundle("delta").name == "delta"
    True
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence
from xml.sax.saxutils import escape

# One pinned Spark for every JVM artifact below; setup.cfg pins pyspark and delta-spark to the same versions
# (tests/test_jars.py checks that they agree).
SPARK_VERSION = "4.2.0"
HADOOP_VERSION = "3.5.0"  # pyspark 4.2's hadoop-client-api; hadoop-aws must match it exactly
AWS_SDK_VERSION = "2.35.4"  # the AWS SDK v2 that hadoop-aws 3.5.0 is built against (its pom's `bundle`)
SCALA_VERSION = "2.13"
DELTA_VERSION = "4.4.0"
GRAPHFRAMES_VERSION = "0.10.1"
KAFKA_BROKER_VERSION = "4.1.1"


@dataclass(frozen=True)
class Bundle:
    """A named set of Maven artifacts resolved together.

    ``on_classpath`` bundles go on the Spark session's classpath (``spark.jars``); the others are tools started in
    a JVM of their own (the test Kafka broker). ``probe`` is a class whose loadability proves the bundle is there.
    ``excludes`` (group:artifact) are left out of every coordinate's dependencies.
    """

    name: str
    coordinates: tuple[str, ...]
    purpose: str
    probe: str | None = None
    on_classpath: bool = True
    default: bool = True
    excludes: tuple[str, ...] = ()


BUNDLES: dict[str, Bundle] = {
    b.name: b
    for b in (
        Bundle("delta", (f"io.delta:delta-spark_{SPARK_VERSION[:3]}_{SCALA_VERSION}:{DELTA_VERSION}",),
               "Delta Lake's JVM writer (lake.backend: delta-spark)", probe="io.delta.tables.DeltaTable"),
        Bundle("kafka", (f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_VERSION}:{SPARK_VERSION}",),
               "Structured Streaming's Kafka source (collector.stream.source_format: kafka)",
               probe="org.apache.spark.sql.kafka010.KafkaSourceProvider"),
        Bundle("graphframes", (f"io.graphframes:graphframes-spark4_{SCALA_VERSION}:{GRAPHFRAMES_VERSION}",),
               "GraphFrames' connected components (identity.engine: graphframes)",
               probe="org.graphframes.GraphFrame", default=False),
        Bundle("sqlite-jdbc", ("org.xerial:sqlite-jdbc:3.54.1.0",),
               "a JDBC driver for the JDBC source's tests (engine.spark_conf spark.jars for your own database's)",
               probe="org.sqlite.JDBC", default=False),
        # hadoop-aws depends on the AWS SDK's shaded `bundle` (every AWS service, ~690 MB); S3A needs only the S3,
        # STS and transfer-manager modules (~13 MB with their dependencies, tests/test_lake_s3a.py runs them).
        Bundle("s3", (f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}",
                      *(f"software.amazon.awssdk:{m}:{AWS_SDK_VERSION}" for m in ("s3", "sts", "s3-transfer-manager"))),
               "the S3A file system, for a lake on S3 (lake.root: s3://...; Spark reads and writes s3a://)",
               probe="org.apache.hadoop.fs.s3a.S3AFileSystem", default=False,
               excludes=("software.amazon.awssdk:bundle",)),
        Bundle("kafka-broker", (f"org.apache.kafka:kafka_{SCALA_VERSION}:{KAFKA_BROKER_VERSION}",
                                "org.slf4j:slf4j-simple:1.7.36"),
               "a single-node KRaft Kafka broker, for tests and local trials", on_classpath=False),
    )
}

MANIFEST = "manifest.json"


class JarsError(RuntimeError):
    """The jars could not be resolved or are not in the cache; the message says what to do."""


@dataclass(frozen=True)
class CachedBundle:
    """A bundle resolved into the cache: its jar files, all present."""

    name: str
    directory: Path
    coordinates: tuple[str, ...]
    jars: tuple[Path, ...]
    resolved_at: str

    def describe(self) -> dict[str, object]:
        return {"bundle": self.name, "directory": str(self.directory), "coordinates": list(self.coordinates),
                "jars": len(self.jars), "bytes": sum(p.stat().st_size for p in self.jars),
                "resolved_at": self.resolved_at}


def cache_dir() -> Path:
    """The per-user jar cache: ``$CDP_JARS_DIR``, else ``$XDG_CACHE_HOME/cdp-spark/jars`` (``~/.cache/...``).

    Example:
        >>> cache_dir().name
        'jars'
    """
    if os.environ.get("CDP_JARS_DIR"):
        return Path(os.environ["CDP_JARS_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cdp-spark" / "jars"


def bundle_dir(name: str, root: Path | None = None) -> Path:
    """Where a bundle's jars live: one folder per pinned Spark version and bundle."""
    return (root or cache_dir()) / f"spark-{SPARK_VERSION}" / name


def bundle(name: str) -> Bundle:
    """The pinned bundle called ``name``, or a JarsError listing the known ones."""
    if name not in BUNDLES:
        raise JarsError(f"unknown jar bundle {name!r} (known: {', '.join(BUNDLES)})")
    return BUNDLES[name]


def cached_bundle(name: str, root: Path | None = None) -> CachedBundle | None:
    """The cached bundle, or None when it was never fetched, was fetched for other pins, or lost a file."""
    spec = bundle(name)
    directory = bundle_dir(name, root)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if (tuple(manifest.get("coordinates", ())), tuple(manifest.get("excludes", ()))) != (spec.coordinates, spec.excludes):
        return None
    jars = tuple(directory / j["file"] for j in manifest.get("jars", ()))
    if not all(p.is_file() for p in jars):
        return None
    return CachedBundle(name, directory, spec.coordinates, jars, manifest.get("resolved_at", ""))


def spark_jars_dir() -> Path:
    """The folder of jars that pyspark's wheel ships (Spark's own classpath in embedded mode)."""
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


_JAR_NAME = re.compile(r"^(?P<artifact>.+?)-(?P<version>\d[^/]*)\.jar$")


def provided_artifacts(jars_dir: Path | None = None) -> set[str]:
    """Artifact ids already on Spark's classpath (from the wheel's jar file names).

    Example:
        >>> "spark-core_2.13" in provided_artifacts()
        True
    """
    names = os.listdir(jars_dir or spark_jars_dir())
    return {m.group("artifact") for m in map(_JAR_NAME.match, names) if m}


def _pom(coordinates: Sequence[str], excludes: Sequence[str] = ()) -> str:
    exclusions = "".join(f"<exclusion><groupId>{escape(g)}</groupId><artifactId>{escape(a)}</artifactId></exclusion>"
                         for g, a in (e.split(":") for e in excludes))
    deps = []
    for coordinate in coordinates:
        group, artifact, version = coordinate.split(":")
        deps.append(f"<dependency><groupId>{escape(group)}</groupId><artifactId>{escape(artifact)}</artifactId>"
                    f"<version>{escape(version)}</version><exclusions>{exclusions}</exclusions></dependency>")
    return ("<project xmlns=\"http://maven.apache.org/POM/4.0.0\"><modelVersion>4.0.0</modelVersion>"
            "<groupId>io.cdp-spark</groupId><artifactId>jars</artifactId><version>1</version>"
            f"<packaging>pom</packaging><dependencies>{''.join(deps)}</dependencies></project>")


def _resolve(coordinates: Sequence[str], mvn: str, timeout: float, repository: Path,
             excludes: Sequence[str] = ()) -> list[tuple[str, Path]]:
    """(group:artifact, local jar path) of every runtime dependency, resolved by Maven into ``repository``."""
    with tempfile.TemporaryDirectory(prefix="cdp-jars-") as tmp:
        (Path(tmp) / "pom.xml").write_text(_pom(coordinates, excludes))
        listing = Path(tmp) / "deps.txt"
        cmd = [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(Path(tmp) / "pom.xml"), "dependency:list", "-DincludeScope=runtime",
               f"-DoutputFile={listing}", "-DoutputAbsoluteArtifactFilename=true"]
        # A Maven repository of our own: resolution leaves some artifacts in it as a pom without a jar, and Spark's
        # `--packages` resolver (ivy) takes ~/.m2 for a cache and fails on exactly such entries.
        cmd.append(f"-Dmaven.repo.local={os.environ.get('CDP_MAVEN_REPO') or repository}")
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise JarsError(f"Maven did not finish resolving {', '.join(coordinates)} in {timeout:.0f} s") from exc
        if done.returncode != 0 or not listing.exists():
            # Maven's first [ERROR] line names the artifact it could not find; the rest is advice about -e/-X.
            text = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
            detail = next((line.split("[ERROR]", 1)[1].strip() for line in text.splitlines()
                           if "[ERROR]" in line and line.split("[ERROR]", 1)[1].strip()), f"exit code {done.returncode}")
            raise JarsError(f"Maven could not resolve {', '.join(coordinates)}: {detail}")
        resolved = []
        for line in listing.read_text().splitlines():
            parts = line.strip().split(":")
            # group:artifact:type[:classifier]:version:scope:/absolute/path.jar
            if len(parts) >= 6 and parts[2] == "jar" and parts[-1].endswith(".jar"):
                resolved.append((f"{parts[0]}:{parts[1]}", Path(parts[-1])))
        return resolved


def fetch(names: Iterable[str], *, root: Path | None = None, mvn: str | None = None, force: bool = False,
          timeout: float = 900.0) -> list[CachedBundle]:
    """Resolve bundles with Maven and copy their jars into the cache (once: cached bundles are kept).

    Raises JarsError when Maven is missing or an artifact cannot be resolved, naming it.

    Example:
        >>> [b.name for b in fetch(["delta"])]      # doctest: +SKIP
        ['delta']
    """
    mvn = mvn or shutil.which("mvn")
    results = []
    for name in names:
        spec = bundle(name)
        if not force and (cached := cached_bundle(name, root)) is not None:
            results.append(cached)
            continue
        if mvn is None:
            raise JarsError("Maven (`mvn`) was not found, so the JVM jars cannot be fetched. Install it (Debian/Ubuntu: "
                            "`apt-get install maven`) and run `cdp jars fetch` again; until then cdp-spark runs on "
                            "the embedded lake (delta-rs) without the JVM stack.")
        _check_pyspark()
        skip = provided_artifacts() if spec.on_classpath else set()
        resolved = _resolve(spec.coordinates, mvn, timeout, (root or cache_dir()) / "maven", spec.excludes)
        directory = bundle_dir(name, root)
        staging = directory.with_name(directory.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        jars = []
        for key, path in sorted(resolved):
            if key.split(":")[1] in skip:
                continue
            shutil.copy2(path, staging / path.name)
            jars.append({"artifact": key, "file": path.name, "sha256": _sha256(staging / path.name)})
        manifest = {"bundle": name, "coordinates": list(spec.coordinates), "excludes": list(spec.excludes),
                    "spark": SPARK_VERSION, "jars": jars,
                    "resolved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        # A killed fetch leaves only the .partial folder: the cache never holds a half-copied bundle.
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
        results.append(cached_bundle(name, root))  # type: ignore[arg-type]
    return results


def _check_pyspark() -> None:
    import pyspark

    if pyspark.__version__ != SPARK_VERSION:
        raise JarsError(f"the jars are pinned for Spark {SPARK_VERSION}, but pyspark {pyspark.__version__} is "
                        f"installed: install pyspark=={SPARK_VERSION} (setup.cfg pins it)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def session_conf(names: Iterable[str], *, root: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """Spark settings that load the cached bundles, and the names of the requested bundles that are not cached.

    Example:
        >>> conf, missing = session_conf(["delta"])
        >>> set(missing) | {"delta"} == {"delta"}
        True
    """
    conf: dict[str, str] = {}
    jars: list[str] = []
    missing = []
    for name in names:
        spec = bundle(name)
        if not spec.on_classpath:
            continue
        cached = cached_bundle(name, root)
        if cached is None:
            missing.append(name)
            continue
        jars.extend(str(p) for p in cached.jars)
        if name == "delta":
            conf["spark.sql.extensions"] = "io.delta.sql.DeltaSparkSessionExtension"
            conf["spark.sql.catalog.spark_catalog"] = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    if jars:
        conf["spark.jars"] = ",".join(jars)
    return conf, missing


def classpath(name: str, root: Path | None = None) -> str:
    """A `java -cp` classpath of a cached bundle (for tools in their own JVM, like the test broker)."""
    cached = cached_bundle(name, root)
    if cached is None:
        raise JarsError(f"jar bundle {name!r} is not in the cache at {bundle_dir(name, root)}: "
                        f"run `cdp jars fetch {name}`")
    return os.pathsep.join(str(p) for p in cached.jars)


def default_bundles() -> list[str]:
    """The bundles `cdp jars fetch` resolves when none are named."""
    return [b.name for b in BUNDLES.values() if b.default]
