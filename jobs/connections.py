"""spark-submit entry point for the connections stage (forward batch-ingested events to the connections' outputs,
retry failed stream deliveries); the same arguments as `cdp run connections`.

    spark-submit jobs/connections.py --as-of 2026-11-01 --conf conf/cdp.yaml
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "connections", *sys.argv[1:]]))
