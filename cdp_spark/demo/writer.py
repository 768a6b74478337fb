"""Writing the demo files with Spark, with stable names and no Spark bookkeeping files.

Spark names its output ``part-00000-<random uuid>-c000``; the same seed must give the same files, so every output
is written to a staging folder and then renamed to ``<stem>-<n>.<ext>`` (one file per day= folder here), and
``_SUCCESS``/``.crc`` files are left behind with the staging folder. Renames go through Hadoop's FileSystem, so
object stores work too.

Example:
    >>> write_text_by_day(spark, df, "/tmp/demo/landing/web", "/tmp/demo/_staging", "events", "json", ["_epoch"])  # doctest: +SKIP
"""
from __future__ import annotations

import os
import uuid as _uuid
from typing import Sequence

from pyspark.sql import DataFrame, SparkSession


def _fs(spark: SparkSession, path: str):  # type: ignore[no-untyped-def]
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    p = jvm.org.apache.hadoop.fs.Path(path)
    return p, p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[union-attr]


def remove(spark: SparkSession, path: str) -> None:
    """Delete a file or folder tree if it exists."""
    p, fs = _fs(spark, path)
    if fs.exists(p):
        fs.delete(p, True)


def move_folder(spark: SparkSession, source: str, target: str) -> bool:
    """Move a folder (False when ``source`` does not exist); the target's parent is created."""
    src, fs = _fs(spark, source)
    if not fs.exists(src):
        return False
    dest, _ = _fs(spark, target)
    fs.mkdirs(dest.getParent())
    if not fs.rename(src, dest):
        raise OSError(f"could not move {source} to {target}")
    return True


def list_folders(spark: SparkSession, path: str) -> list[str]:
    """Names of the folders directly under ``path`` (empty when it does not exist)."""
    p, fs = _fs(spark, path)
    if not fs.exists(p):
        return []
    return sorted(st.getPath().getName() for st in fs.listStatus(p) if st.isDirectory())


def absolute(path: str) -> str:
    """A local path made absolute (URIs with a scheme are kept), so summaries name an unambiguous place."""
    return path if "://" in path else os.path.abspath(path)


def publish(spark: SparkSession, staged: str, target: str, stem: str, ext: str) -> list[str]:
    """Move the data files of a Spark output folder to ``target``, keeping partition folders, named by order.

    Example:
        >>> publish(spark, "/tmp/staged", "/tmp/demo/landing/web", "events", "json")   # doctest: +SKIP
    """
    root, fs = _fs(spark, staged)
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    found: dict[str, list[str]] = {}
    it = fs.listFiles(root, True)
    prefix = root.toUri().getPath().rstrip("/") + "/"
    while it.hasNext():
        path = it.next().getPath()
        relative = path.toUri().getPath()[len(prefix):]
        parent, _, name = relative.rpartition("/")
        if name.startswith(("_", ".")):
            continue  # _SUCCESS and checksum files: not data
        found.setdefault(parent, []).append(relative)
    moved = []
    for parent in sorted(found):
        for i, relative in enumerate(sorted(found[parent])):
            dest_dir = jvm.org.apache.hadoop.fs.Path(target.rstrip("/") + ("/" + parent if parent else ""))
            fs.mkdirs(dest_dir)
            dest = jvm.org.apache.hadoop.fs.Path(dest_dir, f"{stem}-{i:05d}.{ext}")
            if not fs.rename(jvm.org.apache.hadoop.fs.Path(prefix + relative), dest):
                raise OSError(f"could not move {prefix + relative} to {dest.toString()}")
            drop_checksum(fs, jvm, dest)
            moved.append(dest.toString())
    remove(spark, staged)
    return moved


def drop_checksum(fs, jvm, path) -> None:  # type: ignore[no-untyped-def]
    # Hadoop's local file system renames a file's hidden .<name>.crc along with it; it is not part of the data.
    crc = jvm.org.apache.hadoop.fs.Path(path.getParent(), f".{path.getName()}.crc")
    if fs.exists(crc):
        fs.delete(crc, False)


def _staging(staging_root: str) -> str:
    return f"{staging_root.rstrip('/')}/{_uuid.uuid4().hex}"


CSV_OPTIONS = {"header": "true", "ignoreLeadingWhiteSpace": "false", "ignoreTrailingWhiteSpace": "false"}


def write_text_by_day(spark: SparkSession, df: DataFrame, target: str, staging_root: str, stem: str, ext: str,
                      order: Sequence[str]) -> list[str]:
    """One text file per ``day`` folder from the ``value`` column, lines sorted by ``order`` (deterministic)."""
    staged = _staging(staging_root)
    (df.repartition("day").sortWithinPartitions("day", *order).select("day", "value")
     .write.partitionBy("day").text(staged))
    return publish(spark, staged, target, stem, ext)


def write_csv_by_day(spark: SparkSession, df: DataFrame, columns: Sequence[str], target: str, staging_root: str,
                     stem: str, order: Sequence[str]) -> list[str]:
    """One CSV file (with header) per ``day`` folder; spaces around values are kept, they are part of the mess."""
    staged = _staging(staging_root)
    (df.repartition("day").sortWithinPartitions("day", *order).select("day", *columns)
     .write.partitionBy("day").options(**CSV_OPTIONS).csv(staged))
    return publish(spark, staged, target, stem, "csv")


def write_csv(spark: SparkSession, df: DataFrame, columns: Sequence[str], target_file: str, staging_root: str,
              order: Sequence[str]) -> str:
    """A single CSV file at ``target_file``."""
    staged = _staging(staging_root)
    df.coalesce(1).sortWithinPartitions(*order).select(*columns).write.options(**CSV_OPTIONS).csv(staged)
    folder, _, name = target_file.rpartition("/")
    stem, _, ext = name.rpartition(".")
    moved = publish(spark, staged, folder, stem, ext)
    # publish numbers files; a single output gets exactly the requested name.
    src, fs = _fs(spark, moved[0])
    dest, _ = _fs(spark, target_file)
    fs.delete(dest, False)
    fs.rename(src, dest)
    drop_checksum(fs, spark.sparkContext._jvm, dest)  # type: ignore[union-attr]
    return target_file


def write_parquet(spark: SparkSession, df: DataFrame, target: str, staging_root: str, order: Sequence[str]) -> None:
    """A small Parquet dataset as one file in ``target``."""
    staged = _staging(staging_root)
    df.coalesce(1).sortWithinPartitions(*order).write.parquet(staged)
    publish(spark, staged, target, "part", "parquet")


__all__ = ["absolute", "drop_checksum", "list_folders", "move_folder", "publish", "remove", "write_csv", "write_csv_by_day", "write_parquet", "write_text_by_day"]
