"""Spark sessions: an embedded local session tuned for one machine, or the cluster's own.

Example:
    >>> from cdp_spark.config import load_config
    >>> from cdp_spark.spark import session
    >>> spark = session(load_config("conf/cdp.yaml"))   # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from cdp_spark.config import CdpConfig

log = logging.getLogger(__name__)

MIN_JAVA = 17


class JavaNotFoundError(RuntimeError):
    """Raised when no usable Java runtime is found for local Spark."""


@dataclass(frozen=True)
class Capabilities:
    """What the running Spark can do. Detected once per session, never guessed."""

    delta_jvm: bool
    graphframes_jvm: bool
    spark_version: str
    master: str
    kafka_jvm: bool = False

    def describe(self) -> dict[str, object]:
        return {
            "spark_version": self.spark_version,
            "master": self.master,
            "delta_jvm": self.delta_jvm,
            "kafka_jvm": self.kafka_jvm,
            "graphframes_jvm": self.graphframes_jvm,
        }


def running_under_cluster() -> bool:
    """True on Databricks or under spark-submit, where master and resources are not ours to set."""
    # spark-submit starts the Python driver with a JVM gateway already running and passes its port.
    return bool(os.environ.get("PYSPARK_GATEWAY_PORT") or os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def check_java() -> int:
    """Return the Java major version, or raise with instructions when Java is missing or too old."""
    java = shutil.which("java", path=_java_path())
    if java is None:
        raise JavaNotFoundError(
            "Java was not found. Spark needs Java 17 or newer: install it (Debian/Ubuntu: "
            "`apt-get install openjdk-17-jre-headless`, macOS: `brew install openjdk@17`) "
            "or set JAVA_HOME to an existing JDK."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    version = _parse_java_version(out.stderr or out.stdout)
    if version < MIN_JAVA:
        raise JavaNotFoundError(
            f"Java {version} found at {java}, but Spark 4 needs Java {MIN_JAVA} or newer. "
            "Install a newer JDK and point JAVA_HOME at it."
        )
    return version


def _java_path() -> str:
    home = os.environ.get("JAVA_HOME")
    parts = [os.path.join(home, "bin")] if home else []
    return os.pathsep.join(parts + [os.environ.get("PATH", "")])


def _parse_java_version(text: str) -> int:
    # `java -version` prints e.g. 'openjdk version "17.0.15"' or 'java version "1.8.0_392"'.
    import re

    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def embedded_memory(fraction: float = 0.5, cap_gb: int = 32) -> str:
    """The driver heap for embedded mode: ``CDP_DRIVER_MEMORY`` when set (e.g. ``6g``), otherwise a share of the memory
    this process may use (the container's limit when there is one, else the machine's), at least 1g.

    Example:
        >>> embedded_memory().endswith(("m", "g"))
        True
    """
    if os.environ.get("CDP_DRIVER_MEMORY"):
        return os.environ["CDP_DRIVER_MEMORY"]
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: keep Spark's default
        return "1024m"
    # A container sees the host's memory through sysconf; its own limit is in the cgroup (v2, then v1).
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            total = min(total, int(Path(limit_file).read_text(encoding="ascii").strip()))
        except (OSError, ValueError):  # no such cgroup file, or "max" (no limit)
            continue
    return f"{max(1024, min(int(total * fraction) >> 20, cap_gb * 1024))}m"


JVM_OPTIONS = "-XX:-DontCompileHugeMethods"  # the embedded driver's JVM flags (see `embedded_conf`)


def embedded_conf(
    *,
    cores: int | None = None,
    shuffle_partitions: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The Spark settings of the embedded (local) mode.

    Example:
        >>> embedded_conf(cores=2)["spark.sql.session.timeZone"]
        'UTC'
    """
    cores = cores or os.cpu_count() or 2
    conf = {
        "spark.master": f"local[{cores}]",
        # Local mode runs everything in the driver JVM; Spark's 1g default fails on ordinary day-sized files.
        "spark.driver.memory": embedded_memory(),
        "spark.sql.session.timeZone": "UTC",
        # Small local jobs: a couple of partitions per core beats the cluster default of 200.
        "spark.sql.shuffle.partitions": str(shuffle_partitions or max(2, 2 * cores)),
        # Delta (the delta-spark backend) rebuilds a table's state from its log in 50 tasks by default: on a few
        # local cores that made every delta-spark write about three times slower than the write itself.
        "spark.databricks.delta.snapshotPartitions": str(cores),
        "spark.default.parallelism": str(max(2, 2 * cores)),
        "spark.sql.adaptive.enabled": "true",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # arrow-rs misreads Spark's INT96 default, and delta-rs reads what Spark writes.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # No _SUCCESS markers inside Delta table folders: the lake commits files itself.
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.hadoop.parquet.summary.metadata.level": "NONE",  # no _metadata summary files either
        "spark.sql.sources.partitionOverwriteMode": "static",
        # Compiled code is cached by its text; Spark's 100 entries are fewer than the ~130 classes of one ingest
        # batch, so a streaming micro-batch evicted and recompiled ~30 of them every time (seconds of CPU each).
        "spark.sql.codegen.cache.maxEntries": "1000",
        # HotSpot leaves methods over 8,000 bytes of bytecode interpreted; wide projections (every audience's match
        # flags and bit words) generate such methods, and ran about twice as slow.
        "spark.driver.extraJavaOptions": JVM_OPTIONS,
        # The first-level aggregation map holds 65,536 keys; grouping by profile or identifier overflows it at once,
        # so every row paid for a miss there before the regular map (20% of the audiences' event pass).
        "spark.sql.codegen.aggregate.map.twolevel.enabled": "false",
        # Cached batches without columnar compression: building a compressed batch gathers dictionary statistics (a
        # hash map of every string value, per column and 10,000 rows): 13% of the executor samples of an ingested
        # JSON source, whose widest column (the raw record) is all distinct; the web source's task CPU fell ~20%
        # without it. Caches here are one run's working sets: they take more memory and spill to disk as before.
        "spark.sql.inMemoryColumnarStorage.compressed": "false",
    }
    extra = dict(extra or {})
    if extra.get("spark.driver.extraJavaOptions"):  # appended: the JVM takes the last of conflicting flags
        extra["spark.driver.extraJavaOptions"] = f"{JVM_OPTIONS} {extra['spark.driver.extraJavaOptions']}"
    conf.update(extra)
    return conf


