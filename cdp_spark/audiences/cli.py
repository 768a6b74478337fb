"""`cdp audience ...` and `cdp activate <destination>`.

- ``cdp audience list``: the defined audiences with their references and variants (no Spark).
- ``cdp audience preview <name>``: evaluates the audience now (nothing is written) and prints its size, variant
  counts and a masked sample of members.
- ``cdp audience export <name> --csv [--out FILE]``: the current members (``gold.audience_members``) with
  profile id, variant, entered_at and the profile's email (the download mParticle offers).
- ``cdp activate <destination>``: runs activation for one destination (recorded in the ledger).

Example:
    $ cdp audience preview cart_abandoners --as-of 2026-11-01
    $ cdp audience export cart_abandoners --csv --out cart.csv
    $ cdp activate crm_file_drop --as-of 2026-11-01
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Optional

import typer

from cdp_spark.audiences.config import Audience
from cdp_spark.cli_common import ActionableError, ConfOption, JsonOption, fail

audience_app = typer.Typer(no_args_is_help=True, help="Audiences: list, preview (writes nothing), export members.")


def mask_value(value: Optional[str]) -> str:
    """Keep the first character and the domain of an email, a hint of other values.

    Example:
        >>> mask_value("jane.doe@example.com"), mask_value("c-12345")
        ('j***@example.com', 'c***5')
    """
    if not value:
        return ""
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"{value[:1]}***{value[-1:]}" if len(value) > 2 else "***"


def _find(config, name: str) -> Audience:  # type: ignore[no-untyped-def]
    for a in config.audiences:
        if a.name == name:
            return a
    names = ", ".join(a.name for a in config.audiences) or "none"
    raise ActionableError(f"unknown audience {name!r} (defined: {names})", code=2,
                          hint="`cdp audience list` shows the audiences; each is a file in conf/audiences/")


def preview_audience(spark, config, lake, name: str, as_of, sample: int = 5) -> dict:  # type: ignore[no-untyped-def]
    """Size, variant counts and a masked sample of one audience evaluated now; writes nothing.

    The audience's references are evaluated with it (they are part of its definition).
    """
    from pyspark.sql import functions as F

    from cdp_spark.audiences.stage import current_members, profiles_frame

    target = _find(config, name)
    needed = {target.name}
    todo = [target]
    by_name = {a.name: a for a in config.audiences}
    while todo:  # the audience and everything it references
        for r in todo.pop().references():
            if r not in needed and r in by_name:
                needed.add(r)
                todo.append(by_name[r])
    members, _, info = current_members(spark, config, lake, as_of, [a for a in config.audiences if a.name in needed])
    members = members.where(F.col("audience") == name).cache()
    size = members.count()
    variants = {r.variant: r["count"] for r in members.groupBy("variant").count().collect()}
    view = profiles_frame(spark, config, lake).select("profile_id", "identifiers")
    rows = members.join(view, "profile_id", "left").orderBy("profile_id").limit(sample).collect()
    members.unpersist()
    sample_rows = [{"profile_id": r.profile_id, "variant": r.variant,
                    "email": mask_value(((r.identifiers or {}).get("email") or [None])[0])} for r in rows]
    return {"audience": name, "as_of": as_of.isoformat(), "size": size, "variants": variants, "sample": sample_rows,
            "unavailable": info["unavailable"]}


def export_members(spark, config, lake, name: str, out) -> int:  # type: ignore[no-untyped-def]
    """Write the audience's current members as CSV to ``out`` (a text stream); returns the row count."""
    from pyspark.sql import functions as F

    from cdp_spark.audiences.stage import profiles_frame

    _find(config, name)
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["profile_id", "variant", "entered_at", "email"])
    if not lake.exists("gold.audience_members"):
        return 0
    members = lake.read("gold.audience_members").where(F.col("audience") == name)
    view = profiles_frame(spark, config, lake).select("profile_id", F.col("identifiers")["email"][0].alias("email"))
    n = 0
    for r in members.join(view, "profile_id", "left").orderBy("profile_id").toLocalIterator():
        w.writerow([r.profile_id, r.variant, r.entered_at.isoformat() if r.entered_at else "", r.email or ""])
        n += 1
    return n


@audience_app.command("list")
def list_audiences(conf: str = ConfOption, as_json: bool = JsonOption) -> None:
    """The defined audiences."""
    from cdp_spark.cli import _config, _exit_codes, _print_json, out

    with _exit_codes():
        config = _config(conf)
        rows = [{"name": a.name, "description": a.description, "enabled": a.enabled, "references": a.references(),
                 "variants": {v.name: v.weight for v in a.variants}} for a in config.audiences]
        if as_json:
            _print_json(rows)
            return
        for r in rows:
            out.print(f"{r['name']:32} {r['description']}")


