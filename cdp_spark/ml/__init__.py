"""Customer scores: RFM segmentation and CLV (BG/NBD + Gamma-Gamma).

- :mod:`cdp_spark.ml.rfm`: RFM measures, tie-safe quantile scores and rule-based segments (Spark).
- :mod:`cdp_spark.ml.clv`: CLV summaries, fitting and distributed scoring (Spark + driver-side fit).
- :mod:`cdp_spark.ml.btyd`: the pure numpy/scipy model math used by both the driver and Spark workers.

Jobs and notebooks call the same functions with DataFrames and plain parameters.

Example:
    >>> from cdp_spark.ml import rfm, clv   # doctest: +SKIP
    >>> scores = rfm.rfm_scores(rfm.rfm_measures(purchases, as_of=date(2024, 6, 30)))   # doctest: +SKIP
"""
