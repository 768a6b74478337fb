"""Operations commands: `cdp run` (its body), `cdp maintain`, `cdp status`, `cdp report`.

Example:
    $ cdp run daily --as-of 2026-11-01 --resume --log-json
    $ cdp maintain
    $ cdp status --json
    $ cdp report --as-of 2026-11-01 --out report.html
"""
from __future__ import annotations

import contextlib
import signal
from typing import Any, Iterator, Optional

import typer
from rich.table import Table

from cdp_spark.cli_common import (ConfOption, JsonOption, err, exit_codes, fail, out, parse_as_of, print_json,
                                 progress_display, read_config, require_lake)


@contextlib.contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    """Schedulers stop jobs with SIGTERM: turn it into KeyboardInterrupt so the ledger and lease are closed."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a notebook worker): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_command(job: str, as_of: Optional[str], conf: str, as_json: bool, resume: bool, log_json: bool,
                log_level: str, allow_snapshot_deletes: Optional[list[str]] = None, full: bool = False) -> None:
    """The body of `cdp run`: fail fast on a held lease (before starting Spark), then run with the lease.

    Logs go to the command's log file under the lake (the terminal shows one line per stage). With ``--log-json``
    (schedulers) they are one JSON object per line on stderr, and under spark-submit or Databricks lines on stderr,
    where the cluster collects the driver's output; neither shows the progress display.
    """
    import logging

    from cdp_spark.ops import logs
    from cdp_spark.ops.lock import LeaseHeld, read_leases
    from cdp_spark.pipeline import FULL_STAGES, plan, run_job
    from cdp_spark.runtime import Runtime, metadata_lake
    from cdp_spark.spark import running_under_cluster

    to_stderr = log_json or running_under_cluster()
    if to_stderr:
        logs.configure_logging(json_format=log_json, level=log_level)
    else:
        logging.getLogger().setLevel(log_level.upper())
    with exit_codes():
        config = read_config(conf)
        day = parse_as_of(as_of)
        plan(config, job)  # fail fast on an unknown stage, before starting Spark
        params: dict[str, Any] = {"full": True} if full else {}
        if allow_snapshot_deletes:
            from cdp_spark.ingest.stage import allow_snapshot_deletes as allow

            try:
                config = allow(config, allow_snapshot_deletes)
            except ValueError as exc:
                raise fail(str(exc), "name one of the snapshot sources listed above",
                           code=2) from None
            params["allow_snapshot_deletes"] = sorted(allow_snapshot_deletes)
        held = [r for r in read_leases(metadata_lake(config)) if r["name"] == "pipeline" and r["state"] == "held"]
        if held:
            raise LeaseHeld("pipeline", held[0])
        if not to_stderr:
            logs.log_file(config.lake.root)
        display = contextlib.nullcontext() if to_stderr else progress_display()
        try:
            with display, _terminated_as_interrupt():
                rt = Runtime.start(config)
                report = run_job(rt.spark, rt.config, rt.lake, job, day, resume=resume, params=params,
                                 registry=FULL_STAGES if full else None)
        except KeyboardInterrupt:
            raise fail(f"{job} for {day}; the ledger records the stage as failed",
                       f"continue with `cdp run {job} --as-of {day} --resume`", code=130, title="interrupted") from None
        if as_json:
            print_json(report.to_dict())
        else:
            skipped = [s for s, st in report.stages.items() if st == "skipped"]
            note = f"; skipped (already done): {', '.join(skipped)}" if skipped else ""
            out.print(f"[green]{job} {report.status}[/green] for {day} (run {report.run_id}); "
                      f"stages: {', '.join(report.stages) or 'none registered yet'}{note}")


def maintain(
    table: Optional[list[str]] = typer.Option(None, "--table", "-t", help="only these tables (default: all)"),
    retention_hours: Optional[int] = typer.Option(
        None, "--retention-hours", min=1, help="vacuum retention (default lake.vacuum_retention_hours)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what vacuum would delete; change nothing"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Compact, vacuum (with the configured retention) and checkpoint every table; safe while readers run."""
    from cdp_spark.ops.maintain import maintain as run_maintain
    from cdp_spark.runtime import Runtime

    with exit_codes():
        config = read_config(conf)
        with err.status("maintaining tables ..."):
            rt = Runtime.start(config)
            result = run_maintain(rt.lake, rt.config, tables=table or None, retention_hours=retention_hours,
                                  dry_run=dry_run)
        if as_json:
            print_json(result.to_dict())
        else:
            grid = Table("table", "files before", "files after", "vacuumed", "version", "seconds")
            for name, t in result.tables.items():
                grid.add_row(name, str(t["files_before"]), str(t["files_after"]), str(t["vacuumed"]),
                             f"{t['version_before']} → {t['version_after']}", f"{t['seconds']:.1f}")
            out.print(grid)
            for name, error in result.errors.items():
                err.print(f"[red]{name}:[/red] {error}", highlight=False)
        if not result.ok:

            raise fail(f"maintenance failed for {', '.join(result.errors)}",
                       "the errors are listed above; the other tables were maintained, rerun `cdp maintain` once fixed")


