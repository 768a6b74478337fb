"""Reading sources into the chain's raw shape: source columns + ``_raw``, ``_file``, ``_line``, ``_error``.

Text files (CSV, NDJSON) are read as bytes and split into lines ourselves, so every record keeps its file and
line number and its raw text for quarantine, and encoding problems are caught per line:
- a UTF-8 byte-order mark is stripped;
- a file declared UTF-8 whose bytes are not valid UTF-8 (e.g. latin-1) has those lines quarantined as
  ``invalid_encoding`` (declare ``encoding: ISO-8859-1`` on the source to read it);
- blank lines are not records; they are counted in the stage metrics.
CSV records may not contain line breaks inside quoted fields (such a record is quarantined as malformed).

Example:
    >>> raw = read_files(spark, source, ["/landing/web/day=2026-11-01/part-0.json"])   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.ingest.sources import Source

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.lake import Lake


@dataclass(frozen=True)
class LandedFile:
    """A file found in the landing area."""

    path: str
    size: int
    modified_at: object  # datetime from Spark


def discover(spark: SparkSession, source: Source, path: str) -> list[LandedFile]:
    """Files under ``path`` (recursively) whose names match the source's glob, via Hadoop's FileSystem API.

    Hadoop's listing (not Spark's file index) is used because Spark's skips zero-byte files, and an empty
    delivery must still be seen and recorded. Names starting with ``_`` or ``.`` are ignored, as Spark does.

    Example:
        >>> discover(spark, source, "/landing/web")       # doctest: +SKIP
    """
    import datetime as dt
    import fnmatch

    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    root = jvm.org.apache.hadoop.fs.Path(path)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[union-attr]
    if not fs.exists(root):
        return []  # nothing delivered yet
    found: list[LandedFile] = []
    it = fs.listFiles(root, True)
    while it.hasNext():
        status = it.next()
        p = status.getPath()
        relative = p.toUri().getPath()[len(root.toUri().getPath()):]
        if any(part.startswith(("_", ".")) for part in relative.split("/") if part):
            continue
        if fnmatch.fnmatch(p.getName(), source.glob):
            mtime = dt.datetime.fromtimestamp(status.getModificationTime() / 1000, dt.timezone.utc).replace(tzinfo=None)
            found.append(LandedFile(p.toString(), int(status.getLen()), mtime))
    return sorted(found, key=lambda f: f.path)


def lines(spark: SparkSession, source: Source, paths: Sequence[str]) -> DataFrame:
    """(``_file``, ``_line`` 1-based, ``_raw``, ``_error``) for every non-blank line; files gone since listing are skipped."""
    content = (spark.read.format("binaryFile").option("ignoreMissingFiles", "true").load(list(paths))
               .select(F.col("path").alias("_file"), "content"))
    utf8 = source.encoding.upper().replace("_", "-") in ("UTF-8", "UTF8")
    text = F.col("content").cast("string") if utf8 else F.decode("content", source.encoding)
    # Splitting decodes invalid UTF-8 bytes to U+FFFD, so validity is checked on the whole file first and
    # only the lines holding a replacement character of an invalid file are flagged.
    valid = F.is_valid_utf8(text) if utf8 else F.lit(True)
    # Decode and validate once per file, before exploding: evaluated after the explode, it would run per line.
    decoded = content.select("_file", text.alias("_text"), valid.alias("_valid"))
    exploded = decoded.select("_file", "_valid", F.posexplode(F.split("_text", r"\r?\n")).alias("_pos", "_raw"))
    raw = F.when(F.col("_pos") == 0, F.regexp_replace("_raw", "^\ufeff", "")).otherwise(F.col("_raw"))
    out = exploded.select("_file", (F.col("_pos") + 1).cast("long").alias("_line"), raw.alias("_raw"), "_valid")
    bad = ~F.col("_valid") & (F.instr("_raw", "\ufffd") > 0)
    out = out.withColumn("_error", F.when(bad, F.lit("invalid_encoding")).cast("string")).drop("_valid")
    return out.where(F.trim("_raw") != "")


def parse_json(spark: SparkSession, source: Source, text: DataFrame, paths: Sequence[str]) -> DataFrame:
    """NDJSON lines -> columns; the schema is inferred from the files (or use parquet/explicit sources)."""
    inferred = spark.read.option("encoding", source.encoding).json(list(paths)).schema if paths else T.StructType([])
    fields = [f for f in inferred.fields if f.name != "_corrupt_record"]
    if not fields:
        return text.withColumn("_error", F.coalesce("_error", F.lit("malformed_json")))
    schema = T.StructType([*fields, T.StructField("_corrupt", T.StringType())])
    parsed = F.from_json("_raw", schema, {"columnNameOfCorruptRecord": "_corrupt", "mode": "PERMISSIVE"})
    df = text.select("*", parsed.alias("_j"))
    err = F.coalesce(F.col("_error"), F.when(F.col("_j._corrupt").isNotNull() | F.col("_j").isNull(), F.lit("malformed_json")))
    return df.select("_file", "_line", "_raw", err.alias("_error"), *[F.col("_j").getField(f.name).alias(f.name) for f in fields])


def parse_csv(spark: SparkSession, source: Source, text: DataFrame) -> DataFrame:
    """CSV lines -> string columns named by each file's header (files with different headers are each honoured)."""
    sep = source.options.get("sep", source.options.get("delimiter", ","))
    quote = source.options.get("quote", '"')
    headers = {r["_file"]: r["_raw"] for r in text.where(F.col("_line") == 1).select("_file", "_raw").collect()}
    data = text.where(F.col("_line") > 1)
    parts: list[DataFrame] = []
    all_columns: list[str] = []
    for header in sorted(set(headers.values())):
        names = [c.strip().strip(quote) for c in header.split(sep)]
        all_columns += [n for n in names if n not in all_columns]
        files = [f for f, h in headers.items() if h == header]
        schema = ", ".join(f"`c{i}` string" for i in range(len(names) + 1))
        opts = {k: v for k, v in source.options.items() if k not in ("header",)}
        parsed = F.from_csv("_raw", F.lit(schema), opts)
        sub = data.where(F.col("_file").isin(files)).select("*", parsed.alias("_c"))
        # Field count outside quotes: more or fewer fields than the header, or an unbalanced quote, is malformed.
        quotes = F.length("_raw") - F.length(F.regexp_replace("_raw", quote.replace("\\", "\\\\"), ""))
        unquoted = F.regexp_replace("_raw", f'{quote}[^{quote}]*{quote}', "")
        fields = F.size(F.split(unquoted, _regex_escape(sep), -1))
        bad = (quotes % 2 != 0) | (fields != len(names)) | F.col(f"_c.c{len(names)}").isNotNull()
        err = F.coalesce(F.col("_error"), F.when(bad, F.lit("malformed_csv")))
        cols = [F.when(F.col(f"_c.c{i}") != "", F.col(f"_c.c{i}")).alias(n) for i, n in enumerate(names)]
        parts.append(sub.select("_file", "_line", "_raw", err.alias("_error"), *cols))
    if not parts:
        return data.select("_file", "_line", "_raw", "_error")
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p, allowMissingColumns=True)
    return out


