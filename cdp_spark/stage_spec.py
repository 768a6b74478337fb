"""How a domain declares its pipeline stage: the function that runs it, the tables it reads and writes, and the
config sections whose rules decide its output.

Each domain package declares its ``STAGE`` in its ``__init__``; `cdp_spark.domains` lists them in pipeline order.
This module imports nothing of the package, so a declaration costs nothing to import (no Spark).

Example:
    >>> stage = StageSpec("profiles", run="cdp_spark.profiles.stage:run",
    ...                   reads=("gold.id_graph",), writes=("gold.profiles",), rules=("profiles",))
    >>> stage.token_reads
    ('gold.id_graph',)
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    """One pipeline stage as its domain declares it.

    - ``run``: ``"module:function"`` of ``(spark, config, lake, as_of) -> StageResult``, imported when it runs.
    - ``reads`` / ``writes``: logical table names. The plan refuses an order in which a stage reads a table that a
      later stage writes. A stage may read what it writes itself (its own state).
    - ``reads_previous``: tables read on purpose as the previous run left them (left out of the order check).
    - ``rules``: config sections whose values enter the stage's idempotency token with its reads' versions.
    - ``run_full``: the function that rebuilds from all input when the stage is incremental by default
      (`cdp run daily --full`); None when the stage always reads all of its input.
    """

    name: str
    run: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    reads_previous: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    run_full: str | None = None

    @property
    def token_reads(self) -> tuple[str, ...]:
        """The reads whose versions enter the idempotency token: not the stage's own outputs (writing them would
        change the token of a re-run)."""
        return tuple(t for t in self.reads if t not in self.writes)