def status(
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """One screen: last run per stage, table freshness, ingestion per source, streaming lag, failing destinations,
    the lease."""
    from cdp_spark.ops.status import status as gather
    from cdp_spark.runtime import metadata_lake

    with exit_codes():
        config = read_config(conf)
        require_lake(config, conf)
        summary = gather(metadata_lake(config), config)
        if as_json:
            print_json(summary)
            return
        colors = {"succeeded": "green", "failed": "red", "stale": "yellow", "running": "cyan", "skipped": "blue"}
        runs = Table("stage / job", "status", "as of", "started (UTC)", "seconds", "error", title="last runs")
        for name, r in summary["stages"].items():
            runs.add_row(name, f"[{colors.get(r['status'], 'white')}]{r['status']}[/]", str(r["as_of"]),
                         r["started_at"].strftime("%Y-%m-%d %H:%M"), "" if r["seconds"] is None else f"{r['seconds']:.0f}",
                         (r["error"] or "")[:60])
        out.print(runs if summary["stages"] else "no runs yet: `cdp run daily`")
        tables = Table("table", "version", "rows", "last commit (UTC)", "age (h)", "operation", title="freshness")
        for t in summary["tables"]:
            tables.add_row(t["table"], str(t["version"]), f"{t['rows']:,}",
                           t["last_commit"].strftime("%Y-%m-%d %H:%M") if t["last_commit"] else "",
                           "" if t["age_hours"] is None else f"{t['age_hours']:.1f}", str(t["operation"] or ""))
        out.print(tables)
        if summary["ingestion"]:
            ingest = Table("source", "files", "records in", "accepted", "quarantined", "duplicates", "suppressed",
                           "diverted", "reconciled", title="ingestion (latest runs)")
            for name, s in summary["ingestion"].items():
                ingest.add_row(name, *[f"{s.get(k, 0):,}" for k in ("files_ingested", "read", "accepted", "quarantined",
                                                                     "duplicates", "suppressed", "diverted")],
                               {True: "[green]yes[/]", False: "[red]no[/]"}.get(s.get("reconciled"), ""))
            out.print(ingest)
            for name, s in summary["ingestion"].items():
                if s.get("refused"):
                    out.print(f"[red]{name}: delivery refused[/red]: {s['refused']}", soft_wrap=True, highlight=False)
                if s.get("quarantine_reasons"):
                    by_reason = sorted(s["quarantine_reasons"].items(), key=lambda kv: (-kv[1], kv[0]))
                    out.print(f"{name}: quarantined by reason: " + ", ".join(f"{r} {n:,}" for r, n in by_reason),
                              soft_wrap=True, highlight=False)
                for f in s.get("problem_files", []):
                    out.print(f"[red]{name}: file not read[/red]: {f['path']} ({f['status']}: {f.get('error')})",
                              soft_wrap=True, highlight=False)
        if summary["streaming"]:
            lag = ", ".join(f"{s}: {v['max_lag_s']} s" for s, v in summary["streaming"].items())
            out.print(f"streaming lag (latest run): {lag}")
        else:
            out.print("streaming lag: no stream runs yet")
        failing = summary["failing_destinations"]
        out.print(f"failing destinations: [red]{', '.join(failing)}[/red]" if failing else
                  ("destinations: all ok" if summary["destinations"] else "destinations: no activation runs yet"))
        for lease in summary["leases"]:
            if lease["state"] != "free":
                out.print(f"lease {lease['name']}: {lease['state']} by run {lease['holder']} "
                          f"(host {lease['host']}, pid {lease['pid']}, expires {lease['expires_at']:%Y-%m-%d %H:%M} UTC)")


def report(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="business date YYYY-MM-DD (default: today, UTC)"),
    out_file: str = typer.Option("report.html", "--out", "-o", help="where to write the HTML page"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Write the self-contained HTML run report (charts with their numbers) for an as-of date."""
    from cdp_spark.ops.report import write_report
    from cdp_spark.runtime import Runtime

    with exit_codes():
        config = read_config(conf)
        require_lake(config, conf)
        day = parse_as_of(as_of)
        with err.status(f"building the report for {day} ..."):
            rt = Runtime.start(config)
            built = write_report(rt.lake, rt.config, day, out_file)
        sections = {s.key: ("data" if s.has_data else (s.note or "no data yet")) for s in built.sections}
        if as_json:
            print_json({"out": out_file, "as_of": day, "sections": sections})
        else:
            out.print(f"[green]report written[/green]: {out_file} "
                      f"({sum(1 for v in sections.values() if v == 'data')} of {len(sections)} sections with data)")