def _regex_escape(sep: str) -> str:
    import re

    return re.escape(sep)


def existing(spark: SparkSession, paths: Sequence[str]) -> list[str]:
    """The paths that still exist (files can vanish between listing and reading; Spark refuses absent paths)."""
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    out = []
    for p in paths:
        hp = jvm.org.apache.hadoop.fs.Path(p)
        if hp.getFileSystem(conf).exists(hp):
            out.append(p)
    return out


def read_files(spark: SparkSession, source: Source, paths: Sequence[str]) -> DataFrame:
    """The raw frame of a batch of files of one source (files gone since listing are skipped, and reported by
    the stage as missing).

    Example:
        >>> read_files(spark, source, paths).columns[:4]      # doctest: +SKIP
        ['_file', '_line', '_raw', '_error']
    """
    paths = existing(spark, paths)
    if not paths:
        return spark.createDataFrame([], "_file string, _line long, _raw string, _error string")
    if source.format == "parquet":
        df = spark.read.option("ignoreMissingFiles", "true").parquet(*paths)
        return df.select(F.col("_metadata.file_path").alias("_file"), F.lit(None).cast("long").alias("_line"),
                         F.to_json(F.struct(*[F.col(f"`{c}`") for c in df.columns])).alias("_raw"),
                         F.lit(None).cast("string").alias("_error"), *[F.col(f"`{c}`") for c in df.columns])
    text = lines(spark, source, paths)
    if source.format == "json":
        return parse_json(spark, source, text, paths)
    return parse_csv(spark, source, text)


def read_table(spark: SparkSession, lake: "Lake", source: Source, path: str | None = None) -> DataFrame:
    """A Delta table (through the lake port, so it stays distributed) or a JDBC query, in the chain's raw shape.

    JDBC needs the driver jar on Spark's classpath (``spark.jars`` in `engine.spark_conf`); see docs/architecture.md (Ingestion).

    Example:
        >>> read_table(spark, lake, source, "/data/crm_delta").columns[:2]      # doctest: +SKIP
        ['_file', '_line']
    """
    if source.kind == "delta":
        df = lake.read_path(path or source.path or "")
        origin = F.lit(path or source.path)
    else:
        df = spark.read.format("jdbc").options(**source.options).load()
        origin = F.lit(f"jdbc:{source.options.get('dbtable')}")
    return df.select(origin.alias("_file"), F.lit(None).cast("long").alias("_line"),
                     F.to_json(F.struct(*[F.col(f"`{c}`") for c in df.columns])).alias("_raw"),
                     F.lit(None).cast("string").alias("_error"), *[F.col(f"`{c}`") for c in df.columns])
