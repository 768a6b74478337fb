"""The splittable line reader: exact 1-based line numbers across file splits, checked against Python's own
line split of the same bytes (CRLF, blank lines, no trailing newline, BOM, invalid UTF-8, malformed records)."""
from __future__ import annotations

import json

import pytest

from cdp_spark.ingest.readers import discover, first_lines, lines, read_files, split_bases
from cdp_spark.ingest.sources import Source


def expected_lines(data: bytes, encoding: str = "utf-8") -> dict[int, tuple[str, str | None]]:
    """Independent reference: line number -> (text, reading error) for the non-blank lines."""
    out = {}
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line[:-1] if line.endswith(b"\r") else line
        try:
            text, error = line.decode(encoding), None
        except UnicodeDecodeError:
            text, error = line.decode(encoding, errors="replace"), "invalid_encoding"
        if number == 1:
            text = text.removeprefix("\ufeff")
        if text.strip():
            out[number] = (text, error)
    return out


@pytest.fixture(scope="module")
def tiny_splits(spark):
    """Files split every 256 bytes (and several splits packed per task), so one file spans many tasks."""
    keys = ("spark.sql.files.maxPartitionBytes", "spark.sql.files.openCostInBytes")
    old = {k: spark.conf.get(k, None) for k in keys}
    spark.conf.set(keys[0], "256")
    spark.conf.set(keys[1], "1")
    yield
    for k, v in old.items():
        spark.conf.unset(k) if v is None else spark.conf.set(k, v)


def csv_bytes() -> bytes:
    rows = [f"O{i},2026-10-30T10:00:00Z,{i % 7}\r\n" if i % 3 else f"O{i},2026-10-30T10:00:00Z,{i % 7}\n"
            for i in range(1, 120)]
    rows[40] = "O41,2026-10-30T10:00:00Z\n"                        # malformed (too few fields), mid-file
    rows[60] = "\n"                                                 # blank line: not a record, still counted
    rows[75] = "O76,caf\xe9,1\n"                                    # placeholder, replaced by latin-1 bytes below
    data = ("\ufeffid,time,n\r\n" + "".join(rows)).encode("utf-8")
    data = data.replace("caf\xe9".encode("utf-8"), b"caf\xe9")      # invalid UTF-8 byte in a UTF-8 file
    return data + b"O999,2026-10-30T10:00:00Z,1"                     # no trailing newline


def test_line_numbers_are_exact_across_many_splits(spark, tiny_splits, tmp_path):
    data = csv_bytes()
    (tmp_path / "a.csv").write_bytes(data)
    (tmp_path / "b.csv").write_bytes(b"id,time,n\n\n\nB3,x,1\r\n")
    source = Source(name="t", format="csv", path=str(tmp_path), glob="*.csv")
    files = [f.path for f in discover(spark, source, str(tmp_path))]
    assert spark.read.text(files[0]).rdd.getNumPartitions() > 5  # the test really spans splits

    got = {(r._file, r._line): (r._raw, r._error) for r in lines(spark, source, files).collect()}

    want = {(files[0], n): v for n, v in expected_lines(data).items()}
    want |= {(files[1], n): v for n, v in expected_lines((tmp_path / "b.csv").read_bytes()).items()}
    assert got == want
    assert got[(files[0], 1)] == ("id,time,n", None)              # BOM stripped
    assert got[(files[0], 77)][1] == "invalid_encoding"
    assert got[(files[0], 121)][0] == "O999,2026-10-30T10:00:00Z,1"


def test_csv_records_keep_their_line_and_malformed_one_is_flagged(spark, tiny_splits, tmp_path):
    (tmp_path / "a.csv").write_bytes(csv_bytes())
    source = Source(name="t", format="csv", path=str(tmp_path), glob="*.csv")
    files = [f.path for f in discover(spark, source, str(tmp_path))]
    assert first_lines(spark, source, files) == {files[0]: "id,time,n"}

    rows = {r._line: r for r in read_files(spark, source, files).collect()}

    assert rows[42]._error == "malformed_csv" and rows[42]._raw == "O41,2026-10-30T10:00:00Z"
    assert rows[77]._error == "invalid_encoding"
    bad = {n for n, r in rows.items() if r._error}
    assert bad == {42, 77}
    # Every good record's id matches its line: line n holds O(n-1) (the header is line 1).
    assert all(r.id == f"O{n - 1}" for n, r in rows.items() if n not in bad and n != 121)
    assert 62 not in rows and rows[121].id == "O999"


def test_ndjson_across_splits_flags_the_malformed_line_only(spark, tiny_splits, tmp_path):
    records = [json.dumps({"event": "e", "n": i, "ctx": {"page": f"/p{i}"}}) for i in range(1, 60)]
    records[29] = '{"event": "e", "n": 30, '                           # truncated JSON mid-file
    (tmp_path / "e.json").write_text("\r\n".join(records) + "\r\n")
    source = Source(name="t", format="json", path=str(tmp_path), glob="*.json")
    files = [f.path for f in discover(spark, source, str(tmp_path))]

    rows = {r._line: r for r in read_files(spark, source, files).collect()}

    assert sorted(rows) == list(range(1, 60))
    assert {n for n, r in rows.items() if r._error} == {30} and rows[30]._error == "malformed_json"
    assert all(r.n == n and r.ctx.page == f"/p{n}" for n, r in rows.items() if n != 30)


