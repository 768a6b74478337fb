"""The lake on object storage: non-table files through `LakeFiles` on a real S3 endpoint (moto's server on
loopback, tests/conftest.py::s3_server), the storage options' validation, and no pathlib on lake locations.
See docs/operations.md, "Deploying on object storage"."""
from __future__ import annotations

import re
from pathlib import Path

import boto3
import pytest

from cdp_spark.config import ConfigError, load_config
from cdp_spark.lake.files import LakeFiles, LakeFilesError, local_path

REPO = Path(__file__).resolve().parents[1]


def _objects(s3_server, root: str) -> list[str]:
    prefix = root.removeprefix(f"s3://{s3_server.bucket}/")
    client = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1",
                          aws_access_key_id="cdp-test", aws_secret_access_key="cdp-test-secret")
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix).get("Contents", []))


def test_lake_files_write_read_list_delete_on_the_s3_server(s3_server, s3_root):
    files = LakeFiles(s3_root, s3_server.storage_options)
    assert files.remote and not files.exists("_system/a.json")
    files.write_text("_system/a.json", '{"a": 1}', private=True)
    files.write_bytes("_system/sub/b.bin", b"\x00\x01")
    assert files.read_text("_system/a.json") == '{"a": 1}'
    assert files.list("_system") == ["a.json"] and files.list("_system", suffix=".bin") == []
    assert sorted(files.walk()) == [("_system/a.json", 8), ("_system/sub/b.bin", 2)]
    prefix = s3_root.removeprefix(f"s3://{s3_server.bucket}/")
    # really on the server, under the lake root, not in a local folder named "s3:"
    assert _objects(s3_server, s3_root) == [f"{prefix}/_system/a.json", f"{prefix}/_system/sub/b.bin"]
    assert not Path("s3:").exists()
    assert files.create("_system/a.json", b"other") is False and files.read_text("_system/a.json") == '{"a": 1}'
    assert files.create("_system/c.txt", b"first") is True
    files.delete("_system/a.json")
    files.delete("_system/never-there")
    assert not files.exists("_system/a.json")
    with pytest.raises(FileNotFoundError):
        files.read_bytes("_system/a.json")


def test_an_unreadable_bucket_is_an_error_naming_the_location_never_an_empty_listing(s3_server):
    files = LakeFiles("s3://no-such-bucket/lake", s3_server.storage_options)
    with pytest.raises(LakeFilesError, match="s3://no-such-bucket/lake.*lake.storage_options"):
        list(files.walk())
    wrong = LakeFiles("s3://cdp-test/lake", {**s3_server.storage_options, "AWS_SECRET_ACCESS_KEY": ""})
    assert wrong.remote  # no key pair: the AWS default chain (here: nothing) is used instead


def test_lake_files_local_writes_are_whole_and_private(tmp_path):
    files = LakeFiles(str(tmp_path / "lake"))
    files.write_text("_system/privacy/salt", "s", private=True)
    assert (tmp_path / "lake/_system/privacy/salt").stat().st_mode & 0o777 == 0o600
    assert files.create("_system/privacy/salt", b"t", private=True) is False
    assert [p.name for p in (tmp_path / "lake/_system/privacy").iterdir()] == ["salt"]  # no temp file left


@pytest.mark.parametrize("options, key", [
    ({"AWS_ACCESS_KEY_ID": "k"}, "lake.storage_options.AWS_SECRET_ACCESS_KEY"),
    ({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}, "lake.storage_options.AWS_ALLOW_HTTP"),
    ({"AWS_ENDPOINT_URL": "127.0.0.1:9000"}, "lake.storage_options.AWS_ENDPOINT_URL"),
    ({"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}, "lake.storage_options.AWS_S3_ALLOW_UNSAFE_RENAME"),
])
def test_an_incomplete_s3_configuration_is_a_config_error_naming_the_key(tmp_path, options, key):
    lines = "".join(f"    {k}: '{v}'\n" for k, v in options.items())
    main = tmp_path / "cdp.yaml"
    main.write_text(f"lake:\n  root: s3://bucket/lake\n  storage_options:\n{lines}")
    with pytest.raises(ConfigError, match=re.escape(key)) as err:
        load_config(main)
    assert str(main) in str(err.value)


def test_a_local_only_file_pointed_at_object_storage_names_its_key():
    with pytest.raises(ValueError, match=r"collector.spool.path: 's3://b/spool' is on object storage"):
        local_path("s3://b/spool", "collector.spool.path")
    assert local_path("file:///srv/spool", "collector.spool.path") == "/srv/spool"


# A lake location is a string, possibly a URI: pathlib would turn "s3://b/lake" into the local path "s3:/b/lake".
LOCATION_WORDS = re.compile(r"\bPath\(\s*[^)]*\b(root|lake_root|lake\.root|lake\.path|uri|location|sealed|keys_file|"
                            r"landing|export|folder\(|keys_path|salt)", re.I)


def test_no_pathlib_on_lake_locations():
    offenders = []
    for py in sorted((REPO / "cdp_spark").rglob("*.py")):
        for n, line in enumerate(py.read_text().splitlines(), 1):
            # allowed: Hadoop's Path (it takes URIs), local_path() (refuses a URI, naming the key), literals
            if LOCATION_WORDS.search(line) and not re.search(r"hadoop\.fs\.Path|Path\(local_path\(|Path\(\"|sqlite:///", line):
                offenders.append(f"{py.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == [], "lake locations go through cdp_spark.lake.files (strings, LakeFiles), not pathlib:\n" + \
        "\n".join(offenders)


# ---- delta-rs on S3: concurrent commits ----
WRITER = """
import sys, json, datetime as dt
from cdp_spark.lake.deltaio import append_rows
from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.lake.registry import default_registry

root, options, writer, commits = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
lake = EmbeddedLake(None, root, default_registry(), storage_options=options)
for i in range(commits):
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    append_rows(lake, "ops.api_audit", [{"at": now, "at_date": now.date(), "org_id": "acme",
                                         "key_id": f"{writer}-{i}-{r}", "action": "read"} for r in range(3)])
"""


def test_concurrent_writers_on_s3_lose_no_commit(s3_server, s3_root):
    """Four processes append to one table on the S3 server at once: every commit's rows are there exactly once,
    and the log has one version per commit (none overwritten by a racing writer)."""
    import json
    import subprocess
    import sys

    from deltalake import DeltaTable

    from cdp_spark.lake.embedded import EmbeddedLake
    from cdp_spark.lake.registry import default_registry

    lake = EmbeddedLake(None, s3_root, default_registry(), storage_options=s3_server.storage_options)
    assert lake.storage_options["conditional_put"] == "etag"  # put-if-absent commits, configured by default
    lake.create_if_missing("ops.api_audit")
    writers, commits = 4, 6
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, s3_root, json.dumps(s3_server.storage_options), f"w{w}",
                               str(commits)], cwd=REPO) for w in range(writers)]
    assert [p.wait(timeout=300) for p in procs] == [0] * writers
    table = DeltaTable(lake.path("ops.api_audit"), storage_options=lake.storage_options)
    keys = table.to_pyarrow_table(columns=["key_id"]).column("key_id").to_pylist()
    expected = {f"w{w}-{i}-{r}" for w in range(writers) for i in range(commits) for r in range(3)}
    assert len(keys) == len(expected) and set(keys) == expected  # each row once
    versions = sorted(h["version"] for h in table.history())
    assert versions == list(range(writers * commits + 1))  # the create, then one version per commit
    appends = [h for h in table.history() if h.get("operation") == "WRITE"]
    assert len(appends) == writers * commits
