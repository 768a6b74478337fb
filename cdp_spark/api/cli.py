"""`cdp api ...`: serve the Profile API, rebuild its store, manage the org's API keys."""
from __future__ import annotations

from typing import Optional

import typer

from cdp_spark.cli_common import (ConfOption, JsonOption, err, exit_codes, fail, out, print_json, read_config,
                                 require_lake)


api_app = typer.Typer(no_args_is_help=True, help="The Profile API: serve, refresh the serving store, API keys.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys of this org: one per use case, with scopes.")
api_app.add_typer(keys_app, name="keys")


@api_app.command("serve")
def serve(
    host: Optional[str] = typer.Option(None, help="bind address (default api.host)"),
    port: Optional[int] = typer.Option(None, help="port (default api.port)"),
    workers: Optional[int] = typer.Option(None, min=1, help="uvicorn worker processes (default api.workers)"),
    conf: str = ConfOption,
) -> None:
    """Run the Profile API and the web console at /console (blocking)."""
    from cdp_spark.api.app import serve as run

    with exit_codes():
        config = read_config(conf)
        require_lake(config, conf)
        where = f"http://{host or config.api.host}:{port or config.api.port}"
        err.print(f"Profile API on {where}/v1, web console on {where}/console (sign in with an API key: "
                  "`cdp api keys create NAME --scopes read,pii`); Ctrl-C stops", highlight=False, soft_wrap=True)
        run(config, host=host, port=port, workers=workers, conf_path=conf)


@api_app.command("refresh")
def refresh(conf: str = ConfOption, as_json: bool = JsonOption) -> None:
    """Rebuild the serving store from the profile view now (the profiles stage does this after each rebuild)."""
    from cdp_spark.api.store import refresh_serving_store
    from cdp_spark.runtime import Runtime

    with exit_codes():
        rt = Runtime.start(read_config(conf))
        result = refresh_serving_store(rt.spark, rt.config, rt.lake)
        if as_json:
            print_json(result)
        else:
            out.print(f"serving store rebuilt: {result['profiles']:,} profiles in {result['seconds']:.1f} s")


def _scopes(value: str) -> list[str]:
    return [s for s in value.split(",") if s.strip()]


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., help="the use case, e.g. crm-sync (one key per use case)"),
    scopes: str = typer.Option("read", "--scopes", "-s", help="comma-separated: read,write,delete,pii"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a key; its secret is shown once and stored only hashed."""
    from cdp_spark.api.keys import KeyError_, store_for

    with exit_codes():
        try:
            secret, key = store_for(read_config(conf)).create(name, _scopes(scopes))
        except KeyError_ as exc:
            raise fail(str(exc), "`cdp api keys list` shows the keys; scopes are read, write, delete and pii",
                       code=2) from None
        if as_json:
            print_json({**key.public(), "key": secret})
        else:
            out.print(f"created key {key.key_id} ({name}; scopes {', '.join(key.scopes)}). Secret, shown once:")
            out.print(secret, highlight=False)


@keys_app.command("list")
def keys_list(conf: str = ConfOption, as_json: bool = JsonOption) -> None:
    """The org's keys (never secrets)."""
    from rich.table import Table

    from cdp_spark.api.keys import store_for

    with exit_codes():
        keys = [k.public() for k in store_for(read_config(conf)).list()]
        if as_json:
            print_json(keys)
            return
        table = Table("key_id", "name", "scopes", "created", "revoked")
        for k in keys:
            table.add_row(k["key_id"], k["name"], ",".join(k["scopes"]), k["created_at"], k["revoked_at"] or "")
        out.print(table if keys else "no API keys yet: cdp api keys create NAME --scopes read")


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="key id (from `cdp api keys list`)"),
                conf: str = ConfOption, as_json: bool = JsonOption) -> None:
    """Revoke a key: running API workers refuse it from their next request."""
    from cdp_spark.api.keys import KeyError_, store_for

    with exit_codes():
        try:
            key = store_for(read_config(conf)).revoke(key_id)
        except KeyError_ as exc:
            raise fail(str(exc), "`cdp api keys list` shows the key ids", code=2) from None
        if as_json:
            print_json(key.public())
        else:
            out.print(f"revoked {key.key_id} ({key.name}) at {key.revoked_at}")


sandbox_app = typer.Typer(no_args_is_help=True, help="Sandboxes: a copy of the config with its own lake.")


@sandbox_app.command("create")
def sandbox_create(
    to: str = typer.Option(..., "--to", help="folder for the sandbox's config (created)"),
    lake_root: Optional[str] = typer.Option(None, "--lake-root", help="sandbox lake root (default <to>/lake)"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Copy the config to a sandbox (own lake root, org.sandbox: true) to validate sources before production."""
    from cdp_spark.api.sandbox import SandboxError, create_sandbox

    with exit_codes():
        try:
            result = create_sandbox(conf, to, lake_root=lake_root)
        except SandboxError as exc:
            raise fail(str(exc), "pick a new folder for --to (and --lake-root)", code=2) from None
        if as_json:
            print_json(result)
        else:
            out.print(f"sandbox config: {result['conf']} (lake root {result['lake_root']}); "
                      f"try: cdp demo --conf {result['conf']}")
