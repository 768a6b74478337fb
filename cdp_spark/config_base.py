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


class KeyedValueError(ValueError):
    """A validator's error about one value below the model it validates: ``key`` is that value's path under the
    model and ``value`` the value (shown as ``***`` when ``secret``), so the loader names the exact key.

    Example:
        >>> KeyedValueError("is used twice", key=("sources", "app", "keys", 0, "key"), value="k", secret=True).key
        ('sources', 'app', 'keys', 0, 'key')
    """

    def __init__(self, message: str, *, key: tuple[str | int, ...], value: object, secret: bool = False):
        super().__init__(message)
        self.key, self.value, self.secret = key, value, secret


def repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted (for "each name once" validators).

    Example:
        >>> repeated(["web", "crm", "web"])
        ['web']
    """
    return sorted({n for n in names if names.count(n) > 1})
