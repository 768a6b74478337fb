"""spark-submit entry point for the collector's stream into bronze; the same arguments as `cdp stream` (alias of `cdp collect stream`).

    spark-submit jobs/ingest_stream.py --conf conf/cdp.yaml                  # runs until stopped
    spark-submit jobs/ingest_stream.py --available-now --conf conf/cdp.yaml  # drain the landing zone, then exit
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["collect", "stream", *sys.argv[1:]]))
