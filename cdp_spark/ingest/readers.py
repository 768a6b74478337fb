"""Reading sources into the chain's raw shape: source columns + ``_raw``, ``_file``, ``_line``, ``_error``.

Text files (CSV, NDJSON) are read with Spark's splittable line reader, so a large file is read by many tasks, and
every record keeps its file, its exact 1-based line number and its raw text for quarantine (see `lines`):
- a UTF-8 byte-order mark is stripped;
- a line of a file declared UTF-8 whose bytes are not valid UTF-8 (e.g. latin-1) is quarantined as
  ``invalid_encoding`` (declare ``encoding: ISO-8859-1`` on the source to read it);
- lines end at LF or CRLF; blank lines are not records (they still count for line numbers).
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
    """(``_file``, ``_line`` 1-based, ``_raw``, ``_error``) for every non-blank line; files gone since listing are skipped.

    Files are split like any Spark text input (``spark.sql.files.maxPartitionBytes``), so no task holds a whole
    file. Exact line numbers without a shuffle: each split's rows get consecutive ids within their task
    (``monotonically_increasing_id``), a first, cheap pass counts the lines of every split (the file's byte
    offset of the split, from ``_metadata``), and a split's first line number is 1 + the lines of the earlier
    splits of its file. File splitting and packing are deterministic, so both passes see the same ids.

    Example:
        >>> lines(spark, source, ["/landing/orders/day=2026-11-01/orders-00000.csv"]).columns   # doctest: +SKIP
        ['_file', '_line', '_raw', '_error']
    """
    encoding = _encoding(source)
    if not _ascii_compatible(encoding):
        return _whole_file_lines(spark, source, paths)
    scan = (spark.read.format("text").option("lineSep", "\n").option("ignoreMissingFiles", "true").load(list(paths))
            .select(F.col("_metadata.file_path").alias("_file"), F.col("_metadata.file_block_start").alias("_block"),
                    F.monotonically_increasing_id().alias("_seq"), F.col("value")))
    splits = scan.groupBy("_file", "_block").agg(F.count(F.lit(1)).alias("n"), F.min("_seq").alias("first")).collect()
    base = split_bases([(r["_file"], int(r["_block"]), int(r["n"]), int(r["first"])) for r in splits])
    if not base:
        return spark.createDataFrame([], "_file string, _line long, _raw string, _error string")
    # `_metadata.file_path` is URL-encoded; files are named as the listing (and the ledger) names them.
    names = {f: _hadoop_path(spark, f) for f in {b[0] for b in base}}
    offsets = spark.createDataFrame([(f, start, add, names[f]) for f, start, add in base],
                                    "_file string, _block long, _base long, _name string")
    numbered = scan.join(F.broadcast(offsets), ["_file", "_block"]).select(
        F.col("_name").alias("_file"), (F.col("_seq") + F.col("_base")).alias("_line"), "value")
    # CRLF endings: the reader splits at LF. Only a line ending in CR needs the regular expression (a round trip
    # through a Java string); the test looks at the last byte only (`contains` scanned every line: ~6% of the pass).
    value = F.col("value")
    line = F.when(value.endswith("\r"), F.regexp_replace(value, "\r$", "")).otherwise(value)
    if _is_utf8(source):
        valid = F.is_valid_utf8("value")  # on the bytes as read: regexp_replace would already have replaced them
        # Invalid bytes become U+FFFD in the kept raw text (Parquet strings must be valid UTF-8).
        text = F.when(valid, line).otherwise(F.make_valid_utf8(line))
    else:
        valid = F.lit(True)
        # Decode the bytes as read (any string function first would turn non-UTF-8 bytes into U+FFFD).
        text = F.regexp_replace(F.decode(F.col("value").cast("binary"), source.encoding), "\r$", "")
    raw = F.when(F.col("_line") == 1, F.regexp_replace(text, "^\ufeff", "")).otherwise(text)
    out = numbered.select("_file", "_line", raw.alias("_raw"),
                          F.when(~valid, F.lit("invalid_encoding")).cast("string").alias("_error"))
    return out.where(F.trim("_raw") != "")


def split_bases(splits: Sequence[tuple[str, int, int, int]]) -> list[tuple[str, int, int]]:
    """(file, split start, number to add to a row's id to get its line number) from each split's
    (file, start byte, line count, first row id); pure Python.

    Example:
        >>> split_bases([("f", 0, 3, 100), ("f", 64, 2, 7)])     # lines 1-3 are ids 100-102, lines 4-5 ids 7-8
        [('f', 0, -99), ('f', 64, -3)]
    """
    out: list[tuple[str, int, int]] = []
    done: dict[str, int] = {}
    for file, start, n, first in sorted(splits):
        before = done.get(file, 0)
        out.append((file, start, before + 1 - first))
        done[file] = before + n
    return out


def _hadoop_path(spark: SparkSession, url: str) -> str:
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    return str(jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(url)).toString())


def _encoding(source: Source) -> str:
    return source.encoding.upper().replace("_", "-")


def _is_utf8(source: Source) -> bool:
    return _encoding(source) in ("UTF-8", "UTF8")


def _ascii_compatible(encoding: str) -> bool:
    # The line reader splits bytes at LF; that is only a line break in encodings where ASCII bytes mean ASCII.
    return not encoding.startswith(("UTF-16", "UTF-32", "UTF16", "UTF32", "UCS"))


def _whole_file_lines(spark: SparkSession, source: Source, paths: Sequence[str]) -> DataFrame:
    """Wide encodings (UTF-16/32): each file is read whole in one task and decoded before splitting."""
    content = (spark.read.format("binaryFile").option("ignoreMissingFiles", "true").load(list(paths))
               .select(F.col("path").alias("_file"), F.decode("content", source.encoding).alias("_text")))
    exploded = content.select("_file", F.posexplode(F.split("_text", r"\r?\n")).alias("_pos", "_raw"))
    raw = F.when(F.col("_pos") == 0, F.regexp_replace("_raw", "^\ufeff", "")).otherwise(F.col("_raw"))
    out = exploded.select("_file", (F.col("_pos") + 1).cast("long").alias("_line"), raw.alias("_raw"),
                          F.lit(None).cast("string").alias("_error"))
    return out.where(F.trim("_raw") != "")


def parse_json(spark: SparkSession, source: Source, text: DataFrame, paths: Sequence[str]) -> DataFrame:
    """NDJSON lines -> columns; the schema is inferred from the files (or use parquet/explicit sources)."""
    reader = spark.read
    if not _is_utf8(source):
        # Only for other encodings: with the option set, Spark decodes every line through a Reader (a decoder per
        # record) instead of parsing the bytes.
        reader = reader.option("encoding", source.encoding)
    inferred = reader.json(list(paths)).schema if paths else T.StructType([])
    fields = [f for f in inferred.fields if f.name != "_corrupt_record"]
    if not fields:
        return text.withColumn("_error", F.coalesce("_error", F.lit("malformed_json")))
    schema = T.StructType([*fields, T.StructField("_corrupt", T.StringType())])
    parsed = F.from_json("_raw", schema, {"columnNameOfCorruptRecord": "_corrupt", "mode": "PERMISSIVE"})
    df = text.select("*", parsed.alias("_j"))
    err = F.coalesce(F.col("_error"), F.when(F.col("_j._corrupt").isNotNull() | F.col("_j").isNull(), F.lit("malformed_json")))
    return df.select("_file", "_line", "_raw", err.alias("_error"), *[F.col("_j").getField(f.name).alias(f.name) for f in fields])


def parse_csv(spark: SparkSession, source: Source, text: DataFrame, paths: Sequence[str] | None = None) -> DataFrame:
    """CSV lines -> string columns named by each file's header (files with different headers are each honoured)."""
    sep = source.options.get("sep", source.options.get("delimiter", ","))
    quote = source.options.get("quote", '"')
    headers = first_lines(spark, source, sorted(set(paths))) if paths is not None else {
        r["_file"]: r["_raw"] for r in text.where(F.col("_line") == 1).select("_file", "_raw").collect()}
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


def first_lines(spark: SparkSession, source: Source, paths: Sequence[str]) -> dict[str, str]:
    """Each file's first line (its CSV header), read on the driver through Hadoop (decompressing like Spark's
    text reader), instead of a Spark pass over every line; empty files and blank first lines are left out.

    Example:
        >>> first_lines(spark, source, ["file:/landing/orders/day=2026-11-01/orders-00000.csv"])   # doctest: +SKIP
        {'file:/landing/orders/day=2026-11-01/orders-00000.csv': 'order_id,order_time,...'}
    """
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    codecs = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf)
    utf8 = _is_utf8(source)
    out: dict[str, str] = {}
    for path in paths:
        hp = jvm.org.apache.hadoop.fs.Path(path)
        fs = hp.getFileSystem(conf)
        try:
            stream = fs.open(hp)
        except Exception:  # noqa: BLE001 - gone since listing: the read skips it as well
            continue
        try:
            codec = codecs.getCodec(hp)
            if codec is not None:
                stream = codec.createInputStream(stream)
            charset = "UTF-8" if utf8 else source.encoding
            # Malformed bytes become U+FFFD (the decoder's default); the data lines are checked separately.
            text = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, charset)).readLine()
        finally:
            stream.close()
        text = (text or "").lstrip("\ufeff")
        if text.strip():
            out[path] = text
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
    return parse_csv(spark, source, text, paths)


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
