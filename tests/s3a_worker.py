"""A delta-spark process on an S3 lake (tests/test_lake_s3a.py): its session is the product's (`cdp_spark.spark.
session`: S3A settings from ``lake.storage_options``, the cached ``delta`` and ``s3`` jar bundles), so the test
exercises what a `cdp` command on ``lake.backend: delta-spark`` with an ``s3a://`` root does.

It reads commands from stdin, one per line, and answers each with one JSON line on stdout:
``write <prefix> <rows>`` appends rows to test.events and merges two profiles; ``delete <sql>`` deletes from
test.events; ``read`` returns both tables' rows; ``quit`` ends it.
"""
from __future__ import annotations

import datetime as dt
import json
import sys

from cdp_spark.config import CdpConfig
from cdp_spark.lake import open_lake
from cdp_spark.spark import session
from tests.lake_fixtures import PROFILES, REGISTRY, events_df

DAY = dt.date(2026, 10, 1)


def rows(df) -> list[list]:  # type: ignore[no-untyped-def]
    return sorted([[str(v) for v in r] for r in df.collect()])


def main(root: str, options: str) -> None:
    config = CdpConfig.model_validate({
        "lake": {"root": root, "backend": "delta-spark", "storage_options": json.loads(options)},
        "engine": {"jars": "required", "jar_bundles": ["delta"], "cores": 1, "shuffle_partitions": 1,
                   "spark_conf": {"spark.driver.memory": "1g"}},
    })
    spark = session(config)
    lake = open_lake(spark, config, REGISTRY)
    print(json.dumps({"ready": lake.backend}), flush=True)
    for line in sys.stdin:
        command, _, rest = line.strip().partition(" ")
        if command == "write":
            prefix, n = rest.split()
            lake.append("test.events", events_df(spark, int(n), DAY, prefix))
            lake.merge("test.profiles", spark.createDataFrame([(f"{prefix}1", "Ann", 1), (f"{prefix}2", "Bo", 2)],
                                                              PROFILES.schema))
            answer = {"version": lake.version("test.events")}
        elif command == "delete":
            answer = {"deleted": lake.delete("test.events", rest).rows}
        elif command == "read":
            answer = {"events": rows(lake.read("test.events")), "profiles": rows(lake.read("test.profiles"))}
        else:
            break
        print(json.dumps(answer), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
