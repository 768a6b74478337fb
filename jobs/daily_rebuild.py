"""spark-submit entry point for the daily pipeline; takes the same arguments as `cdp run daily`.

    spark-submit jobs/daily_rebuild.py --as-of 2026-11-01 --conf conf/cdp.yaml
    spark-submit jobs/daily_rebuild.py --as-of 2026-11-01 --resume --log-json --conf conf/cdp.yaml

`--resume` skips the stages that the last run for that as-of finished; a second run while one holds the lake's
pipeline lease exits 1 with a message naming the holder.
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "daily", *sys.argv[1:]]))
