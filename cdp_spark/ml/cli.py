"""`cdp mlflow ...`: the MLflow UI command for the local store, and the registered score models.

Example:
    $ cdp mlflow ui                 # prints the command
    $ cdp mlflow ui --start         # runs it (blocking)
    $ cdp mlflow models --json
"""
from __future__ import annotations

import shlex
import subprocess
import sys

import typer

from cdp_spark.cli_common import ConfOption, JsonOption, exit_codes, fail, out, print_json, read_config

mlflow_app = typer.Typer(no_args_is_help=True, help="MLflow: tracking UI and registered score models.")


@mlflow_app.command("ui")
def ui(
    start: bool = typer.Option(False, "--start", help="start the UI instead of printing the command"),
    port: int = typer.Option(5000, help="port of the UI"),
    conf: str = ConfOption,
) -> None:
    """Print (or start) `mlflow ui` on the configured tracking store."""
    from cdp_spark.ml.tracking import ui_command

    with exit_codes():
        try:
            cmd = ui_command(read_config(conf), port=port)
        except ValueError as exc:
            raise fail(str(exc), "set `scores.mlflow.tracking_uri` in conf/scores.yaml, or MLFLOW_TRACKING_URI",
                       code=2) from None
        if not start:
            out.print(shlex.join(cmd), highlight=False, soft_wrap=True)
            return
        # The mlflow console script sits next to this interpreter in a virtualenv.
        cmd = [sys.executable, "-m", "mlflow", *cmd[1:]]
        raise typer.Exit(subprocess.call(cmd))


@mlflow_app.command("models")
def models(
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Registered score models with their champion and challenger versions and holdout metrics."""
    from rich.table import Table

    from cdp_spark.ml.tracking import mlflow_store

    with exit_codes():
        config = read_config(conf)
        rows = []
        with mlflow_store(config) as client:
            for rm in client.search_registered_models():
                for alias, version in sorted((rm.aliases or {}).items()):
                    mv = client.get_model_version(rm.name, version)
                    rows.append({"name": rm.name, "alias": alias, "version": str(version),
                                 "metric": mv.tags.get("holdout_metric"), "value": mv.tags.get("holdout_value"),
                                 "reason": mv.tags.get("reason")})
        if as_json:
            print_json(rows)
            return
        table = Table("model", "alias", "version", "holdout metric", "value", "reason")
        for r in rows:
            table.add_row(r["name"], r["alias"], r["version"], r["metric"] or "", r["value"] or "", r["reason"] or "")
        out.print(table)
