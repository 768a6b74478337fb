"""spark-submit entry point for the serve stage (rebuild the Profile API's serving store); the same arguments as
`cdp run serve`.

    spark-submit jobs/serve.py --as-of 2026-11-01 --conf conf/cdp.yaml
"""
import sys

from cdp_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "serve", *sys.argv[1:]]))
