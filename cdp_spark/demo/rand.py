"""Hash-based pseudo-random Spark columns: a pure function of (seed, salt, keys), never of partitioning.

``F.rand(seed)`` depends on the partition a row lands in, so the same seed could give different data on another
machine or with another number of cores. Hashing the row's own keys with xxhash64 does not: every draw below is
reproducible anywhere, and each ``salt`` gives an independent stream.

Example:
    >>> u = uniform(42, "visit", F.col("person"))          # doctest: +SKIP
    >>> df.select(poisson(u, F.lit(0.5), 4))                # doctest: +SKIP
"""
from __future__ import annotations

import math
from typing import Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F

_BITS = 53  # a double holds 53 bits of mantissa: uniform values on a 2^-53 grid


def uniform(seed: int, salt: str, *keys: Column) -> Column:
    """A uniform double in [0, 1) from hashing (seed, salt, keys).

    Example:
        >>> uniform(7, "coin", F.col("id"))                 # doctest: +SKIP
    """
    h = F.xxhash64(F.lit(int(seed)).cast("long"), F.lit(salt), *keys)
    return h.bitwiseAND(F.lit((1 << _BITS) - 1)).cast("double") / float(1 << _BITS)


def pick(u: Column, values: Sequence[object]) -> Column:
    """One of ``values`` with equal probability, chosen by the uniform ``u``.

    Example:
        >>> pick(uniform(1, "name", F.col("id")), ["Ann", "Bob"])   # doctest: +SKIP
    """
    arr = F.array(*[F.lit(v) for v in values])
    return F.element_at(arr, (F.floor(u * len(values)) + 1).cast("int"))


def weighted(u: Column, choices: Sequence[tuple[object, float]]) -> Column:
    """A value by weight (weights need not sum to 1).

    Example:
        >>> weighted(u, [("GB", 5), ("FR", 1)])             # doctest: +SKIP
    """
    total = float(sum(w for _, w in choices))
    out: Column | None = None
    acc = 0.0
    for value, w in choices[:-1]:
        acc += w / total
        out = (F.when(u < acc, F.lit(value)) if out is None else out.when(u < acc, F.lit(value)))
    last = F.lit(choices[-1][0])
    return last if out is None else out.otherwise(last)


def normal(u1: Column, u2: Column) -> Column:
    """A standard normal draw from two independent uniforms (Box-Muller)."""
    return F.sqrt(-2.0 * F.log(1.0 - u1)) * F.cos(2.0 * math.pi * u2)


def lognormal(u1: Column, u2: Column, median: float, sigma: float) -> Column:
    """A log-normal draw: skewed, positive rates such as visits or purchases per day."""
    return F.lit(median) * F.exp(F.lit(sigma) * normal(u1, u2))


def poisson(u: Column, lam: Column, cap: int) -> Column:
    """A Poisson(lam) count by inverting the CDF, truncated at ``cap`` (exact for the small rates used here).

    Example:
        >>> poisson(uniform(1, "n", F.col("id")), F.lit(0.3), 5)    # doctest: +SKIP
    """
    p = F.exp(-lam)
    cdf = p
    count = F.lit(0)
    for k in range(1, cap + 1):
        count = count + (u >= cdf).cast("int")
        p = p * lam / k
        cdf = cdf + p
    return count


def _hex16(seed: int, salt: str, *keys: Column) -> Column:
    return F.lpad(F.lower(F.hex(F.xxhash64(F.lit(int(seed)).cast("long"), F.lit(salt), *keys))), 16, "0")


def uuid(seed: int, salt: str, *keys: Column) -> Column:
    """A UUID-shaped lower-case hex string (8-4-4-4-12) from hashes: stable ids for cookies, devices, messages.

    Example:
        >>> uuid(42, "cookie", F.col("browser"), F.col("generation"))   # doctest: +SKIP
    """
    h = F.concat(_hex16(seed, salt + "#a", *keys), _hex16(seed, salt + "#b", *keys))
    parts = [F.substring(h, s, n) for s, n in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))]
    return F.concat_ws("-", *parts)


def hex_id(seed: int, salt: str, *keys: Column) -> Column:
    """16 upper-case hex characters (64 bits): order ids and the like."""
    return F.upper(_hex16(seed, salt, *keys))
