"""The `cdp` command line: run the pipeline, inspect tables and runs, check config, make demo data.

Exit codes schedulers can trust: 0 success, 1 a stage or lake operation failed, 2 bad configuration or usage.

Example:
    $ cdp run daily --as-of 2026-11-01 --conf conf/cdp.yaml
    $ cdp runs --json
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.table import Table

from cdp_spark.cli_common import (ActionableError, ConfOption, JsonOption, err, exit_codes, fail, log_note, out,
                                  print_error, print_json, progress_display, read_config, require_lake, shown)
from cdp_spark.config import CdpConfig, load_config_with_sources
from cdp_spark.jars import JarsError
from cdp_spark.ops import logs
from cdp_spark.api.cli import serve as api_serve
from cdp_spark.domain_spec import load
from cdp_spark.domains import CLI

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="cdp-spark: Customer Data Platform on Spark + Delta.")
config_app = typer.Typer(no_args_is_help=True, help="Configuration commands.")
app.add_typer(config_app, name="config")
log = logging.getLogger("cdp_spark.cli")

DEFAULT_CONF = "conf/cdp.yaml"


@app.callback()
def _options(
    verbose: bool = typer.Option(False, "--verbose", "-v", envvar="CDP_VERBOSE",
                                 help="show Spark's, MLflow's and the other libraries' logs here instead of in the "
                                      "log file under the lake (also accepted after the command: cdp demo -v)"),
) -> None:
    """The options of every command. `main` reads ``--verbose`` itself: logs are routed before parsing starts."""


@app.command()
def run(
    job: str = typer.Argument(..., help="a stage name, or 'daily' for the whole pipeline"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="business date YYYY-MM-DD (default: today, UTC)"),
    resume: bool = typer.Option(False, "--resume", help="skip the stages the last run for this as-of finished"),
    log_json: bool = typer.Option(False, "--log-json", envvar="CDP_LOG_JSON", help="one JSON object per log line"),
    log_level: str = typer.Option("INFO", "--log-level", envvar="CDP_LOG_LEVEL", help="DEBUG, INFO, WARNING, ERROR"),
    allow_snapshot_deletes: Optional[list[str]] = typer.Option(
        None, "--allow-snapshot-deletes", metavar="SOURCE",
        help="apply this snapshot source's delivery even if it deletes more than its max_delete_share of the "
             "keys (repeatable; recorded in the ledger)"),
    full: bool = typer.Option(False, "--full", help="rebuild the incremental stages (identity, profiles) from all "
                              "of their input instead of the day's changes"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Run one stage or the daily pipeline for an as-of date, holding the lake's pipeline lease."""
    from cdp_spark.ops.cli import run_command

    run_command(job, as_of, conf, as_json, resume, log_json, log_level, allow_snapshot_deletes or [], full=full)


@app.command()
def tables(conf: str = ConfOption, as_json: bool = JsonOption) -> None:
    """Every existing table: name, version, rows, files and size."""
    from cdp_spark.runtime import metadata_lake

    with exit_codes():
        config = read_config(conf)
        require_lake(config, conf)
        infos = metadata_lake(config).tables()
        if as_json:
            print_json([i.__dict__ for i in infos])
            return
        table = Table("table", "version", "rows", "files", "size", "partitioned by")
        for i in infos:
            table.add_row(i.name, str(i.version), f"{i.rows:,}", str(i.files), _size(i.size_bytes), ", ".join(i.partition_by))
        out.print(table if infos else "no tables yet: run `cdp demo` or `cdp run daily`")


