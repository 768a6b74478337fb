"""The lake on object storage: non-table files through `LakeFiles` on a real S3 endpoint (moto's server on
loopback, tests/conftest.py::s3_server), the storage options' validation, and no pathlib on lake locations.
See docs/operations.md, "Deploying on object storage"."""
from __future__ import annotations

import re
from pathlib import Path

import boto3
import pytest

from cdp_spark.config import ConfigError, load_config
from cdp_spark.lake.files import LakeFiles, LakeFilesError
from cdp_spark.locations import local_path

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
    # delta-rs 1.x logs that it no longer has a DynamoDB log store and commits without it
    ({"AWS_S3_LOCKING_PROVIDER": "dynamodb"}, "lake.storage_options.AWS_S3_LOCKING_PROVIDER"),
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


@pytest.mark.slow
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


# ---- erasure's verification on object storage ----
def _s3_config(tmp_path, s3_server, root: str, name: str = "cdp.yaml"):
    from cdp_spark.config import load_config

    options = "".join(f"    {k}: '{v}'\n" for k, v in s3_server.storage_options.items())
    main = tmp_path / name
    main.write_text(f"lake:\n  root: {root}\n  backend: embedded\n  storage_options:\n{options}")
    return main, load_config(main)


def test_the_verifier_lists_and_reads_objects_and_verifies_only_when_nothing_is_left(tmp_path, s3_server, s3_root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cdp_spark.lake import open_lake
    from cdp_spark.privacy import requests as R
    from cdp_spark.privacy.erase import verify_request
    from cdp_spark.privacy.matching import Identifier

    _, config = _s3_config(tmp_path, s3_server, s3_root)
    lake = open_lake(None, config)  # embedded: delta-rs only, no Spark needed here
    ann = [Identifier("email", "ann.lee@example.com")]
    rid = R.file_request(config, lake, ann, requested_by="test")
    assert lake.files.exists(f"{R.SEALED_DIR}/{rid}.json")  # sealed in the bucket, not in a local "s3:" folder
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"email": ["ANN.LEE@example.com", "bob@example.com"]}), sink)
    lake.files.write_bytes("silver/people/part-0.parquet", sink.getvalue().to_pybytes())
    lake.files.write_text("landing/crm/day=1/customers.ndjson", '{"email": "ann.lee@example.com"}\n')

    found = verify_request(config, lake, rid)
    assert sorted((o.path.removeprefix(s3_root), o.place) for o in found) == [
        ("/landing/crm/day=1/customers.ndjson", "bytes"), ("/silver/people/part-0.parquet", "email"),
        ("/silver/people/part-0.parquet", "email (statistics)")]
    assert R.latest(lake, rid)["status"] == "pending" and R.read_sealed(lake.files, rid) is not None

    lake.files.delete("silver/people/part-0.parquet")
    lake.files.delete("landing/crm/day=1/customers.ndjson")
    assert verify_request(config, lake, rid) == []
    assert R.latest(lake, rid)["status"] == "verified" and R.read_sealed(lake.files, rid) is None


def test_a_root_the_verifier_cannot_read_is_a_failure_never_a_pass(tmp_path, s3_server, s3_root):
    from cdp_spark.config import load_config
    from cdp_spark.lake import open_lake
    from cdp_spark.privacy import requests as R
    from cdp_spark.privacy.erase import verify_request
    from cdp_spark.privacy.matching import Identifier
    from cdp_spark.privacy.verify import UnreadableRoot, scan

    ann = [Identifier("email", "ann.lee@example.com")]
    with pytest.raises(UnreadableRoot, match="s3://no-such-bucket/lake"):
        scan(["s3://no-such-bucket/lake"], ann, storage_options=s3_server.storage_options)
    with pytest.raises(UnreadableRoot, match="no file at all"):  # an empty lake root: nothing was looked at
        scan([s3_root], ann, required=[s3_root], storage_options=s3_server.storage_options)

    main, _ = _s3_config(tmp_path, s3_server, s3_root)
    # one of the scanned folders is in a bucket that does not exist (a typo): the request must stay open
    main.write_text(main.read_text() + "privacy:\n  export_dir: s3://no-such-bucket/exports\n")
    config = load_config(main)
    lake = open_lake(None, config)
    rid = R.file_request(config, lake, ann, requested_by="test")
    with pytest.raises(UnreadableRoot, match="s3://no-such-bucket/exports"):
        verify_request(config, lake, rid)
    state = R.latest(lake, rid)
    assert state["status"] == "pending" and state["error"] == "UnreadableRoot"
    assert R.read_sealed(lake.files, rid) is not None  # identifiers kept for the next attempt



