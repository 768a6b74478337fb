"""The table registry: every Delta table's schema, keys, partitioning, PII columns and description.

Domains declare their tables as `cdp_spark.table_spec.TableSpec`s in their own `tables.py` and list them in their
declaration (``Domain.tables``); `default_registry()` gathers them from `cdp_spark.domains`.

Example:
    >>> default_registry()["gold.profiles"].keys
    ('profile_id',)
"""
from __future__ import annotations

from typing import Iterable, Iterator

from cdp_spark.lake.errors import UnknownTableError
from cdp_spark.table_spec import Column, PiiClass, TableSpec

__all__ = ["Column", "PiiClass", "TableRegistry", "TableSpec", "default_registry"]


class TableRegistry:
    """An immutable lookup of table specs by logical name."""

    def __init__(self, specs: Iterable[TableSpec]):
        self._specs: dict[str, TableSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"table {spec.name} is registered twice")
            self._specs[spec.name] = spec

    def __getitem__(self, name: str) -> TableSpec:
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(sorted(self._specs))
            raise UnknownTableError(f"unknown table {name!r} (registered: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[TableSpec]:
        return iter(self._specs.values())

    def names(self) -> list[str]:
        return list(self._specs)

    def with_tables(self, specs: Iterable[TableSpec]) -> "TableRegistry":
        """A new registry with extra tables (e.g. a test's own)."""
        return TableRegistry([*self, *specs])


def default_registry() -> TableRegistry:
    """All tables the domains declare, in the order of `cdp_spark.domains.DOMAINS`.

    Example:
        >>> "ops.job_runs" in default_registry()
        True
    """
    from cdp_spark.domains import TABLES

    return TableRegistry(TABLES)
