"""The domains of cdp-spark, listed once, in pipeline order: the stage plan is built from their declarations.

Each domain package declares its stage (`cdp_spark.stage_spec.StageSpec`: the function, the tables it reads and
writes, the config sections in its idempotency token) as ``STAGE`` in its ``__init__``. The order here is the
default daily order; `cdp_spark.pipeline.check_order` refuses any order in which a stage reads a table that a
later stage writes.

Example:
    >>> from cdp_spark.domains import STAGES
    >>> [s.name for s in STAGES][:3]
    ['erasure', 'ingest', 'identity']
"""
from __future__ import annotations

from cdp_spark import activation, api, audiences, connections, content, identity, ingest, ml, privacy, profiles
from cdp_spark.stage_spec import StageSpec

STAGES: tuple[StageSpec, ...] = (
    privacy.STAGE,      # erasure: first, so that no later stage rebuilds an erased person
    ingest.STAGE,
    identity.STAGE,
    profiles.STAGE,
    connections.STAGE,  # batch runs and failed stream deliveries; the stream forwards each micro-batch itself
    ml.STAGE,           # scores
    content.STAGE,
    audiences.STAGE,
    activation.STAGE,
    api.STAGE,          # serve: last, so the API serves the day's profiles, scores and audiences
)
