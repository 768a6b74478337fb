"""A separate writer process for the concurrency tests: appends batches to test.events in a shared lake."""
from __future__ import annotations

import datetime as dt
import sys

from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.spark import build_session, embedded_conf
from tests.lake_fixtures import REGISTRY, events_df


def main(root: str, prefix: str, batches: int, rows: int, start_file: str) -> None:
    spark = build_session(f"worker-{prefix}", embedded_conf(cores=1, shuffle_partitions=1), None)
    lake = EmbeddedLake(spark, root, REGISTRY)
    frames = [events_df(spark, rows, dt.date(2026, 10, 1), f"{prefix}{b}-") for b in range(batches)]
    open(start_file + "." + prefix, "w").close()
    # Wait for the other writer, so that both really commit at the same time.
    import os
    import time

    while len([f for f in os.listdir(os.path.dirname(start_file)) if f.startswith(os.path.basename(start_file))]) < 2:
        time.sleep(0.05)
    for frame in frames:
        lake.append("test.events", frame)
    print("done", prefix)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
