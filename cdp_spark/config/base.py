"""The base every config model builds on; its own module so stage packages can define their config models
without importing `cdp_spark.config.models` (which imports them)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base for all config models: unknown keys are errors, values are validated on assignment.

    Example:
        >>> class Limits(Strict):
        ...     max_rows: int = 10
        >>> Limits(max_rows=5).max_rows
        5
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
