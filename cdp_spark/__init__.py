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
    from typing import Any, Mapping

    from cdp_spark.client import Cdp

__version__ = "0.1.0"


# The public Python API: everything a notebook or script needs is reached from `open` (a `cdp_spark.client.Cdp`).
__all__ = ["open"]


def open(conf: "str | Path" = "conf/cdp.yaml", *, base_dir: "str | Path | None" = None,  # noqa: A001 - the entry point
         **sections: "Mapping[str, Any]") -> "Cdp":
    """Load the configuration, change the given settings of its sections (e.g. ``engine={"cores": 2}``; relative lake
    roots are taken relative to ``base_dir``), start Spark and open the lake: the `cdp_spark.client.Cdp` API.

    Example:
        >>> cdp = open("conf/cdp.yaml")                                # doctest: +SKIP
        >>> cdp.audience("cart_abandoners").preview()["size"]          # doctest: +SKIP
        42
    """
    from cdp_spark.client import Cdp

    return Cdp.open(conf, base_dir=base_dir, **sections)
