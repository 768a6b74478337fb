"""spark-submit entry point for the audiences stage; the same arguments as `cdp run audiences`.

    spark-submit jobs/audiences.py --as-of 2026-11-01 --conf conf/cdp.yaml
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "audiences", *sys.argv[1:]]))