@app.command()
def history(
    table_name: str = typer.Argument(..., metavar="TABLE", help="logical name, e.g. ops.job_runs"),
    limit: int = typer.Option(20, help="how many commits"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """The commits of one table, newest first."""
    from cdp_spark.runtime import metadata_lake

    with exit_codes():
        config = read_config(conf)
        lake = metadata_lake(config)
        lake.spec(table_name)  # an unknown name is the first thing to fix
        require_lake(config, conf)
        commits = lake.history(table_name, limit)
        if as_json:
            print_json(commits)
            return
        table = Table("version", "time (UTC)", "operation", "cdp operation", "parameters")
        for c in commits:
            when = dt.datetime.fromtimestamp(c["timestamp"] / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(str(c["version"]), when, c.get("operation", ""), c.get("cdp.operation", ""),
                          json.dumps(c.get("operationParameters", {}))[:60])
        out.print(table)


@app.command()
def runs(
    limit: int = typer.Option(30, help="how many rows"),
    job: Optional[str] = typer.Option(None, help="only this job or stage"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """The job ledger: recent runs and stages, with stale runs flagged."""
    from cdp_spark.ops.ledger import Ledger
    from cdp_spark.runtime import metadata_lake

    with exit_codes():
        config = read_config(conf)
        require_lake(config, conf)
        rows = Ledger(metadata_lake(config), stale_after_minutes=config.pipeline.stale_after_minutes).runs(
            limit=limit, job=job
        )
        if as_json:
            print_json(rows)
            return
        table = Table("run_id", "step", "as_of", "status", "started (UTC)", "seconds", "rows out", "error")
        colors = {"succeeded": "green", "failed": "red", "stale": "yellow", "running": "cyan"}
        for r in rows:
            seconds = (r["ended_at"] - r["started_at"]).total_seconds() if r["ended_at"] else None
            table.add_row(
                r["run_id"], r["step"], str(r["as_of"]), f"[{colors.get(r['status'], 'white')}]{r['status']}[/]",
                r["started_at"].strftime("%Y-%m-%d %H:%M:%S"), f"{seconds:.1f}" if seconds is not None else "",
                f"{sum(r['rows_out'].values()):,}", (r["error"] or "")[:80],
            )
        out.print(table if rows else "no runs yet")


@app.command()
def keys(
    source: str = typer.Argument(..., help="source name from conf/sources"),
    unmapped: bool = typer.Option(False, "--unmapped", help="only keys not mapped to the catalogue"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Raw keys seen in a source: predicted type, first/last seen, times seen, approx. distinct, mapped.

    Records routed to a diverted stream (QA, test traffic) are counted here like any other; the latest runs'
    number of them is shown under the table."""
    from cdp_spark.ingest.report import raw_keys
    from cdp_spark.ops.ledger import Ledger
    from cdp_spark.ops.status import ingestion
    from cdp_spark.runtime import Runtime

    with exit_codes():
        rt = Runtime.start(read_config(conf))
        rows = raw_keys(rt.lake, source, unmapped_only=unmapped)
        if as_json:
            print_json(rows)
            return
        table = Table("key", "type", "first seen", "last seen", "times seen", "~distinct", "mapped")
        for r in rows:
            table.add_row(r["key"], r["predicted_type"], str(r["first_seen"])[:19], str(r["last_seen"])[:19],
                          f"{r['times_seen']:,}", f"{r['approx_distinct']:,}", "yes" if r["mapped"] else "[yellow]no[/]")
        out.print(table if rows else f"no keys recorded for source {source!r} yet")
        runs = ingestion(Ledger(rt.lake).runs(limit=0))
        diverted = {name: s["diverted"] for name, s in runs.items() if name.split(" ")[0] == source and s.get("diverted")}
        for name, n in diverted.items():
            out.print(f"{name}: {n:,} record(s) of the latest run went to a diverted stream (in bronze and counted "
                      "above; left out of identity, profiles, scores and audiences)")


@app.command()
def quarantine(
    source: Optional[str] = typer.Option(None, "--source", "-s", help="only this source"),
    samples: int = typer.Option(2, help="sample records per reason (PII masked)"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Quarantined records: reasons with counts and masked samples."""
    from cdp_spark.ingest.report import quarantine_summary
    from cdp_spark.runtime import Runtime

    with exit_codes():
        rt = Runtime.start(read_config(conf))
        rows = quarantine_summary(rt.lake, source, samples=samples)
        if as_json:
            print_json(rows)
            return
        table = Table("source", "reason", "records", "sample (masked)")
        for r in rows:
            table.add_row(r["source"], r["reason"], f"{r['records']:,}", "\n".join(r["samples"]))
        out.print(table if rows else "nothing in quarantine")


@config_app.command("check")
def config_check(conf: str = ConfOption, as_json: bool = JsonOption) -> None:
    """Validate the configuration and print it resolved, with secrets redacted."""
    with exit_codes():
        loaded = load_config_with_sources(conf)
        data = loaded.redacted()
        from cdp_spark.ingest.sources import config_notes

        for note in config_notes(loaded.config):
            err.print(f"note: {note}", highlight=False)
        if as_json:
            print_json(data)
        else:
            import yaml

            out.print(f"[green]{conf}: valid[/green]")
            out.print(yaml.safe_dump(data, sort_keys=False), highlight=False)


@app.command()
def capabilities(conf: str = ConfOption, as_json: bool = JsonOption) -> None:
    """Start Spark and report what it can do: Java, Spark version, the cached jar bundles and which JVM classes
    (Delta, Kafka, GraphFrames) load."""
    from cdp_spark import jars
    from cdp_spark.spark import capabilities as detect
    from cdp_spark.spark import check_java
    from cdp_spark.spark import session

    with exit_codes(), _jars_errors():
        config = read_config(conf)
        java = check_java()
        spark = session(config)
        caps = {"java": java, **detect(spark).describe(), "engine_jars": config.engine.jars,
                "cached_bundles": [name for name in jars.BUNDLES if jars.cached_bundle(name) is not None]}
        caps["lake_backend"] = "delta-spark" if config.lake.backend == "delta-spark" or (
            config.lake.backend == "auto" and caps["delta_jvm"]) else "embedded"
        if as_json:
            print_json(caps)
        else:
            for key, value in caps.items():
                out.print(f"{key:16} {', '.join(value) if isinstance(value, list) else value}")


jars_app = typer.Typer(no_args_is_help=True, help="The pinned JVM jars (Delta, Kafka, ...): fetch once, then offline.")
app.add_typer(jars_app, name="jars")


@contextlib.contextmanager
def _jars_errors() -> Iterator[None]:
    try:
        yield
    except JarsError as exc:
        raise fail(str(exc), "check that `mvn` is installed and reaches Maven Central (or your mirror); "
                             "`cdp jars list` shows what is cached", title="jars") from None


@jars_app.command("fetch")
def jars_fetch(
    bundles: Optional[list[str]] = typer.Argument(None, help="bundles to fetch (default: the runtime ones)"),
    force: bool = typer.Option(False, "--force", help="resolve again even when cached"),
    as_json: bool = JsonOption,
) -> None:
    """Resolve the pinned jars with Maven into the per-user cache; sessions load them from there, offline."""
    from cdp_spark import jars

    with _jars_errors():
        fetched = jars.fetch(bundles or jars.default_bundles(), force=force)
        if as_json:
            print_json([b.describe() for b in fetched])
            return
        for b in fetched:
            d = b.describe()
            out.print(f"{b.name}: {d['jars']} jars, {_size(int(d['bytes']))} in {b.directory}")


@jars_app.command("list")
def jars_list(as_json: bool = JsonOption) -> None:
    """The pinned bundles, their Maven coordinates and whether they are in the cache."""
    from cdp_spark import jars

    rows = [{"bundle": b.name, "coordinates": list(b.coordinates), "purpose": b.purpose,
             "on_classpath": b.on_classpath, "cached": jars.cached_bundle(b.name) is not None}
            for b in jars.BUNDLES.values()]
    if as_json:
        print_json({"cache": str(jars.cache_dir()), "spark": jars.SPARK_VERSION, "bundles": rows})
        return
    table = Table("bundle", "coordinates", "cached", "purpose")
    for r in rows:
        table.add_row(r["bundle"], "\n".join(r["coordinates"]), "yes" if r["cached"] else "[yellow]no[/]", r["purpose"])
    out.print(f"jar cache: {jars.cache_dir()} (Spark {jars.SPARK_VERSION})")
    out.print(table)


@app.command()
def generate(
    people: Optional[int] = typer.Option(None, help="people in the demo retailer (default from config)"),
    days: Optional[int] = typer.Option(None, help="days of history"),
    seed: Optional[int] = typer.Option(None, help="random seed; same seed, same data"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="output folder (default <lake.root>/demo)"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Generate the deterministic demo retailer's source files."""
    from cdp_spark.runtime import Runtime

    with exit_codes():
        config = _with_demo_overrides(read_config(conf), people, days, seed, out_dir)
        with err.status("generating demo data ..."):
            rt = Runtime.start(config)
            summary = _generate(rt)
        _show_summary(summary.to_dict(), as_json)


@app.command()
def demo(
    people: Optional[int] = typer.Option(None, help="people in the demo retailer (default from config)"),
    days: Optional[int] = typer.Option(None, help="days of history"),
    seed: Optional[int] = typer.Option(None, help="random seed"),
    realtime: bool = typer.Option(False, "--realtime", help="send the last day's web events through a loopback "
                                  "collector and the stream instead of the batch load"),
    next_days: Optional[int] = typer.Option(None, "--next-days", min=1, help="grow the demo already run by N days: "
                                            "land each new day's files and run the daily pipeline for it"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Generate demo data, run the daily pipeline on it, and summarise the tables.

    In a folder without a project (no conf/cdp.yaml) it runs on the packaged configuration, with the lake in ./lake.
    With ``--next-days N`` the same world (same people, days and seed) grows by N days after the last one landed,
    one daily run per new day; files landed before are left as they are.
    """
    from cdp_spark.config.starter import default_config_path
    from cdp_spark.ops import progress
    from cdp_spark.pipeline import run_job
    from cdp_spark.runtime import Runtime

    with exit_codes():
        packaged = conf == DEFAULT_CONF and not Path(conf).exists() and "CDP_CONF" not in os.environ
        config = _with_demo_overrides(read_config(str(default_config_path()) if packaged else conf), people, days, seed,
                                      None)
        logs.log_file(config.lake.root)  # the first line says where the library logs go
        if packaged:
            err.print(f"no {DEFAULT_CONF} here: the demo runs on cdp-spark's packaged configuration, lake in "
                      f"{config.lake.root} (`cdp init` writes a project to edit)", highlight=False, soft_wrap=True)
        with progress_display():
            with progress.step("spark", "Spark"):
                rt = Runtime.start(config)
            if next_days is not None:
                _show_growth(_grow_demo(rt, next_days), as_json)
                return
            with progress.step("generate", "demo data"):
                summary = _generate(rt)
            realtime_metrics = None
            if realtime:
                from cdp_spark.collect.replay import replay_demo_day

                with progress.step("realtime", "real time"):
                    realtime_metrics = replay_demo_day(rt.spark, rt.config, rt.lake)
            from cdp_spark.activation.receiver import demo_receiver  # serves the demo's webhook destination

            with demo_receiver(rt.config) as run_config:
                report = run_job(rt.spark, run_config, rt.lake, "daily", config.demo.end_date)
        infos = rt.lake.tables()
        if as_json:
            print_json({"demo": summary.to_dict(), "realtime": realtime_metrics, "run": report.to_dict(),
                         "tables": [i.__dict__ for i in infos]})
            return
        out.print(f"[green]demo data[/green]: {summary.landing_dir} ({sum(summary.counts.values()):,} rows)")
        if realtime_metrics:
            r, s = realtime_metrics["replay"], realtime_metrics["stream"]
            out.print(f"[green]real time[/green]: {r['sent']:,} messages in {r['requests']} requests → stream accepted "
                      f"{s['accepted']:,}, quarantined {s['quarantined']:,}, suppressed {s['suppressed']:,}, "
                      f"duplicates {s['duplicates']:,}")
        out.print(f"[green]daily run {report.status}[/green] as of {report.as_of} (run {report.run_id})")
        table = Table("table", "version", "rows", "files", "size")
        for i in infos:
            table.add_row(i.name, str(i.version), f"{i.rows:,}", str(i.files), _size(i.size_bytes))
        out.print(table)
        _print_next_commands(rt.config, None if packaged or conf == DEFAULT_CONF else conf, init_first=packaged)


def _grow_demo(rt, next_days: int) -> list:  # type: ignore[no-untyped-def]
    """Grow the demo world by ``next_days`` days: land each day's files, then run the daily pipeline as of it."""
    from cdp_spark.activation.receiver import demo_receiver
    from cdp_spark.demo import grow
    from cdp_spark.ops import progress
    from cdp_spark.pipeline import run_job

    d = rt.config.demo
    with progress.step("generate", f"the next {next_days} demo days"):
        growth = grow(rt.spark, rt.config.demo_dir, people=d.people, days=d.days, seed=d.seed, end_date=d.end_date,
                      next_days=next_days, truth_dir=rt.config.demo_truth_dir)
    reports = []
    try:
        with demo_receiver(rt.config) as run_config:
            for day in growth.days:
                growth.land(rt.spark, day)
                reports.append(run_job(rt.spark, run_config, rt.lake, "daily", day))
    finally:
        growth.close(rt.spark)
    return reports


def _show_growth(reports: list, as_json: bool) -> None:  # type: ignore[type-arg]
    if as_json:
        print_json({"runs": [r.to_dict() for r in reports]})
        return
    for report in reports:
        out.print(f"[green]daily run {report.status}[/green] as of {report.as_of} (run {report.run_id})")


def _print_next_commands(config: CdpConfig, conf: str | None, *, init_first: bool) -> None:
    """What to try after the demo, runnable as printed (with --conf when the demo was not run on ./conf)."""
    flag = f" --conf {conf}" if conf else ""
    audience = config.audiences[0].name if config.audiences else None
    steps = [("cdp init", "a project of your own here (conf/), reading this same lake")] if init_first else []
    steps += [(f"cdp status{flag}", "last runs, table freshness, streaming lag"),
              (f"cdp runs{flag}", "the job ledger"),
              (f"cdp api keys create console --scopes read,pii{flag}", "a key for the web console (shown once)"),
              (f"cdp api serve{flag}",
               f"the Profile API and the console at http://{config.api.host}:{config.api.port}/console"),  # type: ignore[attr-defined]
              (f"cdp report --out report.html{flag}", "a self-contained HTML run report")]
    if audience:
        steps.append((f"cdp audience preview {audience}{flag}", "an audience's size and a masked sample"))
    width = max(len(c) for c, _ in steps)
    out.print("[bold]next:[/bold]")
    for command, what in steps:
        out.print(f"  {command:<{width}}  [dim]{what}[/dim]", highlight=False, soft_wrap=True)


@app.command()
def init(
    directory: Path = typer.Argument(Path("."), help="project folder (created when missing; default: here)"),
    as_json: bool = JsonOption,
) -> None:
    """Write a commented starter project: conf/ with the catalogue, example sources, identity rules, attributes,
    scores, two audiences and a file destination."""
    from cdp_spark.config.starter import CONF_DIR, MAIN_FILE, ProjectExistsError, init_project

    with exit_codes():
        try:
            written = init_project(directory)
        except ProjectExistsError as exc:
            raise fail(str(exc), f"edit the configuration in {directory / CONF_DIR}, or run `cdp init` in another "
                                 "folder", code=2) from None
        if as_json:
            print_json({"conf": str(directory / CONF_DIR / MAIN_FILE), "files": [str(p) for p in written]})
            return
        out.print(f"[green]starter project written[/green]: {directory / CONF_DIR} ({len(written)} files; every "
                  "key is explained in the files and in docs/configuration.md)", highlight=False)
        here = directory.resolve() == Path.cwd().resolve()
        out.print("[bold]next:[/bold]")
        if not here:
            out.print(f"  cd {directory}", highlight=False)
        out.print("  cdp demo            [dim]demo data through the whole pipeline, lake in ./lake[/dim]")
        out.print("  cdp config check    [dim]validate the configuration after editing it[/dim]")


def _with_demo_overrides(config: CdpConfig, people, days, seed, out_dir) -> CdpConfig:  # type: ignore[no-untyped-def]
    updates = {k: v for k, v in {"people": people, "days": days, "seed": seed}.items() if v is not None}
    if out_dir is not None:
        updates["out_dir"] = str(out_dir)
    demo_cfg = config.demo.model_validate({**config.demo.model_dump(), **updates})
    return config.model_copy(update={"demo": demo_cfg})


def _generate(rt):  # type: ignore[no-untyped-def]
    from cdp_spark.demo import generate as make

    d = rt.config.demo
    return make(rt.spark, rt.config.demo_dir, people=d.people, days=d.days, seed=d.seed, end_date=d.end_date,
                truth_dir=rt.config.demo_truth_dir)


def _show_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(summary)
        return
    table = Table("output", "rows")
    for name, rows in summary["counts"].items():
        table.add_row(name, f"{rows:,}")
    out.print(f"demo data in {summary['out_dir']}")
    out.print(table)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


# The domains' commands, as they declare them: a Typer app is a command group, a function one command.
for _name, _target in CLI:
    _command = load(_target)
    if isinstance(_command, typer.Typer):
        app.add_typer(_command, name=_name)
    else:
        app.command(_name)(_command)

collect_app = typer.Typer(no_args_is_help=True, help="Real-time collection: the collector and its stream.")
app.add_typer(collect_app, name="collect")


@collect_app.command("serve")
def collect_serve(
    host: Optional[str] = typer.Option(None, help="bind address (default collector.host)"),
    port: Optional[int] = typer.Option(None, help="port (default collector.port)"),
    workers: Optional[int] = typer.Option(None, help="uvicorn worker processes (default collector.workers)"),
    conf: str = ConfOption,
) -> None:
    """Run the Segment-compatible HTTP collector (blocking)."""
    from cdp_spark.collect.app import serve

    with exit_codes():
        serve(read_config(conf), host=host, port=port, workers=workers, conf_path=conf)


@collect_app.command("stream")
def collect_stream(
    available_now: bool = typer.Option(False, "--available-now", help="process what has landed, then stop"),
    source: Optional[list[str]] = typer.Option(None, "--source", "-s", help="only these collector sources"),
    timeout: Optional[float] = typer.Option(None, help="stop after this many seconds (continuous mode)"),
    conf: str = ConfOption,
    as_json: bool = JsonOption,
) -> None:
    """Stream the landing zone into bronze exactly once (recorded in the ledger as collect_stream)."""
    from cdp_spark.collect.stream import StreamError, run_with_ledger
    from cdp_spark.runtime import Runtime

    with exit_codes():
        rt = Runtime.start(read_config(conf))
        try:
            metrics = run_with_ledger(rt.spark, rt.config, rt.lake, available_now=available_now, timeout=timeout,
                                      sources=source or None)
        except StreamError as exc:
            raise fail(str(exc), f"run the stream again: its checkpoint replays the failed micro-batch{log_note()}",
                       title="stream failed") from None
        if as_json:
            print_json(metrics)
            return
        for name, m in metrics["sources"].items():
            out.print(f"{name}: {m['batches']} batch(es), read {m['read_lines']:,}, accepted {m['accepted']:,}, "
                      f"quarantined {m['quarantined']:,}, suppressed {m['suppressed']:,}, duplicates {m['duplicates']:,}")


# The issue's and Segment users' name for the stream job; the same command as `cdp collect stream`.
app.command("stream", help="Alias of `cdp collect stream`.")(collect_stream)
# The console's own name for the same server: the web console under /console, with the Profile API beside it.
app.command("console", help="Alias of `cdp api serve`: the web console at /console and the Profile API.")(
    api_serve)


def run_cli() -> None:
    """The ``cdp`` console script: `main`, then `exit_process` with its exit code (1 for an unexpected error, 130
    for an interrupt, after printing it)."""
    import traceback

    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - printed as the interpreter would, then a clean exit
        traceback.print_exc()
        code = 1
    exit_process(code)


def exit_process(code: int) -> None:
    """End the process with ``code`` once everything is flushed, without the interpreter's finalization.

    Native threads can outlive a command: Arrow's I/O pool reading Delta tables through delta-rs' Python
    filesystem handler (``to_pyarrow_dataset``) calls back into Python. A thread that needs the GIL while the
    interpreter finalizes is ended with ``pthread_exit``, whose unwinding through Arrow's C++ frames aborts the
    process (SIGABRT: "terminate called without an active exception" or "Fatal Python error:
    PyGILState_Release"), long after the command's work was done and committed. So the Spark session is stopped,
    atexit handlers run and stdout/stderr are flushed while the interpreter is intact, then ``os._exit`` ends the
    process with the command's own exit code.

    Example:
        >>> exit_process(0)      # doctest: +SKIP
    """
    import atexit
    import os

    if "pyspark" in sys.modules:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            try:
                active.stop()
            except Exception:  # noqa: BLE001 - a JVM that is already gone has nothing left to stop
                pass
    atexit._run_exitfuncs()  # logging.shutdown, MLflow, tempfile clean-ups: what a normal exit would run
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be written anyway
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the process exit code.

    Library logs go to a log file under the lake while the command runs (``-v``: to the terminal); every error ends
    with a line saying what to do next.
    """
    args = _verbose_first(list(sys.argv[1:] if argv is None else argv))
    command = next((a for a in args if not a.startswith("-")), "cdp")
    verbose = args[:1] == ["--verbose"] or os.environ.get("CDP_VERBOSE", "").lower() in ("1", "true", "yes")

    def announce(path: Path) -> None:
        err.print(f"[dim]logs: {shown(path)} (`cdp -v {command}` shows them here)[/dim]", highlight=False,
                  soft_wrap=True)

    with logs.route_logs(command=command, verbose=verbose, announce=announce) as routing:
        try:
            code = app(args=args, prog_name="cdp", standalone_mode=False)
            return code if isinstance(code, int) else 0
        except typer.TyperException as exc:  # usage: unknown option, bad value, missing argument
            if type(exc).__name__ == "NoArgsIsHelpError":  # typer printed the help (its own check, by name too)
                return exc.exit_code
            ctx = getattr(exc, "ctx", None)
            print_error("error", exc.format_message(), f"see `{ctx.command_path if ctx else 'cdp'} --help`")
            return exc.exit_code
        except ActionableError as exc:  # raised outside a command's `exit_codes` (e.g. while parsing)
            print_error(exc.title, str(exc), exc.hint)
            return exc.code
        except (typer.Abort, KeyboardInterrupt):
            print_error("interrupted", command, "run the command again; `cdp run ... --resume` continues a pipeline")
            return 130
        except Exception as exc:
            from cdp_spark.pipeline import describe_error

            if routing.path is not None:  # frames only: the message may quote data values (shown scrubbed below)
                log.error("unexpected error: %s\n%s", describe_error(exc),
                          "".join(traceback.format_tb(exc.__traceback__)))
            if routing.verbose:
                traceback.print_exc()
            where = f"the traceback is in {shown(routing.path)}" if routing.path else "rerun with -v for the traceback"
            print_error("unexpected error", logs.scrub(describe_error(exc)), f"{where}; please report it with that log")
            return 1


def _verbose_first(args: list[str]) -> list[str]:
    """Move ``-v``/``--verbose`` to the front, where the ``cdp`` callback takes it, so that ``cdp demo -v`` works
    like ``cdp -v demo`` (arguments after ``--`` are left alone).

    Example:
        >>> _verbose_first(["demo", "--people", "300", "-v"])
        ['--verbose', 'demo', '--people', '300']
    """
    end = args.index("--") if "--" in args else len(args)
    if not any(a in ("-v", "--verbose") for a in args[:end]):
        return args
    return ["--verbose", *[a for a in args[:end] if a not in ("-v", "--verbose")], *args[end:]]


if __name__ == "__main__":  # pragma: no cover
    run_cli()
