"""The deterministic demo retailer: `generate` writes multi-source landing files and a hidden ground truth.

Example:
    >>> from cdp_spark.demo import generate
    >>> summary = generate(spark, "/tmp/demo", people=200, days=10, seed=42, end_date=date(2026, 11, 1))  # doctest: +SKIP
"""
from cdp_spark.demo.generator import DemoSummary, generate

__all__ = ["DemoSummary", "generate"]
