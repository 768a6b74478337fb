"""Options shared by every ``cdp`` sub-command, defined once so help texts and env vars never drift apart.

Example:
    >>> import typer
    >>> from cdp_spark.cli_common import ConfOption, JsonOption
    >>> def status(conf: str = ConfOption, as_json: bool = JsonOption) -> None: ...
"""
from __future__ import annotations

import typer

ConfOption = typer.Option("conf/cdp.yaml", "--conf", "-c", envvar="CDP_CONF", help="path to cdp.yaml")
JsonOption = typer.Option(False, "--json", help="machine-readable JSON on stdout")
