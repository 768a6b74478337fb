"""The domains of cdp-spark, listed once, in pipeline order; the stage plan and the cross-section config checks are
built from their declarations.

Each domain package declares itself (`cdp_spark.domain_spec.Domain`: its stage, its cross-section config checks)
as ``DOMAIN`` in its ``__init__``. The order here is the default daily order; `cdp_spark.pipeline.check_order`
refuses any order in which a stage reads a table that a later stage writes.

Example:
    >>> from cdp_spark.domains import STAGES
    >>> [s.name for s in STAGES][:3]
    ['erasure', 'ingest', 'identity']
"""
from __future__ import annotations

from cdp_spark import activation, api, audiences, connections, content, identity, ingest, ml, privacy, profiles
from cdp_spark.domain_spec import ConfigCheck, Domain
from cdp_spark.stage_spec import StageSpec

DOMAINS: tuple[Domain, ...] = (
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
CONFIG_CHECKS: tuple[ConfigCheck, ...] = tuple(c for d in DOMAINS for c in d.checks)
