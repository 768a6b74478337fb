"""spark-submit entry point for the content stage; the same arguments as `cdp run content`.

    spark-submit jobs/content.py --as-of 2026-11-01 --conf conf/cdp.yaml
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "content", *sys.argv[1:]]))
