"""`cdp audience ...` and `cdp activate <destination>`.

- ``cdp audience list``: the defined audiences with their references and variants (no Spark).
- ``cdp audience preview <name>``: evaluates the audience now (nothing is written) and prints its size, variant
  counts and a masked sample of members.
- ``cdp audience export <name> --csv [--out FILE] [--consent P] [--include-pii]``: the current members
  (``gold.audience_members``) with profile id, variant, entered_at and the profile's email (the download mParticle
  offers), under activation's rules (holdouts never, consent required), emails masked unless ``--include-pii``,
  every export audited in ``ops.audience_exports``.
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
from cdp_spark.cli_common import (ActionableError, ConfOption, JsonOption, err, exit_codes, fail, out, parse_as_of,
                                 print_json, read_config)

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


def export_members(spark, config, lake, name: str, out, *, consent: Optional[list[str]] = None,  # type: ignore[no-untyped-def]
                   include_pii: bool = False, target: str = "stdout") -> dict:
    """Write the audience's current members as CSV to ``out`` (a text stream) under activation's rules, and
    record the export in ``ops.audience_exports``; returns that audit record.

    Holdout variants are never exported and a member is exported only when every purpose of ``consent`` (default:
    every consent purpose of the catalogue) is granted, both decided by the activation stage's own functions.
    Emails are masked unless ``include_pii``.

    Example:
        >>> export_members(spark, config, lake, "cart_abandoners", sys.stdout, consent=["email_marketing"])["rows"]  # doctest: +SKIP
        42
    """
    import datetime as dt
    import getpass
    import hashlib
    import socket
    import uuid

    from pyspark.sql import functions as F

    from cdp_spark.activation.config import AudienceLink
    from cdp_spark.activation.records import consented
    from cdp_spark.activation.stage import linked_members, members_for
    from cdp_spark.audiences.tables import AUDIENCE_EXPORTS

    _find(config, name)
    purposes = export_purposes(config, consent)
    digest = hashlib.sha256()

    class _Hashed:  # what is written is also hashed, for the audit record
        def write(self, text: str) -> int:
            digest.update(text.encode("utf-8"))
            return out.write(text)

    w = csv.writer(_Hashed(), lineterminator="\n")
    w.writerow(["profile_id", "variant", "entered_at", "email"])
    members = linked_members(config, lake, [AudienceLink(name=name)])
    counts = {"members": 0, "holdouts_excluded": 0, "skipped_consent": 0, "rows": 0}
    if members is not None:
        counts["holdouts_excluded"] = (lake.read("gold.audience_members").where(F.col("audience") == name).count()
                                       - members.count())
        for m in members_for(spark, config, lake, members, sort=True):
            counts["members"] += 1
            if not consented(m, purposes):
                counts["skipped_consent"] += 1
                continue
            email = ((m.identifiers or {}).get("email") or [None])[0]
            w.writerow([m.profile_id, m.variant, m.entered_at.isoformat() if m.entered_at else "",
                        (email or "") if include_pii else mask_value(email)])
            counts["rows"] += 1
    record = {"export_id": "ax_" + uuid.uuid4().hex[:24], "exported_at": dt.datetime.now(dt.timezone.utc),
              "audience": name, "exported_by": getpass.getuser(), "host": socket.gethostname(), "target": target,
              "consent": purposes, "include_pii": include_pii, **counts, "sha256": digest.hexdigest()}
    lake.append_rows(AUDIENCE_EXPORTS.name, [tuple(record[c] for c in AUDIENCE_EXPORTS.schema.fieldNames())])
    return record


def export_purposes(config, consent: Optional[list[str]]) -> list[str]:  # type: ignore[no-untyped-def]
    """The purposes an export requires: those given, else every consent purpose of the catalogue.

    Example:
        >>> export_purposes(config, ["email_marketing"])    # doctest: +SKIP
        ['email_marketing']
    """
    known = list(config.catalogue.group("consent"))
    if not consent:
        return known
    unknown = sorted(set(consent) - set(known))
    if unknown:
        raise typer.BadParameter(f"unknown consent purpose(s) {', '.join(unknown)} (known: {', '.join(known) or 'none'})",
                                 param_hint="--consent")
    return sorted(set(consent))


@audience_app.command("list")
def list_audiences(conf: str = ConfOption, as_json: bool = JsonOption) -> None:
    """The defined audiences."""

    with exit_codes():
        config = read_config(conf)
        rows = [{"name": a.name, "description": a.description, "enabled": a.enabled, "references": a.references(),
                 "variants": {v.name: v.weight for v in a.variants}} for a in config.audiences]
        if as_json:
            print_json(rows)
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
    from cdp_spark.runtime import Runtime

    with exit_codes():
        config = read_config(conf)
        _find(config, name)
        day = parse_as_of(as_of)
        rt = Runtime.start(config)
        try:
            result = preview_audience(rt.spark, rt.config, rt.lake, name, day, sample)
        except AudienceError as exc:
            raise fail(str(exc), f"fix the rule in conf/audiences/{name}.yaml, then `cdp config check`", code=2,
                       title="audience error") from None
        if as_json:
            print_json(result)
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
           consent: Optional[list[str]] = typer.Option(
               None, "--consent", metavar="PURPOSE",
               help="purpose every exported member must have granted (repeatable; default: every catalogue purpose)"),
           include_pii: bool = typer.Option(False, "--include-pii",
                                            help="clear emails instead of masked ones (recorded in the audit)"),
           conf: str = ConfOption) -> None:
    """Download an audience's consented members as CSV (profile_id, variant, entered_at, email); holdouts are
    left out, emails masked unless --include-pii; every export is recorded in ops.audience_exports."""
    from cdp_spark.runtime import Runtime

    if not as_csv:
        raise typer.BadParameter("only --csv is supported", param_hint="--csv")
    with exit_codes():
        config = read_config(conf)
        _find(config, name)
        export_purposes(config, consent)  # a bad purpose fails before Spark starts
        rt = Runtime.start(config)
        if out_file is None:
            r = export_members(rt.spark, rt.config, rt.lake, name, sys.stdout, consent=consent, include_pii=include_pii)
        else:
            with out_file.open("w", newline="") as fh:
                r = export_members(rt.spark, rt.config, rt.lake, name, fh, consent=consent, include_pii=include_pii,
                                   target=str(out_file.resolve()))
        err.print(f"{r['rows']:,} members of {name} exported" + (f" to {out_file}" if out_file else "")
                  + f" ({r['skipped_consent']:,} without consent to {', '.join(r['consent']) or 'nothing'} and "
                    f"{r['holdouts_excluded']:,} in holdouts left out; audit {r['export_id']})")
        if include_pii:
            err.print("[yellow]clear emails exported (--include-pii); recorded in ops.audience_exports[/yellow]")


def activate(destination: str = typer.Argument(..., help="destination name (conf/destinations)"),
             as_of: Optional[str] = typer.Option(None, "--as-of", help="YYYY-MM-DD (default today, UTC)"),
             conf: str = ConfOption, as_json: bool = JsonOption) -> None:
    """Send audiences to one destination now (adds/removes since its last successful delivery, or a snapshot)."""
    from cdp_spark.activation import stage
    from cdp_spark.ops.ledger import Ledger
    from cdp_spark.runtime import Runtime

    with exit_codes():
        config = read_config(conf)
        day = parse_as_of(as_of)
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
            print_json(report)
        else:
            colour = "red" if failed else "green"
            out.print(f"[{colour}]{destination} {report['status']}[/{colour}]: considered {report['profiles_considered']:,}, "
                      f"sent {report['records_sent']:,} ({report['adds']:,} adds, {report['removes']:,} removes), "
                      f"skipped {report['skipped_consent']:,} for consent and {report['skipped_no_identifier']:,} "
                      f"without identifier; {report['batches']} batches, {report['retries']} retries")
        if failed:
            raise fail(f"{destination}: delivery failed", "`cdp runs --job activate` shows the error; the next "
                       f"`cdp activate {destination}` sends what this one could not", title="failed")
