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

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Mapping

from cdp_spark.config import CdpConfig, ConfigError, load_config
from cdp_spark.config.loader import config_problems
from cdp_spark.runtime import Runtime

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

    from cdp_spark.activation.stage import DeliveryReport
    from cdp_spark.audiences.config import Audience as AudienceDefinition
    from cdp_spark.lake import Lake, TableInfo
    from cdp_spark.pipeline import RunReport


def _today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def _merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` laid over it; mappings are merged key by key (e.g. ``engine.spark_conf``)."""
    out = dict(base)
    for key, value in update.items():
        out[key] = _merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def with_settings(config: CdpConfig, base_dir: str | Path | None = None, **sections: Mapping[str, Any]) -> CdpConfig:
    """``config`` with some settings of some sections changed and validated again, and a relative lake root taken
    relative to ``base_dir`` (default: the current directory, as the CLI does).

    Example:
        >>> with_settings(config, engine={"cores": 1, "spark_conf": {"spark.driver.memory": "2g"}}).engine.cores
        1
    """
    for name, update in sections.items():
        current = getattr(config, name)
        # Only the keys set in the files: derived defaults (the checkpoint dir from the root) are derived again.
        section = type(current).model_validate(_merged(current.model_dump(exclude_unset=True), update))
        config = config.model_copy(update={name: section})
    root = config.lake.root
    if base_dir is not None and "://" not in root and not os.path.isabs(root):
        lake = type(config.lake).model_validate({**config.lake.model_dump(exclude_unset=True),
                                                 "root": os.path.join(base_dir, root)})
        config = config.model_copy(update={"lake": lake})
    return config


@dataclass(frozen=True)
class ScoreModels:
    """The scores stage's model math, for notebooks that explore or refit it with the stage's exact functions:
    `rfm` (measures, tie-safe cut points, segments), `clv` (summaries, BG/NBD and Gamma-Gamma fits, scoring) and
    `btyd` (the closed-form BG/NBD and Gamma-Gamma expressions)."""

    rfm: ModuleType
    clv: ModuleType
    btyd: ModuleType


@dataclass(frozen=True)
class AudienceMembers:
    """Every enabled audience evaluated for one day: the members (``audience, profile_id, variant``), the audience
    names in evaluation order and the conditions that matched nobody because their table does not exist yet."""

    members: "DataFrame"
    audiences: list[str]
    unavailable: dict[str, list[str]]


@dataclass(frozen=True)
class Audience:
    """One configured audience of a `Cdp`."""

    cdp: "Cdp"
    name: str

    @property
    def definition(self) -> "AudienceDefinition":
        """The audience as configured (rule, variants, salt).

        Example:
            >>> [v.name for v in cdp.audience("cart_abandoners").definition.variants]   # doctest: +SKIP
            ['email', 'sms', 'holdout']
        """
        return next(a for a in self.cdp.config.audiences if a.name == self.name)

    def preview(self, as_of: dt.date | None = None, sample: int = 5) -> dict[str, Any]:
        """Size, variant counts and a masked sample of the audience evaluated as of ``as_of`` (default today, UTC);
        writes nothing.

        Example:
            >>> cdp.audience("cart_abandoners").preview(date(2026, 11, 1))["variants"]   # doctest: +SKIP
            {'email': 38, 'holdout': 4}
        """
        from cdp_spark.audiences.cli import preview_audience

        return preview_audience(self.cdp.spark, self.cdp.config, self.cdp.lake, self.name, as_of or _today(), sample)

    def export(self, destination: Mapping[str, Any], to: str | Path, as_of: dt.date | None = None) -> "DeliveryReport":
        """Send the audience's members (holdout variants left out) to a destination defined here, as the activation
        stage would: consent-gated, normalised and hashed per the destination. Writes no table and no delivery
        state; a file destination's folder lands under ``to``.

        Example:
            >>> report = cdp.audience("cart_abandoners").export(
            ...     {"name": "drop", "format": "csv", "identifiers": ["email"], "consent": ["email_marketing"],
            ...      "mode": "snapshot", "transport": {"type": "file", "path": "/tmp/drop"}}, to="/tmp/exports")
            >>> report.records_sent                                       # doctest: +SKIP
            38
        """
        from pyspark.sql import functions as F

        from cdp_spark.activation.config import Destination
        from cdp_spark.activation.stage import deliver, members_for

        day = as_of or _today()
        target = Destination.model_validate({**destination, "audiences": [self.name]})
        holdouts = [v.name for v in self.definition.variants if v.holdout]
        evaluated = self.cdp.audience_members(day).members
        membership = evaluated.where((F.col("audience") == self.name) & ~F.col("variant").isin(holdouts))
        members = members_for(self.cdp.spark, self.cdp.config, self.cdp.lake,
                              membership.select("audience", "profile_id", "variant"))
        return deliver(target, list(members), {}, as_of=day, export_root=str(to), run_id="python-api")


class Cdp:
    """A configuration with its Spark session and lake, started once (`cdp_spark.open`)."""

    def __init__(self, runtime: Runtime):
        self._rt = runtime

    @classmethod
    def open(cls, conf: str | Path = "conf/cdp.yaml", *, config: CdpConfig | None = None,
             base_dir: str | Path | None = None, **sections: Mapping[str, Any]) -> "Cdp":
        """Load ``conf`` (or take ``config`` as it is), change the given settings (see `with_settings`), start
        Spark and open the lake.

        Example:
            >>> cdp = Cdp.open("../conf/cdp.yaml", base_dir="..", engine={"cores": 2})   # doctest: +SKIP
        """
        loaded = config if config is not None else load_config(conf)
        return cls(Runtime.start(with_settings(loaded, base_dir, **sections)))

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

    def exists(self, table: str) -> bool:
        """Whether a table of the registry exists in the lake yet.

        Example:
            >>> cdp.exists("gold.profile_scores")     # doctest: +SKIP
            True
        """
        return self.lake.exists(table)

    def read(self, table: str) -> "DataFrame":
        """A table's current snapshot (`cdp_spark.lake.TableMissingError` when it does not exist yet).

        Example:
            >>> cdp.read("gold.id_graph").groupBy("id_type").count().show()     # doctest: +SKIP
        """
        return self.lake.read(table)

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

    def events(self, as_of: dt.date | None = None) -> "DataFrame":
        """The events up to the end of ``as_of`` (default today, UTC) with the ``profile_id`` identity gave them:
        what profiles, scores and audiences read (diverted test traffic left out).

        Example:
            >>> cdp.events(date(2026, 11, 1)).groupBy("source").count().show()     # doctest: +SKIP
        """
        from cdp_spark.identity.lookup import profile_events

        return profile_events(self.spark, self.config, self.lake, as_of or _today())

    def purchases(self, as_of: dt.date | None = None) -> "DataFrame":
        """One row per order up to ``as_of`` (``profile_id, event_time, revenue``), as the scores stage sees them
        (its event map and value field, ``scores.events`` and ``scores.value_field``).

        Example:
            >>> cdp.purchases(date(2026, 11, 1)).agg({"revenue": "sum"}).first()[0]     # doctest: +SKIP
            123456.7
        """
        from cdp_spark.ml.events import event_type_column, purchases

        settings = self.config.scores
        typed = self.events(as_of).withColumn("event_type", event_type_column(settings.events))
        return purchases(typed, settings.value_field)

    @property
    def models(self) -> ScoreModels:
        """The scores stage's model math (`ScoreModels`).

        Example:
            >>> cdp.models.rfm.rfm_measures(cdp.purchases(day), day).show(3)     # doctest: +SKIP
        """
        from cdp_spark.ml import btyd, clv, rfm

        return ScoreModels(rfm=rfm, clv=clv, btyd=btyd)

    @property
    def mlflow_uri(self) -> str:
        """Where the scores stage tracks its model runs (MLflow tracking URI).

        Example:
            >>> cdp.mlflow_uri     # doctest: +SKIP
            'sqlite:////data/lake/_system/mlflow/mlflow.db'
        """
        from cdp_spark.ml.tracking import tracking_uri

        return tracking_uri(self.config)

    def identity_run(self, as_of: dt.date | None = None) -> dict[str, Any] | None:
        """The newest identity run (of one as-of date, if given) with its statistics; None before identity ran.

        Example:
            >>> cdp.identity_run()["stats"]["profiles"]     # doctest: +SKIP
            1873
        """
        from cdp_spark.identity.cli import latest_run

        return latest_run(self.lake, as_of.isoformat() if as_of else None)

    @staticmethod
    def mask(value: str | None) -> str:
        """A value masked for showing: the first character and an email's domain, a hint of other values.

        Example:
            >>> Cdp.mask("jane.doe@example.com")
            'j***@example.com'
        """
        from cdp_spark.audiences.cli import mask_value

        return mask_value(value)

    @staticmethod
    def verify_export(folder: str | Path) -> dict[str, Any]:
        """A file delivery's manifest, after re-reading every file against its checksum and row count (ValueError
        when one differs).

        Example:
            >>> [f["rows"] for f in Cdp.verify_export(report.location)["files"]]     # doctest: +SKIP
            [38]
        """
        from cdp_spark.activation.transports import verify_manifest

        return verify_manifest(folder)

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

    def with_audience(self, definition: Mapping[str, Any]) -> "Cdp":
        """The same session and lake with one more audience, defined here as in a file of conf/audiences/ and checked
        as config loading checks it (ConfigError naming the key otherwise). Nothing is written.

        Example:
            >>> design = cdp.with_audience({"name": "buyers", "rule": {"event": {"name": "order_completed"}}})
            >>> design.audience("buyers").preview()["size"]     # doctest: +SKIP
            812
        """
        from cdp_spark.audiences.config import Audience as AudienceDefinition

        audience = AudienceDefinition.model_validate(definition)
        config = self.config.model_copy(update={"audiences": [*self.config.audiences, audience]})
        problems = [p for p in config_problems(config) if p.section == "audiences"]
        if problems:
            raise ConfigError("\n".join(f"audience {audience.name}: {'.'.join(map(str, p.key[1:]))}: {p.describe()}"
                                        for p in problems))
        return Cdp(dataclasses.replace(self._rt, config=config))

    def audience_members(self, as_of: dt.date | None = None) -> AudienceMembers:
        """Every enabled audience evaluated as of ``as_of`` (default today, UTC), as the audiences stage evaluates
        them; nothing is written.

        Example:
            >>> cdp.audience_members(date(2026, 11, 1)).members.groupBy("audience").count().show()   # doctest: +SKIP
        """
        from cdp_spark.audiences.stage import current_members

        members, plan, info = current_members(self.spark, self.config, self.lake, as_of or _today())
        return AudienceMembers(members, [a.name for a in plan.audiences], info["unavailable"])

    def run(self, job: str = "daily", as_of: dt.date | None = None, *, resume: bool = False) -> "RunReport":
        """Run a stage, or the daily pipeline, for ``as_of`` (default today, UTC), recorded in the ledger like
        `cdp run`; raises `cdp_spark.pipeline.StageFailed` after recording a failure.

        Example:
            >>> cdp.run("audiences", date(2026, 11, 1)).stages      # doctest: +SKIP
            {'audiences': 'succeeded'}
        """
        from cdp_spark.pipeline import run_job

        return run_job(self.spark, self.config, self.lake, job, as_of or _today(), resume=resume)
