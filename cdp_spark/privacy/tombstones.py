"""Tombstones: salted hashes of erased identifiers, and the ingest-side suppression of data that re-appears.

The salt is the org's secret (``privacy.tombstone_salt``, or a random one created once under
``<lake.root>/_system/privacy/salt``): without it a tombstone cannot be tested against a guessed email.

Example:
    >>> token("email", "a@x.com", "s") == token("email", "a@x.com", "s") != token("email", "a@x.com", "t")
    True
"""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake


def token(id_type: str, value: str, salt: str) -> str:
    """sha-256 hex of salt + id_type + ':' + normalised value (the caller normalises)."""
    return hashlib.sha256(f"{salt}{id_type}:{value}".encode("utf-8")).hexdigest()


def salt_for(config: "CdpConfig", lake_root: str) -> str:
    """The org's tombstone salt: from config, else the one stored in the lake (created on first use, 0600)."""
    privacy = getattr(config, "privacy", None)
    if privacy is not None and privacy.tombstone_salt is not None:
        return privacy.tombstone_salt.get_secret_value()
    path = Path(lake_root) / "_system" / "privacy" / "salt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".salt.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic create-if-absent: a racing process keeps the first salt
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def suppressed(df: "DataFrame", tombstones: "DataFrame", salt: str) -> "DataFrame":
    """``df`` without the records carrying a tombstoned identifier (pure transform; ``df`` needs an
    ``identifiers`` map of id type -> normalised value, ``tombstones`` needs id_type, value_hash).

    Hook it into ingestion right after normalisation (before bronze writes) when
    ``privacy.suppress_tombstoned`` is on.

    Example:
        >>> kept = suppressed(records, lake.read("ops.tombstones"), salt_for(config, lake.root))  # doctest: +SKIP
    """
    from pyspark.sql import functions as F

    # Tombstones are few (one per erased identifier): collect them and test each record's identifiers in place.
    hashes = sorted({r.value_hash for r in tombstones.select("value_hash").distinct().collect()})
    if not hashes:
        return df
    hit = F.exists(F.map_entries("identifiers"), lambda e: F.sha2(
        F.concat(F.lit(salt), e["key"], F.lit(":"), F.coalesce(e["value"], F.lit(""))), 256).isin(hashes))
    return df.where(~F.coalesce(hit, F.lit(False)))


def load_tombstones(spark: "SparkSession", lake: "Lake") -> "DataFrame":
    """``ops.tombstones`` (empty when no erasure has run yet)."""
    if lake.exists("ops.tombstones"):
        return lake.read("ops.tombstones")
    return spark.createDataFrame([], "id_type string, value_hash string, request_id string, erased_at timestamp")
