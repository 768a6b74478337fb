"""The pipeline lease: one holder at a time across processes, a clear refusal, takeover of dead or expired holders.

No Spark here: leases live in a tiny Delta table written by delta-rs, so these tests use a metadata-only lake.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.lake.registry import default_registry
from cdp_spark.ops.lock import Lease, LeaseHeld, LeaseLost, lease_state, read_leases

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

HOLDER = """
import sys, time
from datetime import timedelta
from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.lake.registry import default_registry
from cdp_spark.ops.lock import Lease, LeaseHeld
lake = EmbeddedLake(None, sys.argv[1], default_registry())
go = sys.argv[3]
open(go + "." + sys.argv[2], "w").close()  # ready at the start line
while not __import__("os").path.exists(go):
    time.sleep(0.01)
try:
    Lease(lake, run_id=sys.argv[2], job="daily", ttl=timedelta(minutes=5)).acquire()
except LeaseHeld:
    print("refused", flush=True)
    sys.exit(3)
print("acquired", flush=True)
time.sleep(float(sys.argv[4]))
"""


def lake_at(path: Path) -> EmbeddedLake:
    return EmbeddedLake(None, str(path), default_registry())  # type: ignore[arg-type]


def holder(root: Path, run_id: str, go: Path, hold_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(root), run_id, str(go), str(hold_s)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_processes_racing_for_a_new_lease_table_exactly_one_wins(tmp_path):
    # Five racers on a lake without the lease table: they race to create and seed it as well as for the lease.
    root, go = tmp_path / "lake", tmp_path / "go"
    procs = [holder(root, f"run-{i}", go, 2.0) for i in range(5)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.*"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    results = [p.communicate(timeout=120) for p in procs]
    outcomes = sorted(out.strip() for out, _ in results)
    assert outcomes == ["acquired"] + ["refused"] * 4, [e[-1500:] for _, e in results]


def test_second_run_is_refused_with_a_clear_message_and_a_killed_holder_is_taken_over(tmp_path):
    root, go = tmp_path / "lake", tmp_path / "go"
    go.touch()
    proc = holder(root, "daily-first", go, 120)
    assert proc.stdout.readline().strip() == "acquired"
    lake = lake_at(root)
    with pytest.raises(LeaseHeld) as refused:
        Lease(lake, run_id="daily-second", job="daily").acquire()
    message = str(refused.value)
    assert "daily-first" in message and f"pid {proc.pid}" in message and "expires" in message

    # The CLI refuses before starting Spark, with the same message and exit code 1 (spark-submit entry point).
    conf_env = {**ENV, "CDP_LAKE_ROOT": str(root)}
    cli = subprocess.run([sys.executable, "jobs/daily_rebuild.py", "--as-of", "2026-11-01", "--resume",
                          "--conf", "conf/cdp.yaml"], cwd=ROOT, env=conf_env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1, cli.stderr[-2000:]
    assert "not started" in cli.stderr and "daily-first" in cli.stderr

    proc.send_signal(signal.SIGKILL)  # a crash: no release
    proc.wait(30)
    [row] = [r for r in read_leases(lake) if r["name"] == "pipeline"]
    assert row["holder"] == "daily-first" and row["state"] == "dead"
    taken = Lease(lake, run_id="daily-third", job="daily", heartbeat=False).acquire()
    assert taken.took_over["holder"] == "daily-first" and taken.took_over["state"] == "dead"
    taken.release()
    assert [r["state"] for r in read_leases(lake)] == ["free"]


def test_expired_lease_of_another_host_is_taken_over_and_the_old_holder_loses_it(tmp_path):
    lake = lake_at(tmp_path / "lake")
    old = Lease(lake, run_id="daily-old", job="daily", ttl=dt.timedelta(milliseconds=300), heartbeat=False).acquire()
    with pytest.raises(LeaseHeld):
        Lease(lake, run_id="daily-new", job="daily", heartbeat=False).acquire()
    time.sleep(0.4)
    [row] = read_leases(lake)
    assert row["state"] == "expired"
    assert lease_state(row, host="another-host") == "expired"  # the pid check only applies on the holder's host
    new = Lease(lake, run_id="daily-new", job="daily", heartbeat=False).acquire()
    assert new.took_over["holder"] == "daily-old"
    with pytest.raises(LeaseLost):
        old.renew()
    old.release()  # releasing a lease that is no longer ours leaves the new holder alone
    assert read_leases(lake)[0]["holder"] == "daily-new" and read_leases(lake)[0]["state"] == "held"
    new.release()


def test_heartbeat_renews_the_lease_until_release(tmp_path):
    lake = lake_at(tmp_path / "lake")
    ttl = dt.timedelta(seconds=3)
    with Lease(lake, run_id="daily-long", job="daily", ttl=ttl):
        first = read_leases(lake)[0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and read_leases(lake)[0]["heartbeat_at"] == first["heartbeat_at"]:
            time.sleep(0.2)
        renewed = read_leases(lake)[0]
        assert renewed["holder"] == "daily-long" and renewed["acquired_at"] == first["acquired_at"]
        assert renewed["heartbeat_at"] > first["heartbeat_at"]
        assert renewed["expires_at"] == renewed["heartbeat_at"] + ttl > first["expires_at"]
    released = read_leases(lake)[0]
    assert released["state"] == "free" and released["released_at"] is not None


def test_leases_with_different_names_do_not_block_each_other(tmp_path):
    lake = lake_at(tmp_path / "lake")
    with Lease(lake, "pipeline", run_id="a", job="daily", heartbeat=False), \
            Lease(lake, "collector", run_id="b", job="collect_stream", heartbeat=False):
        assert {r["name"]: r["holder"] for r in read_leases(lake) if r["state"] == "held"} == {"pipeline": "a",
                                                                                              "collector": "b"}
