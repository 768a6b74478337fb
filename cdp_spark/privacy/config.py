"""Typed configuration of erasure and tombstones (`privacy` section of `conf/api.yaml`'s sibling, the `privacy`
domain).

Example:
    >>> PrivacyConfig().suppress_tombstoned
    True
"""
from __future__ import annotations

from pydantic import Field, SecretStr

from cdp_spark.config_base import Strict


class PrivacyConfig(Strict):
    """Erasure (right to be forgotten) and tombstones."""

    tombstone_salt: SecretStr | None = Field(
        None, description="salt of tombstone hashes (a secret: use ${ENV_VAR}); default: a random salt created once "
                          "in <lake.root>/_system/privacy/salt")
    suppress_tombstoned: bool = Field(
        True, description="ingestion drops records carrying a tombstoned identifier (see privacy.tombstones.suppressed)")
    landing_dirs: list[str] = Field(
        default_factory=list, description="extra folders of landing files to clean (file sources' folders and the "
                                          "collector spool are always cleaned); may use {lake_root} and {demo_dir}")
    export_dir: str = Field("{lake_root}/exports", description="export staging cleaned by erasure")
    keep_request_identifiers_hours: int = Field(
        72, ge=0, description="an open request keeps its clear identifiers (0600 file under _system/erasure) so it can "
                              "be verified; they are removed when verification passes or after this long")