def test_latin1_source_decodes_and_empty_file_has_no_lines(spark, tmp_path):
    (tmp_path / "l.csv").write_bytes("id,name\n1,Zo\xe9\r\n2,Ren\xe9e\n".encode("latin-1"))
    (tmp_path / "z.csv").write_bytes(b"")
    source = Source(name="t", format="csv", path=str(tmp_path), glob="*.csv", encoding="ISO-8859-1")
    files = [f.path for f in discover(spark, source, str(tmp_path))]

    rows = sorted((r._file.rsplit("/", 1)[1], r._line, r.name, r._error) for r in read_files(spark, source, files).collect())

    assert rows == [("l.csv", 2, "Zo\xe9", None), ("l.csv", 3, "Ren\xe9e", None)]


def test_split_bases_number_each_file_from_one_in_byte_order():
    # Splits arrive in any order; ids are per task (a split's rows are consecutive ids).
    splits = [("f", 128, 4, 8_589_934_592), ("f", 0, 3, 10), ("g", 0, 2, 13), ("f", 64, 5, 0)]
    bases = {(f, start): add for f, start, add in split_bases(splits)}
    assert 10 + bases[("f", 0)] == 1          # lines 1-3
    assert 0 + bases[("f", 64)] == 4          # lines 4-8
    assert 8_589_934_592 + bases[("f", 128)] == 9
    assert 13 + bases[("g", 0)] == 1


def deep_json(levels: int) -> str:
    """A JSON object nested ``levels`` deep (the record itself is level 1)."""
    return '{"type":"track","p":' + '{"a":' * (levels - 2) + "1" + "}" * (levels - 2) + "}"


def test_records_nested_beyond_the_limit_are_too_deep_and_never_reach_inference(spark, tmp_path):
    """900 levels used to fail the whole read (a recursion error naming no file); now that record alone is
    quarantined, a record within the limit is read, and the schema Python sees stays shallow."""
    lines = ['{"type":"track","n":1}', deep_json(900), deep_json(300), '{"type":"track","n":' + "[" * 500,
             '{"type":"track","n":4}']
    (tmp_path / "d.json").write_text("\n".join(lines) + "\n")
    source = Source(name="t", format="json", path=str(tmp_path), glob="*.json")
    files = [f.path for f in discover(spark, source, str(tmp_path))]

    rows = {r._line: r for r in read_files(spark, source, files).collect()}

    assert {n: r._error for n, r in rows.items()} == {1: None, 2: "too_deep", 3: None, 4: "malformed_json", 5: None}
    assert rows[5].n == 4 and rows[3].type == "track"
    assert rows[3].p is not None   # kept: below SCHEMA_DEPTH as structs, deeper as JSON text

    shallow = Source(name="t", format="json", path=str(tmp_path), glob="*.json", max_nesting_depth=10)
    errors = {r._line: r._error for r in read_files(spark, shallow, files).collect()}
    assert errors == {1: None, 2: "too_deep", 3: "too_deep", 4: "malformed_json", 5: None}


def test_compressed_files_are_read_and_unreadable_compressions_never_reach_spark(spark, tmp_path):
    import bz2
    import gzip
    import zlib

    data = b'{"n":1}\n{"n":2}\n'
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(data))
    (tmp_path / "b.json.bz2").write_bytes(bz2.compress(data))
    (tmp_path / "c.json.deflate").write_bytes(zlib.compress(data))
    (tmp_path / "d.json.lz4").write_bytes(b"\x04\x22\x4d\x18" + b"\xff" * 64)   # an lz4 frame: never handed to Spark
    (tmp_path / "notes.txt").write_text("not data")
    source = Source(name="t", format="json", path=str(tmp_path), glob="*.json")

    found = {f.relative: f for f in discover(spark, source, str(tmp_path))}

    assert set(found) == {"a.json.gz", "b.json.bz2", "c.json.deflate", "d.json.lz4"}
    assert found["d.json.lz4"].problem == "unsupported_compression:.lz4"
    readable = [f.path for f in found.values() if f.problem is None]
    rows = sorted((r._file.rsplit("/", 1)[1], r._line, r.n) for r in read_files(spark, source, readable).collect())
    assert rows == [(name, line, line) for name in ("a.json.gz", "b.json.bz2", "c.json.deflate") for line in (1, 2)]


def test_csv_record_with_line_breaks_in_a_quoted_field_is_one_record_at_its_first_line(spark, tiny_splits, tmp_path):
    """RFC 4180: a quoted field may hold line breaks (CRLF or LF). The record keeps the number of its first line;
    the lines after it keep theirs; a stray quote is the one line's problem. Quotes inside a field are doubled
    (RFC 4180: `escape: '"'`; Spark's own default escape is a backslash)."""
    rows = ["id,note,n"] + [f"R{i},plain,{i}" for i in range(2, 40)]
    rows[9] = 'R10,"first line\r\nsecond ""quoted"" line\r\nthird line",10'     # lines 10-12
    rows[20] = 'R21,"unclosed,21'                                                # a stray quote: malformed alone
    rows[29] = 'R30,"a\n\nb",30'                                                 # a blank line inside the field
    data = "\n".join(rows) + "\n"
    (tmp_path / "m.csv").write_text(data)
    source = Source(name="t", format="csv", path=str(tmp_path), glob="*.csv", options={"escape": '"'})
    files = [f.path for f in discover(spark, source, str(tmp_path))]

    got = {r._line: r for r in read_files(spark, source, files).collect()}

    physical = data.split("\n")
    assert physical[9].startswith("R10") and physical[11].startswith("third")   # the record spans lines 10-12
    assert got[10].note == 'first line\nsecond "quoted" line\nthird line' and got[10].n == "10" and got[10]._error is None
    assert 11 not in got and 12 not in got and got[13].id == "R11"
    assert got[23]._error == "malformed_csv" and got[24].id == "R22" and got[24]._error is None
    assert got[32].note == "a\n\nb" and got[35].id == "R31"
    assert all(r._error is None for n, r in got.items() if n != 23)
