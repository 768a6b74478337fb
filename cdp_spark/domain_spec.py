"""How a domain declares itself once: its config sections, its cross-section config checks, its tables, its stage
and its CLI. `cdp_spark.domains` lists the declarations in pipeline order and assembles the config model, the table
registry, the stage plan and the CLI from them.

Example:
    >>> def names_once(config):
    ...     names = [s.name for s in config.sources]
    ...     return [ConfigProblem("sources", (i, "name"), n, "expected a source name used once")
    ...             for i, n in enumerate(names) if names.count(n) > 1]
    >>> domain = Domain("example", checks=(names_once,))
    >>> from types import SimpleNamespace as NS
    >>> [p.key for p in domain.checks[0](NS(sources=[NS(name="web"), NS(name="web")]))]
    [(0, 'name'), (1, 'name')]
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from cdp_spark.stage_spec import StageSpec

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.table_spec import TableSpec


@dataclass(frozen=True)
class ConfigProblem:
    """A value of one config section that does not fit another section (e.g. a source mapping a field the catalogue
    lacks). The loader names the file the value came from, ``key`` below ``section``, the value (``***`` when
    ``secret``) and ``expected``.

    Example:
        >>> ConfigProblem("sources", (0, "mapping", "emial"), "emial", "expected a catalogue field").key
        (0, 'mapping', 'emial')
    """

    section: str
    key: tuple[str | int, ...]
    value: object
    expected: str
    secret: bool = False

    def describe(self) -> str:
        """The value and what was expected, for a message that names the file and the key before it.

        Example:
            >>> ConfigProblem("sources", (0, "key", 0), "emial", "expected a catalogue field").describe()
            "got 'emial', expected a catalogue field"
        """
        if self.value is None:  # the reason names the values itself (e.g. a reference cycle)
            return self.expected
        return f"got {'***' if self.secret else repr(self.value)}, {self.expected}"


# A cross-section check: the whole validated config (every section valid on its own) -> its problems.
ConfigCheck = Callable[[Any], Iterable[ConfigProblem]]


@dataclass(frozen=True)
class Section:
    """One config section a domain owns: its key in cdp.yaml (and in ``files:``), its pydantic type (a model, or a
    list of models for a folder of files) and its default."""

    name: str
    type: Any
    default: Callable[[], Any]
    description: str | None = None


@dataclass(frozen=True)
class Domain:
    """One domain as it declares itself in its package's ``__init__`` (``DOMAIN``).

    - ``sections``: the config sections it owns, in the order they are validated.
    - ``checks``: its cross-section config checks, run by config loading once every section is valid.
    - ``tables``: the Delta tables it owns.
    - ``stage``: its pipeline stage, if it has one.
    - ``cli``: ``(command name, "module:typer app")`` of its CLI sub-apps, imported only when the CLI is built.
    """

    name: str
    sections: tuple[Section, ...] = ()
    checks: tuple[ConfigCheck, ...] = ()
    tables: "tuple[TableSpec, ...]" = ()
    stage: StageSpec | None = None
    cli: tuple[tuple[str, str], ...] = ()


def load(target: str) -> Any:
    """The object a declaration names as ``"module:attribute"`` (a stage function, a CLI app), imported now.

    Example:
        >>> load("cdp_spark.domain_spec:Domain") is Domain
        True
    """
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
