"""spark-submit entry point for the ingest stage; the same arguments as `cdp run ingest`.

    spark-submit jobs/ingest.py --as-of 2026-11-01 --conf conf/cdp.yaml
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "ingest", *sys.argv[1:]]))
