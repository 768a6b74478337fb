"""The packaged default configuration, and `cdp init`: a commented starter project written from it.

The defaults are package data (``cdp_spark/config/defaults``); in the repository that folder is a link to
``conf/``, so the configuration the tests, the README and the wheel use is one set of files.

A starter project is those files minus what only the demo needs (`DEMO_ONLY`: three more audiences and the webhook
destination, whose receiver exists only while `cdp demo` runs): the catalogue, the demo's four file sources (events,
profiles, both; CSV and NDJSON) with examples of a Delta and a JDBC source beside them, identity rules, profile
rules, calculated attributes, scores, two audiences and the CSV file-drop destination.

Example:
    >>> written = init_project(Path("my-cdp"))        # doctest: +SKIP
    >>> str(written[0])                                # doctest: +SKIP
    'my-cdp/conf/api.yaml'
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path

import yaml

from cdp_spark.config.loader import ConfigError

CONF_DIR = "conf"
MAIN_FILE = "cdp.yaml"
DEMO_ONLY = ("audiences/existing_customers_suppression.yaml", "audiences/high_clv_at_risk.yaml",
             "audiences/running_readers.yaml",
             "destinations/ads_webhook.yaml")


class ProjectExistsError(ConfigError):
    """`cdp init` found a configuration where it would write one."""


def defaults_dir() -> Path:
    """The packaged default configuration folder (the demo's, `conf/` in the repository).

    Example:
        >>> (defaults_dir() / "cdp.yaml").is_file()
        True
    """
    return Path(str(importlib.resources.files("cdp_spark.config") / "defaults"))


def default_config_path() -> Path:
    """The packaged ``cdp.yaml`` (what `cdp demo` uses in a folder without a project)."""
    return defaults_dir() / MAIN_FILE


def starter_files() -> dict[str, str]:
    """The starter project's files: relative path under ``conf/`` -> text."""
    root = defaults_dir()
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative in DEMO_ONLY or "__pycache__" in relative:
            continue
        files[relative] = path.read_text(encoding="utf-8")
    dropped = {Path(p).stem for p in DEMO_ONLY if p.startswith("audiences/")}
    for relative, text in files.items():
        if relative.startswith("destinations/"):
            files[relative] = without_audience_links(text, dropped)
    return files


def without_audience_links(text: str, dropped: set[str]) -> str:
    """A destination file's text without the items of its top-level ``audiences:`` list that link ``dropped``
    audiences; every other line (comments included) is kept.

    Example:
        >>> print(without_audience_links("audiences:\\n  - a\\n  - {name: b, variants: [x]}\\nformat: csv\\n", {"b"}))
        audiences:
          - a
        format: csv
        <BLANKLINE>
    """
    lines: list[str] = []
    inside, skipping_below = False, None  # in the list; the indent of a dropped item whose lines continue below it
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skipping_below is not None and stripped and indent > skipping_below:
            continue  # a continuation line of a dropped item
        skipping_below = None
        if stripped and indent == 0 and not stripped.startswith(("#", "- ")):
            inside = stripped.split("#")[0].strip() == "audiences:"
        elif inside and stripped.startswith("- "):
            item = yaml.safe_load(stripped[2:])
            name = item.get("name") if isinstance(item, dict) else item
            if name in dropped:
                skipping_below = indent
                continue
        lines.append(line)
    return "".join(lines)


def init_project(target: Path) -> list[Path]:
    """Write the starter project's ``conf/`` into ``target`` (created); returns the files written.

    Refuses (ProjectExistsError) when ``target/conf`` exists, so nothing of an existing project is overwritten;
    checks that the written configuration loads.
    """
    from cdp_spark.config.loader import load_config

    conf = target / CONF_DIR
    if conf.exists():
        raise ProjectExistsError(f"{conf}: a configuration folder already exists here")
    written = []
    for relative, text in starter_files().items():
        path = conf / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    load_config(conf / MAIN_FILE)  # the starter must load as written
    return written
