"""Tombstones: salted hashes of erased identifiers, and the ingest-side suppression of data that re-appears.

Ingest (`cdp_spark.ingest.stage.process_batch`, shared by the file stage and the collector's stream) asks
`suppression` for a flag right after normalisation: a record carrying a tombstoned identifier is neither written
to bronze nor quarantined (its values are written nowhere), only counted as ``suppressed``, so that
``read = accepted + quarantined + suppressed`` still reconciles.

The salt is the org's secret (``privacy.tombstone_salt``, or a random one created once under
``<lake.root>/_system/privacy/salt``): without it a tombstone cannot be tested against a guessed email.

Example:
    >>> token("email", "a@x.com", "s") == token("email", "a@x.com", "s") != token("email", "a@x.com", "t")
    True
"""
from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from cdp_spark.lake.files import LakeFiles

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame, SparkSession

    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake


def token(id_type: str, value: str, salt: str) -> str:
    """sha-256 hex of salt + id_type + ':' + normalised value (the caller normalises)."""
    return hashlib.sha256(f"{salt}{id_type}:{value}".encode("utf-8")).hexdigest()


SALT_FILE = "_system/privacy/salt"


def salt_for(config: "CdpConfig", lake_root: str) -> str:
    """The org's tombstone salt: from config, else the one stored in the lake (created once on first use, 0600
    on local disk), read through `LakeFiles` so a lake on object storage keeps it across ephemeral clusters.

    Example:
        >>> salt_for(config, lake.root) == salt_for(config, lake.root)   # doctest: +SKIP
        True
    """
    privacy = getattr(config, "privacy", None)
    if privacy is not None and privacy.tombstone_salt is not None:
        return privacy.tombstone_salt.get_secret_value()
    files = LakeFiles(lake_root, getattr(getattr(config, "lake", None), "storage_options", None))
    files.create(SALT_FILE, secrets.token_hex(32).encode("ascii"), private=True)  # a racing process keeps the first
    salt = files.read_text(SALT_FILE).strip()
    if not salt:
        raise ValueError(f"{files.uri(SALT_FILE)} is empty: restore the org's tombstone salt (or set "
                         f"privacy.tombstone_salt); a new salt would stop suppressing every erased person")
    return salt


def _hashes_by_type(tombstones: "DataFrame") -> dict[str, list[str]]:
    # Tombstones are few (one per erased identifier): collected, then tested in place in each record.
    out: dict[str, set[str]] = {}
    for r in tombstones.select("id_type", "value_hash").distinct().collect():
        out.setdefault(r.id_type, set()).add(r.value_hash)
    return {t: sorted(h) for t, h in sorted(out.items())}


def tombstoned(identifiers: "Column", hashes: dict[str, list[str]], salt: str) -> "Column":
    """True when a record's ``identifiers`` map (id type -> normalised value) holds a tombstoned identifier.

    One ``element_at`` per tombstoned id type (no higher-order function, so the projection stays code-generated).

    Example:
        >>> tombstoned(F.col("identifiers"), {"email": [token("email", "a@x.com", "s")]}, "s")   # doctest: +SKIP
    """
    from pyspark.sql import functions as F

    hit = F.lit(False)
    for id_type, values in hashes.items():
        digest = F.sha2(F.concat(F.lit(f"{salt}{id_type}:"), F.try_element_at(identifiers, F.lit(id_type))), 256)
        hit = hit | F.coalesce(digest.isin(values), F.lit(False))
    return hit


def suppressed(df: "DataFrame", tombstones: "DataFrame", salt: str) -> "DataFrame":
    """``df`` without the records carrying a tombstoned identifier (pure transform; ``df`` needs an
    ``identifiers`` map of id type -> normalised value, ``tombstones`` needs id_type, value_hash).

    Example:
        >>> kept = suppressed(records, lake.read("ops.tombstones"), salt_for(config, lake.root))  # doctest: +SKIP
    """
    from pyspark.sql import functions as F

    hashes = _hashes_by_type(tombstones)
    if not hashes:
        return df
    return df.where(~tombstoned(F.col("identifiers"), hashes, salt))


def suppression(spark: "SparkSession", config: "CdpConfig", lake: "Lake", identifiers: "Column") -> "Column | None":
    """Ingest's hook: the "carries a tombstoned identifier" flag over normalised ``identifiers``, or None when
    ``privacy.suppress_tombstoned`` is off or nothing was erased yet (then no salt is created either).

    Example:
        >>> flag = suppression(spark, config, lake, chain.identifiers_column(checked, config.catalogue))  # doctest: +SKIP
    """
    privacy = getattr(config, "privacy", None)
    if privacy is None or not privacy.suppress_tombstoned or not lake.exists("ops.tombstones"):
        return None
    hashes = _hashes_by_type(load_tombstones(spark, lake))
    if not hashes:
        return None
    return tombstoned(identifiers, hashes, salt_for(config, lake.root))


def load_tombstones(spark: "SparkSession", lake: "Lake") -> "DataFrame":
    """``ops.tombstones`` (empty when no erasure has run yet)."""
    if lake.exists("ops.tombstones"):
        return lake.read("ops.tombstones")
    return spark.createDataFrame([], "id_type string, value_hash string, request_id string, erased_at timestamp")
