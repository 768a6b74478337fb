"""spark-submit entry point for table maintenance; the same arguments as `cdp maintain`.

    spark-submit jobs/maintain.py --conf conf/cdp.yaml
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["maintain", *sys.argv[1:]]))