LOG4J2_PROPERTIES = Path(__file__).with_name("log4j2.properties")  # JVM logs into the file named by -Dcdp.log.file


def jvm_logging_options(log_file: str | os.PathLike[str]) -> str:
    """The driver JVM flags that send its log4j2 output (Spark, Hadoop, Parquet, Delta) to ``log_file``.

    Example:
        >>> jvm_logging_options("/data/lake/_system/logs/cdp-demo.log").split()[1]
        '-Dcdp.log.file=/data/lake/_system/logs/cdp-demo.log'
    """
    # Spark splits extraJavaOptions like a shell: quote paths with spaces.
    def flag(name: str, value: object) -> str:
        text = str(value)
        return f'-D{name}="{text}"' if any(c.isspace() for c in text) else f"-D{name}={text}"

    return f"{flag('log4j2.configurationFile', LOG4J2_PROPERTIES)} {flag('cdp.log.file', log_file)}"


@contextlib.contextmanager
def _jvm_output_to(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """While the block starts the JVM, file descriptors 1 and 2 point at ``path``: the JVM, and the Python workers it
    forks later, inherit them, so their direct prints (JDK notices, worker warnings) land in the log file. This
    process keeps writing to the terminal through copies of the original descriptors."""
    if path is None:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    replaced = []
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = getattr(sys, name)
        with contextlib.suppress(AttributeError, OSError, ValueError):
            if stream.fileno() == fd:
                copy = open(os.dup(saved[fd]), "w", buffering=1, encoding=stream.encoding, errors=stream.errors)
                replaced.append((name, stream, copy))
                setattr(sys, name, copy)
        os.dup2(target, fd)
    try:
        yield
    finally:
        for name, original, copy in replaced:
            copy.flush()
            setattr(sys, name, original)
            copy.close()
        for fd, copy_fd in saved.items():
            os.dup2(copy_fd, fd)
            os.close(copy_fd)
        os.close(target)


def build_session(
    app_name: str, conf: Mapping[str, str], checkpoint_dir: str | None, log_level: str = "WARN", *,
    jvm_output: str | os.PathLike[str] | None = None,
) -> "SparkSession":
    """Create (or reuse) a SparkSession with the given settings and checkpoint directory.

    ``jvm_output``: a file that receives what a newly started JVM prints outside log4j (see `_jvm_output_to`).
    """
    # Python workers must run this interpreter, or they fail to import pyarrow and pandas.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    with _jvm_output_to(jvm_output):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(log_level)
    if checkpoint_dir:
        if "://" not in checkpoint_dir:
            checkpoint_dir = os.path.abspath(checkpoint_dir)
            os.makedirs(checkpoint_dir, exist_ok=True)
        spark.sparkContext.setCheckpointDir(checkpoint_dir)
    return spark


def session(config: "CdpConfig") -> "SparkSession":
    """Return the SparkSession for this config: embedded local mode, or the cluster's session.

    Example:
        >>> spark = session(load_config("conf/cdp.yaml"))   # doctest: +SKIP
        >>> capabilities(spark).delta_jvm                     # doctest: +SKIP
        False
    """
    from cdp_spark.locations import hadoop_s3a_conf

    engine = config.engine
    checkpoint_dir = config.lake.checkpoint_dir
    on_s3 = config.lake.root.startswith(("s3://", "s3a://"))
    # Spark reads and writes the lake's Parquet files itself: on S3 through S3A, with the lake's credentials.
    s3a = hadoop_s3a_conf(config.lake.storage_options) if on_s3 else {}
    mode = engine.mode
    if mode == "auto":
        mode = "cluster" if running_under_cluster() else "embedded"
    if mode == "cluster":
        # Master, resources and packages come from spark-submit or Databricks; only set semantics.
        conf = {
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
            **s3a,
            **engine.spark_conf,
        }
        return build_session(engine.app_name, conf, checkpoint_dir, engine.log_level)
    check_java()
    from cdp_spark.ops.logs import log_file

    # Spark's own check of the host name warns unless told the (loopback) address the embedded driver binds to.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    extra = {**s3a, **engine.spark_conf}
    jar_settings = [jar_conf(engine.jars, engine.jar_bundles)]
    if on_s3 and "s3" not in engine.jar_bundles:  # S3A is needed whatever engine.jars says: without it, no lake
        jar_settings.append(jar_conf("auto" if engine.jars == "auto" else "required", ["s3"]))
    for settings in jar_settings:
        for key, value in settings.items():
            # The user's own settings win, except that their jars (a JDBC driver, say) join the bundles' jars.
            extra[key] = f"{extra[key]},{value}" if key == "spark.jars" and extra.get(key) else extra.get(key, value)
    logs = log_file(config.lake.root)  # a `cdp` command's log file (None: library use, notebooks, -v)
    if logs is not None:
        user_flags = extra.get("spark.driver.extraJavaOptions")
        extra["spark.driver.extraJavaOptions"] = " ".join(filter(None, [jvm_logging_options(logs), user_flags]))
    conf = embedded_conf(cores=engine.cores, shuffle_partitions=engine.shuffle_partitions, extra=extra)
    return build_session(engine.app_name, conf, checkpoint_dir, engine.log_level, jvm_output=logs)


def jar_conf(mode: str, bundles: list[str]) -> dict[str, str]:
    """Spark settings that load the cached JVM jars for ``engine.jars`` (none, auto or required).

    ``auto`` fetches missing bundles once with Maven and, when it cannot, says so and leaves them out (the lake then
    stays embedded); ``required`` raises JarsError instead.

    Example:
        >>> jar_conf("none", ["delta"])
        {}
    """
    from cdp_spark import jars

    if mode == "none":
        return {}
    conf, missing = jars.session_conf(bundles)
    if missing and mode == "auto":
        try:
            jars.fetch(missing)
        except jars.JarsError as exc:
            log.warning("JVM jars %s are not available, continuing without them (embedded lake): %s",
                        ", ".join(missing), exc)
        conf, missing = jars.session_conf(bundles)
    if missing and mode == "required":
        raise jars.JarsError(f"engine.jars is required but bundle(s) {', '.join(missing)} are not in the jar cache at "
                             f"{jars.cache_dir()}: run `cdp jars fetch {' '.join(missing)}`")
    return conf


def _jvm_class_loadable(spark: "SparkSession", name: str) -> bool:
    try:
        jvm = spark.sparkContext._jvm  # noqa: SLF001 - py4j is the only way to probe the classpath
        loader = jvm.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(name, False, loader)
        return True
    except Exception:  # py4j wraps ClassNotFoundException; Spark Connect has no _jvm
        return False


def capabilities(spark: "SparkSession") -> Capabilities:
    """Detect whether Delta's, Kafka's and GraphFrames' JVM classes are loadable in this session.

    Example:
        >>> capabilities(spark).describe()   # doctest: +SKIP
        {'spark_version': '4.2.0', 'master': 'local[2]', 'delta_jvm': False, 'kafka_jvm': False, 'graphframes_jvm': False}
    """
    from cdp_spark.jars import BUNDLES

    return Capabilities(
        delta_jvm=_jvm_class_loadable(spark, BUNDLES["delta"].probe),  # type: ignore[arg-type]
        kafka_jvm=_jvm_class_loadable(spark, BUNDLES["kafka"].probe),  # type: ignore[arg-type]
        graphframes_jvm=_jvm_class_loadable(spark, BUNDLES["graphframes"].probe),  # type: ignore[arg-type]
        spark_version=spark.version,
        master=spark.sparkContext.master,
    )
