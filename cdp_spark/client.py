"""The Python API for notebooks and scripts: one object over a configured lake (`cdp_spark.open`).

Example:
    >>> import cdp_spark
    >>> cdp = cdp_spark.open("conf/cdp.yaml")                           # doctest: +SKIP
    >>> cdp.profiles().select("profile_id", "traits.country").show(3)  # doctest: +SKIP
    >>> cdp.profile("email", "Ann@Example.com")["profile_id"]          # doctest: +SKIP
    'p_3f2a...'
    >>> cdp.audience("cart_abandoners").preview()["size"]               # doctest: +SKIP
    42
    >>> cdp.run("daily", date(2026, 11, 1)).status                      # doctest: +SKIP
    'succeeded'
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdp_spark.config import CdpConfig, load_config
from cdp_spark.runtime import Runtime

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

    from cdp_spark.lake import Lake, TableInfo
    from cdp_spark.pipeline import RunReport


@dataclass(frozen=True)
class Audience:
    """One configured audience of a `Cdp`."""

    cdp: "Cdp"
    name: str

    def preview(self, as_of: dt.date | None = None, sample: int = 5) -> dict[str, Any]:
        """Size, variant counts and a masked sample of the audience evaluated as of ``as_of`` (default today, UTC);
        writes nothing.

        Example:
            >>> cdp.audience("cart_abandoners").preview(date(2026, 11, 1))["variants"]   # doctest: +SKIP
            {'email': 38, 'holdout': 4}
        """
        from cdp_spark.audiences.cli import preview_audience

        day = as_of or dt.datetime.now(dt.timezone.utc).date()
        return preview_audience(self.cdp.spark, self.cdp.config, self.cdp.lake, self.name, day, sample)


class Cdp:
    """A configuration with its Spark session and lake, started once (`cdp_spark.open`)."""

    def __init__(self, runtime: Runtime):
        self._rt = runtime

    @classmethod
    def open(cls, conf: str | Path = "conf/cdp.yaml", *, config: CdpConfig | None = None) -> "Cdp":
        """Load ``conf`` (or take ``config`` as it is), start Spark and open the lake."""
        return cls(Runtime.start(config if config is not None else load_config(conf)))

    @property
    def config(self) -> CdpConfig:
        return self._rt.config

    @property
    def spark(self) -> "SparkSession":
        return self._rt.spark

    @property
    def lake(self) -> "Lake":
        return self._rt.lake

    def tables(self) -> list["TableInfo"]:
        """The lake's tables: name, version, rows, files, size.

        Example:
            >>> [t.name for t in cdp.tables()][:2]     # doctest: +SKIP
            ['ops.job_runs', 'bronze.events']
        """
        return self.lake.tables()

    def profiles(self) -> "DataFrame":
        """Every profile: identifiers, typed traits, attributes, consent and, once scored, scores.

        Example:
            >>> cdp.profiles().where("consent.email_marketing = 'granted'").count()   # doctest: +SKIP
            1234
        """
        from cdp_spark.profiles.view import profile_view

        return profile_view(self.spark, self.config, self.lake)

    def profile(self, id_type: str, value: str) -> dict[str, Any] | None:
        """The profile holding this identifier (normalised as identity does), as a dict; None when there is none.

        Example:
            >>> cdp.profile("email", " Ann@Example.com")["identifiers"]["email"]   # doctest: +SKIP
            ['ann@example.com']
        """
        from pyspark.sql import functions as F

        from cdp_spark.privacy.matching import normalise

        if not self.lake.exists("gold.id_graph"):
            return None
        graph = self.lake.read("gold.id_graph")
        hit = (graph.where((F.col("id_type") == id_type) & (F.col("value") == normalise(id_type, value)))
               .select("profile_id").first())
        if hit is None:
            return None
        row = self.profiles().where(F.col("profile_id") == hit.profile_id).first()
        return row.asDict(recursive=True) if row is not None else None

    def audience(self, name: str) -> Audience:
        """A configured audience (KeyError naming the configured ones when there is none by that name).

        Example:
            >>> cdp.audience("cart_abandoners").preview()["size"]    # doctest: +SKIP
            42
        """
        known = [a.name for a in self.config.audiences]
        if name not in known:
            raise KeyError(f"no audience {name!r}; configured: {', '.join(known) or 'none'}")
        return Audience(self, name)

    def run(self, job: str = "daily", as_of: dt.date | None = None, *, resume: bool = False) -> "RunReport":
        """Run a stage, or the daily pipeline, for ``as_of`` (default today, UTC), recorded in the ledger like
        `cdp run`; raises `cdp_spark.pipeline.StageFailed` after recording a failure.

        Example:
            >>> cdp.run("audiences", date(2026, 11, 1)).stages      # doctest: +SKIP
            {'audiences': 'succeeded'}
        """
        from cdp_spark.pipeline import run_job

        day = as_of or dt.datetime.now(dt.timezone.utc).date()
        return run_job(self.spark, self.config, self.lake, job, day, resume=resume)
