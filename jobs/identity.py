"""spark-submit entry point for the identity stage; the same arguments as `cdp run identity`.

    spark-submit jobs/identity.py --as-of 2026-11-01 --conf conf/cdp.yaml
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "identity", *sys.argv[1:]]))
