"""spark-submit entry point for the profiles stage; the same arguments as `cdp run profiles`.

    spark-submit jobs/profiles.py --as-of 2026-11-01 --conf conf/cdp.yaml
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "profiles", *sys.argv[1:]]))
