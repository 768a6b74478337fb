"""Where the lake lives: a location is a string, a local path or a URI such as ``s3://bucket/lake`` (never
``pathlib.Path``: ``Path("s3://b/lake")`` is a *local relative* path), with ``lake.storage_options`` in delta-rs'
names. Pure functions for every consumer (delta-rs, pyarrow, Spark, the local-only stores); this module imports
nothing of the package, so the lowest layers (sessions, logs) can use it.

Example:
    >>> join("s3://b/lake", "_system", "salt"), is_remote("./lake")
    ('s3://b/lake/_system/salt', False)
"""
from __future__ import annotations

from typing import Mapping


def is_remote(location: str) -> bool:
    """True for an object-store URI (``s3://``, ``gs://``...), False for a local path or ``file://`` URI.

    Example:
        >>> is_remote("s3://bucket/lake"), is_remote("./lake"), is_remote("file:///data/lake")
        (True, False, False)
    """
    return "://" in location and not location.startswith("file://")


def join(location: str, *parts: str) -> str:
    """``location/part/...`` with single slashes, for paths and URIs alike (no pathlib: see the module doc).

    Example:
        >>> join("s3://b/lake/", "_system", "salt")
        's3://b/lake/_system/salt'
    """
    return "/".join([location.rstrip("/"), *(p.strip("/") for p in parts if p)])


def local_path(location: str, key: str) -> str:
    """``location`` as a local path, for the files that must be on local disk (SQLite stores, the collector's
    spool); a URI is refused with an error naming the config ``key`` that sets it.

    Example:
        >>> local_path("file:///srv/spool", "collector.spool.path")
        '/srv/spool'
    """
    if is_remote(location):
        raise ValueError(f"{key}: {location!r} is on object storage; expected a local folder (this file needs a "
                         f"local disk: see docs/operations.md, \"Deploying on object storage\")")
    return location.removeprefix("file://")


def storage_option(options: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` set (non-empty) in ``options``, whatever the case of the keys (delta-rs accepts both).

    Example:
        >>> storage_option({"aws_region": "eu-west-1"}, "AWS_REGION", "AWS_DEFAULT_REGION")
        'eu-west-1'
    """
    upper = {k.upper(): v for k, v in options.items()}
    for name in names:
        if upper.get(name) not in (None, ""):
            return upper[name]
    return None


def hadoop_s3a_conf(options: Mapping[str, str]) -> dict[str, str]:
    """Spark settings for the S3A file system from ``lake.storage_options`` (Spark reads and writes a lake's
    Parquet files; ``s3://`` is served by S3A too). Needs the ``s3`` jar bundle (`cdp jars fetch s3`).

    Example:
        >>> hadoop_s3a_conf({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})["spark.hadoop.fs.s3a.path.style.access"]
        'true'
    """
    s3a = "org.apache.hadoop.fs.s3a.S3AFileSystem"
    conf = {"spark.hadoop.fs.s3.impl": s3a, "spark.hadoop.fs.s3a.impl": s3a,
            # Hadoop's FileContext API (Delta's checkpoint writer, streaming checkpoints) for s3:// too; without it
            # they fall back to the FileSystem API and warn that its rename is not atomic.
            "spark.hadoop.fs.AbstractFileSystem.s3.impl": "org.apache.hadoop.fs.s3a.S3A"}
    endpoint = storage_option(options, "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"  # custom endpoints rarely serve bucket subdomains
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https")).lower()
    region = storage_option(options, "AWS_REGION", "AWS_DEFAULT_REGION")
    if region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    key, secret = storage_option(options, "AWS_ACCESS_KEY_ID"), storage_option(options, "AWS_SECRET_ACCESS_KEY")
    if key and secret:
        conf["spark.hadoop.fs.s3a.access.key"], conf["spark.hadoop.fs.s3a.secret.key"] = key, secret
        token = storage_option(options, "AWS_SESSION_TOKEN")
        if token:
            conf["spark.hadoop.fs.s3a.session.token"] = token
            conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = \
                "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
    return conf
