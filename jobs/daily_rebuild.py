"""spark-submit entry point for the daily pipeline; takes the same arguments as `cdp run daily`.

    spark-submit jobs/daily_rebuild.py --as-of 2026-11-01 --conf conf/cdp.yaml
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "daily", *sys.argv[1:]]))
