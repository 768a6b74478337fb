"""Reading sources into the chain's raw shape: source columns + ``_raw``, ``_file``, ``_line``, ``_error``.

Text files (CSV, NDJSON) are read with Spark's splittable line reader, so a large file is read by many tasks, and
every record keeps its file, its exact 1-based line number and its raw text for quarantine (see `lines`):
- a UTF-8 byte-order mark is stripped;
- a line of a file declared UTF-8 whose bytes are not valid UTF-8 (e.g. latin-1) is quarantined as
  ``invalid_encoding`` (declare ``encoding: ISO-8859-1`` on the source to read it);
- lines end at LF or CRLF; blank lines are not records (they still count for line numbers);
- a CSV record whose quoted field holds line breaks is read as one record, numbered by its first line;
- a JSON record nested deeper than the source's `max_nesting_depth` is quarantined as ``too_deep`` without ever
  being parsed to that depth (Jackson's own limit stops the parse), and schema inference never sees it;
- files compressed with gzip, bzip2, deflate or zstd are read (whole, not split); other compressions are never
  handed to Spark (see `discover`).

Example:
    >>> raw = read_files(spark, source, ["/landing/web/day=2026-11-01/part-0.json"])   # doctest: +SKIP
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.ingest.sources import Source

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.lake import Lake


# Compression suffixes Hadoop reads the way the usual tools write them: such files are read like plain ones.
READABLE_COMPRESSION = (".gz", ".bz2", ".deflate", ".zst")
# Suffixes of compressions that are never read: Hadoop has no codec for them, or its LZ4/Snappy framing differs from
# the command-line tools' (an lz4 frame read by Hadoop's codec took a length from the header and ran the JVM out of
# memory). Matching files are recorded as failed, never handed to Spark.
UNREADABLE_COMPRESSION = (".lz4", ".snappy", ".xz", ".lzma", ".zip", ".br", ".lzo", ".7z", ".z", ".tgz", ".tar")
# Nested types deeper than this (structs and arrays) are kept as their JSON text in the parent field: Python parses
# a schema recursively (about three frames per level), and nothing here reads deeper than `flatten`'s 10 levels.
SCHEMA_DEPTH = 32
# A quoted CSV field may hold line breaks; a record spanning more lines than this is taken for an unbalanced quote.
MAX_RECORD_LINES = 100


@dataclass(frozen=True)
class LandedFile:
    """A file found in the landing area: ``path`` as the file system names it (for reading), ``relative`` to the
    folder it was found under (the ledger's name of it); ``problem`` says why it cannot be read (it is recorded,
    never read)."""

    path: str
    size: int
    modified_at: object  # datetime from Spark
    problem: str | None = None
    relative: str = ""


def compression(name: str) -> str | None:
    """The compression suffix of a file name (lower-cased), if it has a known one.

    Example:
        >>> compression("part-0.json.GZ"), compression("part-0.json")
        ('.gz', None)
    """
    lower = name.lower()
    return next((c for c in (*READABLE_COMPRESSION, *UNREADABLE_COMPRESSION) if lower.endswith(c)), None)


def matches(name: str, glob: str) -> bool:
    """Whether a file name matches the source's glob, by itself or without its compression suffix.

    Example:
        >>> matches("part-0.json.gz", "*.json"), matches("notes.txt", "*.json")
        (True, False)
    """
    import fnmatch

    suffix = compression(name)
    return fnmatch.fnmatch(name, glob) or (suffix is not None and fnmatch.fnmatch(name[:-len(suffix)], glob))


def discover(spark: SparkSession, source: Source, path: str) -> list[LandedFile]:
    """Files under ``path`` (recursively) whose names match the source's glob, via Hadoop's FileSystem API.

    Hadoop's listing (not Spark's file index) is used because Spark's skips zero-byte files, and an empty
    delivery must still be seen and recorded. Names starting with ``_`` or ``.`` are ignored, as Spark does. A
    compressed file matches when its name without the suffix does (``part-0.json.gz`` for ``*.json``); one in a
    compression Spark cannot read carries its ``problem``.

    Example:
        >>> discover(spark, source, "/landing/web")       # doctest: +SKIP
    """
    import datetime as dt

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
        if matches(p.getName(), source.glob):
            mtime = dt.datetime.fromtimestamp(status.getModificationTime() / 1000, dt.timezone.utc).replace(tzinfo=None)
            suffix = compression(p.getName())
            problem = f"unsupported_compression:{suffix}" if suffix in UNREADABLE_COMPRESSION else None
            found.append(LandedFile(p.toString(), int(status.getLen()), mtime, problem,
                                    relative.strip("/") or p.getName()))
    return sorted(found, key=lambda f: f.path)


def lines(spark: SparkSession, source: Source, paths: Sequence[str]) -> DataFrame:
    """(``_file``, ``_line`` 1-based, ``_raw``, ``_error``) for every non-blank record; files gone since listing are skipped.

    Files are split like any Spark text input (``spark.sql.files.maxPartitionBytes``), so no task holds a whole
    file. Exact line numbers without a shuffle: each split's rows get consecutive ids within their task
    (``monotonically_increasing_id``), a first, cheap pass counts the lines of every split (the file's byte
    offset of the split, from ``_metadata``), and a split's first line number is 1 + the lines of the earlier
    splits of its file. File splitting and packing are deterministic, so both passes see the same ids.

    CSV: the same pass collects the (rare) lines with an odd number of quote characters; a line that opens a
    quoted field and the next one that closes it (`record_spans`) make the lines from one to the other one record,
    joined with LF and numbered by its first line. A quote left open is the one line's problem.

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
    quote = _quote(source)
    counts = [F.count(F.lit(1)).alias("n"), F.min("_seq").alias("first")]
    if quote:
        value = F.col("value")
        odd = (F.instr(value, quote) > 0) & ((F.length(value) - F.length(F.replace(value, F.lit(quote), F.lit("")))) % 2 == 1)
        counts.append(F.collect_list(F.when(odd, F.struct("_seq", "value"))).alias("odd"))
    splits = scan.groupBy("_file", "_block").agg(*counts).collect()
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
    odd_lines: dict[str, list[tuple[int, str]]] = {}
    for f, odd_rows, add in _odd_lines(splits, base):
        odd_lines.setdefault(names[f], []).extend((seq + add, text) for seq, text in odd_rows)
    sep = source.options.get("sep", source.options.get("delimiter", ","))
    spans = record_spans(odd_lines, quote or '"', sep) if quote else []
    if spans:
        out = _join_spans(spark, out, spans)
    return out.where(F.trim("_raw") != "")