def test_erasure_rewrites_the_landing_files_of_an_s3_lake(monkeypatch, s3_server, s3_root):
    """The shipped sources land under the lake root (``{demo_dir}/landing/...``): on an S3 lake the files step must
    clean those objects too, or the verifier finds the person there and the request never verifies."""
    from cdp_spark.privacy.erase import export_folder, landing_folders
    from cdp_spark.privacy.files import clean_folders
    from cdp_spark.privacy.matching import Identifier, combined_pattern

    monkeypatch.setenv("CDP_LAKE_ROOT", s3_root)
    config = load_config(REPO / "conf" / "cdp.yaml")
    files = LakeFiles(s3_root, s3_server.storage_options)
    crm = "demo/landing/crm/day=2026-11-01/customers.csv"
    files.write_text(crm, "customer_id,email\n1,ann.lee@example.com\n2,bob@example.com\n")
    ann = [Identifier("email", "ann.lee@example.com")]
    pattern = combined_pattern(ann)

    result = clean_folders([*landing_folders(config), export_folder(config)], re.compile(pattern.encode(), re.I),
                           pattern, storage_options=s3_server.storage_options)
    assert result.rewritten == [files.uri(crm)] and result.records_dropped == 1
    assert files.read_text(crm) == "customer_id,email\n2,bob@example.com\n"

# ---- durable secrets: a fresh process on another machine reuses them ----
SECRETS_RUN = """
import json, sys
from cdp_spark.api.keys import store_for
from cdp_spark.config import load_config
from cdp_spark.privacy.tombstones import salt_for

config = load_config(sys.argv[1])
keys = store_for(config)
out = {"salt": salt_for(config, config.lake.root)}
if sys.argv[2] == "create":
    out["secret"] = keys.create("crm", ["read"])[0]
else:
    key = keys.verify(sys.argv[2])
    out["key"] = key and key.name
print(json.dumps(out))
"""


