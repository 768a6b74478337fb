"""spark-submit entry point for the activation stage; the same arguments as `cdp run activation`.

    spark-submit jobs/activation.py --as-of 2026-11-01 --conf conf/cdp.yaml
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "activation", *sys.argv[1:]]))
