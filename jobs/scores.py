"""spark-submit entry point for the scores stage; the same arguments as `cdp run scores`.

    spark-submit jobs/scores.py --as-of 2026-11-01 --conf conf/cdp.yaml
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "scores", *sys.argv[1:]]))
