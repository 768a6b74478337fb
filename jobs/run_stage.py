"""spark-submit entry point for one stage; the same arguments as `cdp run <stage>`.

    spark-submit jobs/run_stage.py identity --as-of 2026-11-01 --conf conf/cdp.yaml
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
