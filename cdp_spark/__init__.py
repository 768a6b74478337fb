"""cdp-spark: a Customer Data Platform on Spark and Delta Lake.

Example:
    >>> import cdp_spark
    >>> cdp = cdp_spark.open("conf/cdp.yaml")      # doctest: +SKIP
    >>> cdp.profiles().count()                      # doctest: +SKIP
    2000
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from cdp_spark.client import Cdp

__version__ = "0.1.0"


def open(conf: "str | Path" = "conf/cdp.yaml") -> "Cdp":  # noqa: A001 - the package's entry point, as `cdp_spark.open`
    """Load the configuration, start Spark and open the lake: the `cdp_spark.client.Cdp` API.

    Example:
        >>> cdp = open("conf/cdp.yaml")                                # doctest: +SKIP
        >>> cdp.audience("cart_abandoners").preview()["size"]          # doctest: +SKIP
        42
    """
    from cdp_spark.client import Cdp

    return Cdp.open(conf)
