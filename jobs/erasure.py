"""spark-submit entry point for the erasure stage (open erasure requests); the same arguments as `cdp run erasure`.

    spark-submit jobs/erasure.py --as-of 2026-11-01 --conf conf/cdp.yaml
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "erasure", *sys.argv[1:]]))
