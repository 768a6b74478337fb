"""The domains of cdp-spark, listed once, in pipeline order. Everything that spans domains is assembled here from
their declarations: the stage plan (`STAGES`), the table registry's tables (`TABLES`), the config model's domain
sections (`SECTIONS`), the cross-section config checks (`CONFIG_CHECKS`) and the CLI's domain commands (`CLI`).

Each domain package declares itself once, as ``DOMAIN`` (a `cdp_spark.domain_spec.Domain`) in its ``__init__``.
The stage order here is the default daily order; `cdp_spark.pipeline.check_order` refuses any order in which a
stage reads a table that a later stage writes.

Example:
    >>> from cdp_spark.domains import STAGES, SECTIONS
    >>> [s.name for s in STAGES][:3]
    ['erasure', 'ingest', 'identity']
    >>> [s.name for s in SECTIONS][:3]
    ['collector', 'privacy', 'catalogue']
"""
from __future__ import annotations

from cdp_spark import (activation, api, audiences, collect, connections, content, identity, ingest, ml, ops, privacy,
                       profiles)
from cdp_spark.domain_spec import ConfigCheck, Domain, Section
from cdp_spark.stage_spec import StageSpec
from cdp_spark.table_spec import TableSpec

DOMAINS: tuple[Domain, ...] = (
    ops.DOMAIN,          # the job ledger and leases: no stage
    collect.DOMAIN,      # the real-time collector: its stream runs beside the pipeline
    privacy.DOMAIN,      # erasure: first, so that no later stage rebuilds an erased person
    ingest.DOMAIN,
    identity.DOMAIN,
    profiles.DOMAIN,
    connections.DOMAIN,  # batch runs and failed stream deliveries; the stream forwards each micro-batch itself
    ml.DOMAIN,           # scores
    content.DOMAIN,
    audiences.DOMAIN,
    activation.DOMAIN,
    api.DOMAIN,          # serve: last, so the API serves the day's profiles, scores and audiences
)

STAGES: tuple[StageSpec, ...] = tuple(d.stage for d in DOMAINS if d.stage is not None)
TABLES: tuple[TableSpec, ...] = tuple(t for d in DOMAINS for t in d.tables)
SECTIONS: tuple[Section, ...] = tuple(s for d in DOMAINS for s in d.sections)
CONFIG_CHECKS: tuple[ConfigCheck, ...] = tuple(c for d in DOMAINS for c in d.checks)
CLI: tuple[tuple[str, str], ...] = tuple(c for d in DOMAINS for c in d.cli)
