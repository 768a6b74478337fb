"""The deterministic demo retailer: `generate` writes multi-source landing files and a hidden ground truth;
`grow` adds the next days of the same world.

Example:
    >>> from cdp_spark.demo import generate
    >>> summary = generate(spark, "/tmp/demo", people=200, days=10, seed=42, end_date=date(2026, 11, 1))  # doctest: +SKIP
    >>> growth = grow(spark, "/tmp/demo", people=200, days=10, seed=42, end_date=date(2026, 11, 1), next_days=1)  # doctest: +SKIP
"""
from cdp_spark.demo.generator import DemoSummary, Growth, generate, grow, landed_end

__all__ = ["DemoSummary", "Growth", "generate", "grow", "landed_end"]