@audience_app.command("preview")
def preview(name: str = typer.Argument(..., help="audience name"),
            as_of: Optional[str] = typer.Option(None, "--as-of", help="YYYY-MM-DD (default today, UTC)"),
            sample: int = typer.Option(5, help="sample members to show (masked)"),
            conf: str = ConfOption, as_json: bool = JsonOption) -> None:
    """Evaluate one audience now and print its size and a masked sample; writes nothing."""
    from cdp_spark.audiences.compiler import AudienceError
    from cdp_spark.cli import _as_of, _config, _exit_codes, _print_json, out
    from cdp_spark.runtime import Runtime

    with _exit_codes():
        config = _config(conf)
        _find(config, name)
        day = _as_of(as_of)
        rt = Runtime.start(config)
        try:
            result = preview_audience(rt.spark, rt.config, rt.lake, name, day, sample)
        except AudienceError as exc:
            raise fail(str(exc), f"fix the rule in conf/audiences/{name}.yaml, then `cdp config check`", code=2,
                       title="audience error") from None
        if as_json:
            _print_json(result)
            return
        out.print(f"[green]{name}[/green] as of {day}: {result['size']:,} members; variants: {result['variants']}")
        for r in result["sample"]:
            out.print(f"  {r['profile_id']}  {r['variant']}  {r['email']}")
        for kind, names in result["unavailable"].items():
            out.print(f"[yellow]note:[/yellow] {kind} do not exist yet: their conditions match nobody")


@audience_app.command("export")
def export(name: str = typer.Argument(..., help="audience name"),
           as_csv: bool = typer.Option(False, "--csv", help="CSV (the only format)"),
           out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="file (default stdout)"),
           conf: str = ConfOption) -> None:
    """Download an audience's current members as CSV (profile_id, variant, entered_at, email)."""
    from cdp_spark.cli import _config, _exit_codes, err
    from cdp_spark.runtime import Runtime

    if not as_csv:
        raise typer.BadParameter("only --csv is supported", param_hint="--csv")
    with _exit_codes():
        config = _config(conf)
        _find(config, name)
        rt = Runtime.start(config)
        if out_file is None:
            n = export_members(rt.spark, rt.config, rt.lake, name, sys.stdout)
        else:
            with out_file.open("w", newline="") as fh:
                n = export_members(rt.spark, rt.config, rt.lake, name, fh)
        err.print(f"{n:,} members of {name} exported" + (f" to {out_file}" if out_file else ""))


def activate(destination: str = typer.Argument(..., help="destination name (conf/destinations)"),
             as_of: Optional[str] = typer.Option(None, "--as-of", help="YYYY-MM-DD (default today, UTC)"),
             conf: str = ConfOption, as_json: bool = JsonOption) -> None:
    """Send audiences to one destination now (adds/removes since its last successful delivery, or a snapshot)."""
    from cdp_spark.activation import stage
    from cdp_spark.cli import _as_of, _config, _exit_codes, _print_json, out
    from cdp_spark.ops.ledger import Ledger
    from cdp_spark.runtime import Runtime

    with _exit_codes():
        config = _config(conf)
        day = _as_of(as_of)
        try:
            stage.selected(config, destination)
        except ValueError as exc:
            raise fail(str(exc), "each destination is a file in conf/destinations/; `cdp config check` lists them",
                       code=2) from None
        rt = Runtime.start(config)
        ledger = Ledger(rt.lake, stale_after_minutes=config.pipeline.stale_after_minutes)
        entry = ledger.start("activate", as_of=day, params={"destination": destination})
        try:
            result = stage.run(rt.spark, rt.config, rt.lake, day, only=destination)
        except Exception as exc:
            from cdp_spark.pipeline import describe_error

            ledger.finish(entry, "failed", error=describe_error(exc))
            raise
        failed = bool(result.metrics.get("failed_destinations"))
        ledger.finish(entry, "failed" if failed else "succeeded", rows_in=result.rows_in, rows_out=result.rows_out,
                      metrics=result.metrics, error="delivery failed" if failed else None)
        report = result.metrics["destinations"][destination]
        if as_json:
            _print_json(report)
        else:
            colour = "red" if failed else "green"
            out.print(f"[{colour}]{destination} {report['status']}[/{colour}]: considered {report['profiles_considered']:,}, "
                      f"sent {report['records_sent']:,} ({report['adds']:,} adds, {report['removes']:,} removes), "
                      f"skipped {report['skipped_consent']:,} for consent and {report['skipped_no_identifier']:,} "
                      f"without identifier; {report['batches']} batches, {report['retries']} retries")
        if failed:
            raise typer.Exit(1)