def _quote(source: Source) -> str | None:
    if source.format != "csv":
        return None
    return source.options.get("quote", '"') or None


def _odd_lines(splits: Sequence, base: Sequence[tuple[str, int, int]]) -> list[tuple[str, list[tuple[int, str]], int]]:
    """(file, (row id, text) of its odd-quote lines in one split, number to add for line numbers) per split."""
    add = {(f, start): a for f, start, a in base}
    return [(r["_file"], [(o["_seq"], o["value"]) for o in r["odd"]], add[(r["_file"], int(r["_block"]))])
            for r in splits if "odd" in r.asDict() and r["odd"]]


def _opens(line: str, quote: str, sep: str) -> bool:
    """Whether a line ends inside a quoted field that starts a field (after a separator or at the line's start)."""
    inside, start = False, -1
    for i, ch in enumerate(line):
        if ch == quote:
            inside = not inside
            if inside:
                start = i
    return inside and (start == 0 or line[start - 1] == sep)


def _closes(line: str, quote: str, sep: str) -> bool:
    """Whether a line, read from inside a quoted field, closes it where a field may end (before a separator or at
    the line's end); doubled quotes are quotes inside the field."""
    i = 0
    while i < len(line):
        if line[i] == quote:
            if line[i + 1:i + 2] == quote:
                i += 2
                continue
            return line[i + 1:].rstrip("\r")[:1] in ("", sep)
        i += 1
    return False


def record_spans(odd: dict[str, list[tuple[int, str]]], quote: str = '"', sep: str = ",",
                 max_lines: int = MAX_RECORD_LINES) -> list[tuple[str, int, int]]:
    """(file, first line, last line) of the multi-line CSV records, from each file's lines with an odd number of
    quotes, as (line number, text) (pure Python): a line that opens a quoted field and the next such line that
    closes it, at most ``max_lines`` later, span one record. Any other odd line is a stray quote, malformed on
    its own line.

    Example:
        >>> record_spans({"f": [(3, 'a,"x'), (5, 'y",b'), (9, 'c,"oops'), (12, 'd,"z'), (13, 'w",e')]})
        [('f', 3, 5), ('f', 12, 13)]
    """
    out = []
    for file, lines_ in odd.items():
        pending = sorted(lines_)
        i = 0
        while i + 1 < len(pending):
            (first, head), (last, tail) = pending[i], pending[i + 1]
            if last - first < max_lines and _opens(head, quote, sep) and _closes(tail, quote, sep):
                out.append((file, first, last))
                i += 2
            else:
                i += 1
    return sorted(out)


def _join_spans(spark: SparkSession, lines_df: DataFrame, spans: list[tuple[str, int, int]]) -> DataFrame:
    """Each span's lines as one record (joined with LF, numbered by its first line); other lines unchanged."""
    table = F.broadcast(spark.createDataFrame(spans, "_sfile string, _start long, _end long"))
    tagged = lines_df.join(table, (F.col("_file") == F.col("_sfile")) & F.col("_line").between(F.col("_start"), F.col("_end")),
                           "left")
    alone = tagged.where(F.col("_start").isNull()).select("_file", "_line", "_raw", "_error")
    parts = F.array_sort(F.collect_list(F.struct("_line", "_raw", "_error")))
    joined = tagged.where(F.col("_start").isNotNull()).groupBy("_file", "_start").agg(parts.alias("_parts")).select(
        "_file", F.col("_start").alias("_line"), F.array_join(F.col("_parts._raw"), "\n").alias("_raw"),
        F.try_element_at(F.array_compact(F.col("_parts._error")), F.lit(1)).alias("_error"))
    return alone.unionByName(joined)


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