def test_salt_and_api_keys_live_in_the_lake_and_a_fresh_process_elsewhere_reuses_them(tmp_path, s3_server, s3_root):
    """Two runs from two fresh processes in two different working folders (two ephemeral cluster nodes):
    the second finds the first's tombstone salt and API key in the bucket instead of creating new ones."""
    import json
    import subprocess
    import sys

    main, config = _s3_config(tmp_path, s3_server, s3_root)

    def run(node: str, arg: str) -> dict:
        cwd = tmp_path / node
        cwd.mkdir()
        done = subprocess.run([sys.executable, "-c", SECRETS_RUN, str(main), arg], cwd=cwd, capture_output=True,
                              text=True, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr[-2000:]
        assert list(cwd.iterdir()) == []  # nothing written to the node's local disk
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = run("node-1", "create")
    second = run("node-2", first["secret"])
    assert len(first["salt"]) == 64 and second["salt"] == first["salt"]
    assert second["key"] == "crm"
    files = LakeFiles(s3_root, s3_server.storage_options)
    assert files.exists("_system/privacy/salt") and files.exists("_system/api/keys.json")
    assert first["secret"].split(".", 1)[1] not in files.read_text("_system/api/keys.json")  # hashes only


def test_maintenance_compacts_vacuums_and_checkpoints_a_table_on_s3(tmp_path, s3_server, s3_root):
    import datetime as dt

    from cdp_spark.lake import open_lake
    from cdp_spark.lake.deltaio import append_rows
    from cdp_spark.ops.maintain import checkpoints, maintain

    _, config = _s3_config(tmp_path, s3_server, s3_root)
    lake = open_lake(None, config)
    now = dt.datetime(2026, 12, 1, 12)
    for i in range(5):  # five small files
        append_rows(lake, "ops.api_audit", [{"at": now, "at_date": now.date(), "org_id": "acme", "key_id": f"k{i}",
                                             "action": "read"}])
    assert checkpoints(lake, "ops.api_audit") == []
    result = maintain(lake, config, tables=["ops.api_audit"], retention_hours=0)
    assert result.ok, result.errors
    done = result.tables["ops.api_audit"]
    assert (done["files_before"], done["files_after"], done["rows"]) == (5, 1, 5)
    assert done["vacuumed"] == 5  # the five small files the compaction replaced (retention 0 here)
    assert checkpoints(lake, "ops.api_audit")  # the checkpoint is in the bucket, listed through LakeFiles
    files = [f for f, _ in lake.files.walk("ops/api_audit") if f.endswith(".parquet") and "_delta_log" not in f]
    assert len(files) == 1  # only the compacted file is left on the server
    assert lake.delta_table("ops.api_audit").to_pyarrow_table().num_rows == 5


# ---- the demo pipeline, erasure and maintenance on an S3 lake (embedded backend, Spark through S3A) ----
def _objects_text(files: LakeFiles) -> dict[str, str]:
    """Every object under the root as decoded text (Parquet values via pyarrow, gzip decompressed, else bytes)."""
    import gzip
    import json

    import pyarrow.parquet as pq

    out = {}
    for relative, _ in files.walk():
        data = files.read_bytes(relative)
        if data[:4] == b"PAR1":
            data = json.dumps(pq.read_table(files.open_input(relative)).to_pylist(), default=str).encode()
        elif data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        out[relative] = data.decode("utf-8", errors="ignore").lower()
    return out


def _s3_project(tmp_path, s3_server, s3_root):
    """A `cdp init` project on the S3 lake, set up as docs/operations.md "Deploying on object storage" says (the
    serving store, the collector's spool and MLflow local); (conf/cdp.yaml, `cdp(*args)` running a command of it)."""
    import json
    import os
    import subprocess
    import sys

    project = tmp_path / "project"
    assert subprocess.run([sys.executable, "-m", "cdp_spark.cli", "init", str(project)], cwd=tmp_path,
                          capture_output=True, timeout=120).returncode == 0
    local = tmp_path / "local"
    options = "".join(f"    {k}: '{v}'\n" for k, v in s3_server.storage_options.items())
    main = project / "conf" / "cdp.yaml"
    main.write_text(main.read_text().replace("  storage_options: {}\n", f"  storage_options:\n{options}")
                    .replace("  spark_conf: {}\n", "  spark_conf:\n    spark.driver.memory: 2g\n"))
    for name, old, new in [("api.yaml", '"{lake_root}/_system/serving"', f'"{local}/serving"'),
                           ("collector.yaml", '"{lake_root}/landing/collector"', f'"{local}/spool"'),
                           ("scores.yaml", "tracking_uri: null", f'tracking_uri: "sqlite:///{local}/mlflow.db"')]:
        path = project / "conf" / name
        assert old in path.read_text(), (name, old)
        path.write_text(path.read_text().replace(old, new, 1))
    env = {**os.environ, "CDP_LAKE_ROOT": s3_root, "CDP_LAKE_BACKEND": "embedded", "PYTHONPATH": str(REPO)}

    def cdp(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "cdp_spark.cli", *args, "--conf", str(main), "--json"],
                              cwd=project, env=env, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
        return json.loads(done.stdout) if done.stdout.strip() else {}

    return main, cdp


@pytest.mark.slow
def test_the_collectors_stream_lands_events_in_bronze_on_an_s3_lake(tmp_path, monkeypatch, s3_server, s3_root):
    """The collector's spool is a local folder (a URI there is refused); `cdp collect stream` lands what it
    collected in bronze on S3, with the stream's checkpoint in the bucket (through S3A)."""
    from deltalake import DeltaTable
    from fastapi.testclient import TestClient

    from cdp_spark.collect.app import create_app

    main, cdp = _s3_project(tmp_path, s3_server, s3_root)
    monkeypatch.setenv("CDP_LAKE_ROOT", s3_root)
    collector = load_config(main).collector
    batch = [{"type": "identify", "messageId": "s3-i1", "userId": "s3-u1", "traits": {"email": "ann@example.com"},
              "timestamp": "2026-11-01T10:00:00Z"},
             {"type": "track", "messageId": "s3-m1", "event": "Product Viewed", "userId": "s3-u1",
              "timestamp": "2026-11-01T10:00:01Z", "properties": {"product_id": "p1"}}]
    with TestClient(create_app(collector, collector.landing(s3_root))) as client:  # closing it rotates the spool
        sent = client.post("/v1/batch", json={"batch": batch, "sentAt": "2026-11-01T10:00:05Z"},
                           auth=("demo-web-write-key", ""))
        assert sent.status_code == 200, sent.text
    assert not collector.landing(s3_root).startswith("s3://")

    web = cdp("collect", "stream", "--available-now")["sources"]["web"]
    assert (web["read_lines"], web["accepted"], web["quarantined"]) == (2, 2, 0)
    bronze = DeltaTable(f"{s3_root}/bronze/events", storage_options=s3_server.storage_options)
    assert sorted(bronze.to_pyarrow_table(columns=["event_id"]).column("event_id").to_pylist()) == ["s3-i1", "s3-m1"]
    assert any(f.startswith("_system/checkpoints/") for f, _ in LakeFiles(s3_root, s3_server.storage_options).walk())
    assert cdp("collect", "stream", "--available-now")["sources"]["web"]["accepted"] == 0  # the checkpoint holds


@pytest.mark.slow
def test_the_demo_pipeline_erasure_and_maintenance_run_on_an_s3_lake(tmp_path, monkeypatch, s3_server, s3_root):
    """`cdp demo` on `lake.root: s3://...` (the local S3 server), configured as docs/operations.md "Deploying on
    object storage" says; the Profile API serves the person with a key kept in the bucket; then `cdp erase --now`
    verifies, leaves zero bytes of the person in the bucket and the API answers 404; `cdp maintain` succeeds there."""
    import hashlib

    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    from cdp_spark.lake.files import filesystem

    main, cdp = _s3_project(tmp_path, s3_server, s3_root)

    cdp("demo", "--people", "40", "--days", "3")
    files = LakeFiles(s3_root, s3_server.storage_options)
    fs, truth = filesystem(f"{s3_root}-demo-truth/identities", s3_server.storage_options)
    identities = ds.dataset(truth, filesystem=fs).to_table().to_pylist()
    graph = set(DeltaTable(f"{s3_root}/gold/id_graph", storage_options=s3_server.storage_options)
                .to_pyarrow_table(columns=["value"]).column("value").to_pylist())
    email = next(r["value"] for r in identities if r["id_type"] == "email" and r["value"] in graph)
    needles = [email.lower(), hashlib.sha256(email.lower().encode()).hexdigest()]
    assert any(n in text for text in _objects_text(files).values() for n in needles)  # in the bucket before

    # The Profile API: its key is hashed into the bucket by one process and verified by another (this one).
    secret = cdp("api", "keys", "create", "crm", "--scopes", "read,pii")["key"]
    assert files.exists("_system/api/keys.json")
    monkeypatch.setenv("CDP_LAKE_ROOT", s3_root)
    monkeypatch.setenv("CDP_LAKE_BACKEND", "embedded")

    def profile_status() -> int:
        from fastapi.testclient import TestClient

        from cdp_spark.api.app import create_app

        with TestClient(create_app(load_config(main))) as client:
            return client.get(f"/v1/profiles/email/{email}", headers={"Authorization": f"Bearer {secret}"}).status_code

    assert profile_status() == 200

    erased = cdp("erase", "--id", f"email:{email.upper()}", "--now")
    assert (erased["status"], erased["occurrences"]) == ("verified", 0) and erased["profiles"] >= 1
    left = sorted(f for f, text in _objects_text(files).items() if any(n in text for n in needles))
    assert left == []
    assert cdp("erase", "verify", erased["request_id"], "--id", f"email:{email}")["occurrences"] == 0
    assert profile_status() == 404
    assert not (main.parents[1] / "s3:").exists() and not (tmp_path / "s3:").exists()  # nothing written locally

    result = cdp("maintain")
    assert result, "cdp maintain --json printed its result"
