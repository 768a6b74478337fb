"""`cdp erase ...`: the right to be forgotten from the command line.

    cdp erase --id email:someone@example.com [--id phone:+44...] [--now]
    cdp erase run [--now]                  # requests filed through the API's DELETE
    cdp erase verify <request> [--id ...]
    cdp erase status <request>
"""
from __future__ import annotations

from typing import Optional

import typer

from cdp_spark.cli_common import ConfOption, JsonOption, err, exit_codes, fail, out, print_json, read_config

NOW_HELP = ("vacuum at once with retention 0 (tests, urgent cases). WARNING: removes every old version of the "
            "touched tables: time travel to before the erasure stops working and readers holding an old snapshot fail")

erase_app = typer.Typer(invoke_without_command=True, help="Erase a person everywhere (right to be forgotten).")


def _fail(message: str, code: int = 2, hint: str = "see `cdp erase --help` for the forms a request takes") -> None:
    raise fail(message, hint, code=code)


@erase_app.callback()
def erase(
    ctx: typer.Context,
    ids: Optional[list[str]] = typer.Option(None, "--id", help="identifier type:value (repeatable)"),
    now: bool = typer.Option(False, "--now", help=NOW_HELP),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """File an erasure request for the identifiers and execute it."""
    if ctx.invoked_subcommand is not None:
        return
    if not ids:
        _fail("give the person with --id type:value (e.g. --id email:someone@example.com), or a subcommand")
    from cdp_spark.privacy.erase import request, run_request
    from cdp_spark.runtime import Runtime

    with exit_codes():
        config = read_config(conf)
        rt = Runtime.start(config)
        try:
            rid = request(rt.config, rt.lake, ids or [], requested_by="cli")
        except ValueError as exc:
            _fail(str(exc))
        if now:
            err.print("[yellow]--now: old file versions are vacuumed at once; time travel before this erasure is "
                      "gone[/yellow]", highlight=False)
        result = _executed(lambda: run_request(rt.spark, rt.config, rt.lake, rid, now=now))
        _show(result, as_json)
        raise typer.Exit(exit_code(result, now=now))


def exit_code(result: dict, *, now: bool) -> int:  # type: ignore[type-arg]
    """0 when the request did all it could now: ``verified``, or ``deleted`` with only old file versions left
    (they go when the vacuum retention passes) and no destination still owed its removes; else 1.

    Example:
        >>> exit_code({"status": "deleted", "destinations_pending": {}}, now=False)
        0
        >>> exit_code({"status": "deleted", "destinations_pending": {}}, now=True)
        1
    """
    if result.get("destinations_pending"):
        return 1
    return 0 if result.get("status") == "verified" or (result.get("status") == "deleted" and not now) else 1


def _executed(run):  # type: ignore[no-untyped-def]
    """Run an erasure; a failure is reported in one line, without the exception's text (it may quote a delete
    predicate, i.e. identifier values), with exit code 1; the request records it."""
    from cdp_spark.privacy.erase import ErasureError
    from cdp_spark.privacy.requests import UnknownRequest

    try:
        return run()
    except (ErasureError, UnknownRequest) as exc:
        _fail(str(exc), 1, hint="`cdp erase status <request>` shows the step it reached; once the cause is fixed, "
                                "`cdp erase run` continues every open request")
    except Exception as exc:
        from cdp_spark.lake import LakeError

        if isinstance(exc, LakeError):
            raise
        _fail(f"erasure failed ({type(exc).__name__}); `cdp erase status <request>` shows the step it reached", 1)


def _show(result: dict, as_json: bool) -> None:  # type: ignore[type-arg]

    if as_json:
        print_json(result)
        return
    out.print(f"erasure {result['request_id']}: {result['status']}; {result['profiles']} profile(s), "
              f"{result['identifiers']} identifier(s), {sum(result['rows_deleted'].values()):,} row(s) deleted, "
              f"{result['files_rewritten']} file(s) rewritten, {sum(result['removes_sent'].values()):,} remove(s) "
              f"sent to {len(result['removes_sent'])} destination(s), {len(result['models_scrubbed'])} model(s) "
              f"scrubbed, occurrences left: {result['occurrences']}")
    for name, error in sorted(result["destinations_pending"].items()):
        out.print(f"[yellow]destination {name} has not acknowledged its removes ({error}); the request stays open "
                  f"and `cdp erase run` (or the daily pipeline) retries[/yellow]", highlight=False)


@erase_app.command("run")
def run_pending(now: bool = typer.Option(False, "--now", help=NOW_HELP), conf: str = ConfOption, as_json: bool = JsonOption) -> None:
    """Execute every open erasure request (e.g. filed through the API's DELETE)."""
    from cdp_spark.privacy.erase import run_pending as run
    from cdp_spark.runtime import Runtime

    with exit_codes():
        rt = Runtime.start(read_config(conf))
        results = _executed(lambda: run(rt.spark, rt.config, rt.lake, now=now))
        if as_json:
            print_json(results)
        else:
            for r in results:
                _show(r, False)
            if not results:
                out.print("no open erasure requests")
        raise typer.Exit(max([exit_code(r, now=now) for r in results], default=0))


@erase_app.command("verify")
def verify(
    request_id: str = typer.Argument(..., metavar="REQUEST", help="erasure request id (er_...)"),
    ids: Optional[list[str]] = typer.Option(None, "--id", help="identifiers to scan for, when the request's own "
                                                              "were already purged after a clean verification"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Scan every file of the lake, landing and export folders for the request's identifiers (exit 1 if found)."""
    from rich.table import Table

    from cdp_spark.privacy import requests as R
    from cdp_spark.privacy.erase import parse_id, verify_request
    from cdp_spark.runtime import metadata_lake

    with exit_codes():
        config = read_config(conf)
        lake = metadata_lake(config)
        if not R.valid_request_id(request_id):
            _fail("a request id looks like er_<24 hex digits>")
        try:
            found = verify_request(config, lake, request_id, [parse_id(i) for i in ids] if ids else None)
        except (R.UnknownRequest, ValueError) as exc:
            _fail(str(exc))
        total = sum(o.count for o in found)
        if as_json:
            print_json({"request_id": request_id, "occurrences": total, "found": [o.to_dict() for o in found]})
        else:
            table = Table("file", "place", "identifier type", "count")
            for o in found:
                table.add_row(o.path, o.place, o.id_type, str(o.count))
            out.print(table if found else f"{request_id}: no occurrence of the identifiers in any file")
        if total:
            raise typer.Exit(1)


@erase_app.command("status")
def status(request_id: str = typer.Argument(..., metavar="REQUEST"), conf: str = ConfOption, as_json: bool = JsonOption) -> None:
    """The request's progress (every recorded step)."""
    from cdp_spark.privacy import requests as R
    from cdp_spark.runtime import metadata_lake

    with exit_codes():
        if not R.valid_request_id(request_id):
            _fail("a request id looks like er_<24 hex digits>")
        rows = R.history(metadata_lake(read_config(conf)), request_id)
        if not rows:
            _fail(f"no erasure request {request_id}")
        slim = [{k: r.get(k) for k in ("updated_at", "status", "step", "files_rewritten", "occurrences", "error")}
                for r in rows]
        if as_json:
            print_json(slim)
        else:
            for r in slim:
                out.print(f"{r['updated_at']}  {r['status']:<9} {r['step'] or ''}")