def parse_json(spark: SparkSession, source: Source, text: DataFrame, paths: Sequence[str],
               schema: T.StructType | None = None) -> DataFrame:
    """NDJSON lines -> columns, by ``schema`` or one inferred from the files' records within the depth limit.

    Example:
        >>> parse_json(spark, source, lines(spark, source, paths), paths).columns[:4]     # doctest: +SKIP
        ['_file', '_line', '_raw', '_error']
    """
    depth = source.max_nesting_depth
    if schema is None:
        schema = infer_json_schema(spark, source, paths) if paths else T.StructType([])
    fields = [f for f in schema.fields if f.name != "_corrupt_record"]
    options = {"columnNameOfCorruptRecord": "_corrupt", "mode": "PERMISSIVE", "maxNestingDepth": str(depth)}
    if fields:
        parsed = F.from_json("_raw", T.StructType([*fields, T.StructField("_corrupt", T.StringType())]), options)
        df = text.select("*", parsed.alias("_j"))
        corrupt = F.col("_j._corrupt").isNotNull() | F.col("_j").isNull()
    else:  # no record parsed into a field: every line is too deep or malformed
        df, corrupt = text, F.lit(True)
    err = F.coalesce(F.col("_error"), F.when(corrupt, F.when(too_deep(F.col("_raw"), depth), F.lit("too_deep"))
                                                        .otherwise(F.lit("malformed_json"))))
    return df.select("_file", "_line", "_raw", err.alias("_error"), *[F.col("_j").getField(f.name).alias(f.name) for f in fields])


def too_deep(raw: Column, depth: int) -> Column:
    """Whether a JSON text that failed to parse under the depth limit is well-formed but nested deeper than
    ``depth``: it has more than ``depth`` opening brackets and parses without a limit (into no field: Jackson skips
    unknown values without recursion). Evaluated only for records that failed to parse.

    Example:
        >>> df.select(too_deep(F.col("_raw"), 400))      # doctest: +SKIP
    """
    openers = F.length(raw) - F.length(F.translate(raw, "{[", ""))
    probe = F.from_json(raw, "`__probe` string, `__bad` string",
                        {"columnNameOfCorruptRecord": "__bad", "mode": "PERMISSIVE", "maxNestingDepth": "2147483647"})
    return (openers > depth) & probe.isNotNull() & probe.getField("__bad").isNull()


def infer_json_schema(spark: SparkSession, source: Source, paths: Sequence[str]) -> T.StructType:
    """The files' JSON schema, inferred only from records within the source's nesting depth (deeper ones are
    corrupt records to the inference, which never recurses into them), with types deeper than `SCHEMA_DEPTH`
    kept as JSON text.

    Example:
        >>> infer_json_schema(spark, source, ["/landing/web/a.json"]).fieldNames()[:2]      # doctest: +SKIP
        ['anonymousId', 'context']
    """
    reader = spark.read.option("maxNestingDepth", str(source.max_nesting_depth))
    if not _is_utf8(source):
        # Only for other encodings: with the option set, Spark decodes every line through a Reader (a decoder per
        # record) instead of parsing the bytes.
        reader = reader.option("encoding", source.encoding)
    jschema = reader.json(list(paths))._jdf.schema()
    try:
        text = jschema.json()
    except Exception:  # noqa: BLE001 - Jackson refuses to write JSON over 1,000 levels (a schema of ~333 levels)
        text = None
    # A struct level is three JSON levels (struct, fields, field); deeper schemas are walked level by level.
    if text is not None and _json_depth(text) <= 3 * SCHEMA_DEPTH:
        return T.StructType.fromJson(json.loads(text))
    return _capped(jschema, 0)  # type: ignore[return-value]


def _json_depth(text: str) -> int:
    """Bracket depth of a JSON text (outside strings), without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "}]":
            depth -= 1
    return deepest


def _capped(jtype, level: int) -> T.DataType:  # type: ignore[no-untyped-def]
    """A JVM DataType as a Python one, with structs and arrays below `SCHEMA_DEPTH` levels made strings."""
    name = jtype.typeName()
    if name in ("struct", "array") and level >= SCHEMA_DEPTH:
        return T.StringType()
    if name == "struct":
        return T.StructType([T.StructField(f.name(), _capped(f.dataType(), level + 1)) for f in jtype.fields()])
    if name == "array":
        return T.ArrayType(_capped(jtype.elementType(), level + 1))
    return T._parse_datatype_json_string(jtype.json())


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


def read_files(spark: SparkSession, source: Source, paths: Sequence[str], schema: T.StructType | None = None) -> DataFrame:
    """The raw frame of a batch of files of one source (files gone since listing are skipped, and reported by
    the stage as missing); JSON records are read by ``schema`` when given (the collector's stream knows its
    payload), else by a schema inferred from the files (`infer_json_schema`).

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
        return parse_json(spark, source, text, paths, schema)
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
