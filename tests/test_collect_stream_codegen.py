"""The stream's micro-batches reuse Spark's compiled code: the receipt time (received_at) enters the plan as data,
not as a per-batch literal that Spark would inline into newly generated Java code."""
from __future__ import annotations

import datetime as dt

import pytest

from cdp_spark.collect.stream import BatchWriter, checkpoint_path, source_config
from cdp_spark.ingest import readers
from cdp_spark.ingest.tables import EVENTS, INGESTED_FILES
from cdp_spark.lake import Txn
from tests.test_collect_stream import env, post, track  # noqa: F401 - the env fixture

pytestmark = pytest.mark.slow  # several streaming micro-batches

# One receipt time per micro-batch, in the same hour, and before the collector's own receipt (now): the event times
# the collector stamps must be plausible for them (at most a day ahead).
_HOUR = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0)
RECEIVED = [_HOUR + dt.timedelta(seconds=s) for s in (1, 3, 5)]


def compilations(spark) -> int:
    return int(spark._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME().getCount())


def test_micro_batches_reuse_compiled_code_and_stamp_their_receipt_time(spark, env):  # noqa: F811
    config, lake = env
    for b in range(3):   # one landed file per collector run: the same shape of events in each
        post(config, [[track(f"m{b}-{k}", user=f"u{k}") for k in range(3)] + [{"type": "track", "userId": "u9"}]])
    source = source_config(config, "web")
    files = [f.path for f in readers.discover(spark, source, f"{config.collector.landing(config.lake.root)}/web")]
    assert len(files) == 3
    for spec in (EVENTS.name, INGESTED_FILES.name):
        lake.create_if_missing(spec)
    clock = iter(RECEIVED)
    writer = BatchWriter(spark, config, lake, source, checkpoint_path(config, "web"), clock=lambda: next(clock))

    compiled = []
    for b, f in enumerate(files):
        before = compilations(spark)
        stats = writer.process(readers.read_files(spark, source, [f]), Txn("collect.web.codegen", b), f"run-{b}", [f])
        compiled.append(compilations(spark) - before)
        assert (stats["read_lines"], stats["accepted"], stats["quarantined"], stats["reconciled"]) == (4, 3, 1, True)
    # The third micro-batch differs from the second only in its data (files, ids, receipt time): no new code.
    assert compiled[2] == 0, compiled

    # Every row carries the receipt time of the micro-batch that read its file (files[b] was micro-batch b).
    rows = lake.read("bronze.events").collect()
    assert sorted(r.event_id for r in rows) == sorted(f"m{b}-{k}" for b in range(3) for k in range(3))
    assert {(r.ingest_file, r.received_at) for r in rows} == set(zip(files, RECEIVED))
    quarantined = lake.read("bronze.quarantine").select("ingest_file", "run_id", "quarantined_at").collect()
    assert sorted(tuple(r) for r in quarantined) == sorted(zip(files, [f"run-{b}" for b in range(3)], RECEIVED))
