"""`cdp identity ...`: resolution statistics and an explicit (incremental or full) identity run.

`stats` reads the latest row of ``silver.identity_runs`` with delta-rs (no Spark start), so it answers in a second.

Example:
    $ cdp identity stats --json
    $ cdp identity run --as-of 2026-11-01 --full      # rebuild from all of bronze after a rule change
"""
from __future__ import annotations

import json
from typing import Any, Optional

import typer
from rich.table import Table

from cdp_spark.cli_common import (ConfOption, JsonOption, err, exit_codes, fail, out, parse_as_of, print_json,
                                 read_config)
from cdp_spark.identity.tables import IDENTITY_RUNS

app = typer.Typer(no_args_is_help=True, help="Identity resolution: statistics and full rebuilds.")


def latest_run(lake: Any, as_of: Optional[str] = None) -> dict[str, Any] | None:
    """The latest identity run (optionally the latest for one as-of date) with its stats parsed, or None."""
    if not lake.exists(IDENTITY_RUNS.name):
        return None
    rows = lake.delta_table(IDENTITY_RUNS.name).to_pyarrow_table().to_pylist()
    if as_of is not None:
        rows = [r for r in rows if str(r["as_of"]) == as_of]
    if not rows:
        return None
    row = max(rows, key=lambda r: (r["finished_at"], r["run_id"]))
    return {k: v for k, v in row.items() if k not in ("ingest_runs", "stats")} | {"stats": json.loads(row["stats"])}


@app.command("stats")
def stats(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="the latest run for this as-of date (default: latest)"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Component sizes, the largest profiles (masked ids), hubs, blocked and expired identifiers, limit splits."""
    from cdp_spark.runtime import metadata_lake

    with exit_codes():
        day = parse_as_of(as_of).isoformat() if as_of else None
        run = latest_run(metadata_lake(read_config(conf)), day)
        if run is None:
            raise fail("no identity run yet" + (f" for {day}" if day else ""),
                       "run `cdp run identity` (or `cdp run daily`) first")
        if as_json:
            print_json(run)
            return
        s = run["stats"]
        out.print(f"identity run [bold]{run['run_id']}[/bold] as of {run['as_of']}: {run['mode']} ({run['reason']}), "
                  f"{run['records_read']:,} records read, {run['vertices_resolved']:,} identifiers resolved, "
                  f"{s.get('iterations', 0)} component rounds ({s.get('engine', '?')})")
        out.print(f"profiles: {s['profiles']:,}   identifiers: "
                  + ", ".join(f"{k} {v:,}" for k, v in s.get("identifiers", {}).items()))
        sizes = Table("profile size", "profiles", title="component size distribution")
        for label, n in s["size_histogram"].items():
            sizes.add_row(label, f"{n:,}")
        top = Table("profile (masked)", "identifiers", title="largest profiles")
        for p in s["largest_profiles"]:
            top.add_row(p["profile_id"], f"{p['size']:,}")
        rules = Table("what", "count", title="rules")
        rules.add_row("hubs dropped (shared identifiers)", f"{s['hubs_dropped']:,}")
        rules.add_row("identifiers expired (TTL)", f"{s.get('identifiers_expired', 0):,}")
        rules.add_row("links expired (TTL)", f"{s['links_expired']:,}")
        for t, hit in s["blocked_values_hit"].items():
            rules.add_row(f"blocked {t}", f"{hit['occurrences']:,} occurrences, {hit['distinct_values']:,} values")
        for k, v in s["limit_splits"].items():
            rules.add_row(f"limit splits: {k.replace('_', ' ')}", f"{v:,}")
        for table in (sizes, top, rules):
            out.print(table)


@app.command("run")
def run(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="business date YYYY-MM-DD (default: today, UTC)"),
    full: bool = typer.Option(False, "--full", help="rebuild from all of bronze (needed after a rule change)"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Run the identity stage (recorded in the ledger like `cdp run identity`), incremental unless --full."""
    from cdp_spark.pipeline import STAGES, run_job
    from cdp_spark.runtime import Runtime

    with exit_codes():
        config = read_config(conf)
        day = parse_as_of(as_of)
        registry = {**STAGES, "identity": "cdp_spark.identity.stage:run_full"} if full else None
        with err.status(f"running identity{' --full' if full else ''} for {day} ..."):
            rt = Runtime.start(config)
            report = run_job(rt.spark, rt.config, rt.lake, "identity", day, params={"full": full}, registry=registry)
        if as_json:
            print_json(report.to_dict())
            return
        m = report.results["identity"].metrics
        out.print(f"[green]identity {report.status}[/green] for {day} (run {report.run_id}): "
                  + (m["skipped"] if "skipped" in m else f"{m['mode']} ({m['mode_reason']}), {m['profiles']:,} profiles"))
