"""Sandboxes: a copy of an org's configuration with its own lake root and ``org.sandbox: true``.

Zeotap recommends validating new sources in a sandbox before production. The copy keeps every domain file (so
sources, catalogue and rules are the ones being validated) and changes only ``lake`` and ``org``; the sandbox's
data, profiles and API keys live in its own lake and never mix with production's.

Example:
    >>> create_sandbox("conf/cdp.yaml", "/tmp/sandbox")["lake_root"]      # doctest: +SKIP
    '/tmp/sandbox/lake'
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from cdp_spark.locations import is_remote, join, local_path


class SandboxError(ValueError):
    """The sandbox cannot be created (target not empty, same lake as production, ...)."""


def create_sandbox(conf: str | os.PathLike[str], to: str | os.PathLike[str], *, lake_root: str | None = None) -> dict[str, Any]:
    """Copy ``conf``'s folder to ``to`` and point the copy at a separate lake; the copy is validated on load."""
    from cdp_spark.config import load_config

    src = Path(conf).resolve()
    production = load_config(src)
    target = Path(to).resolve()
    if target.exists() and any(target.iterdir()):
        raise SandboxError(f"{target} is not empty")
    root = (lake_root if is_remote(lake_root) else str(Path(local_path(lake_root, "--lake-root")).resolve())) if lake_root \
        else str(target / "lake")
    if os.path.abspath(production.lake.root) == os.path.abspath(root):
        raise SandboxError("the sandbox lake root must differ from production's")
    shutil.copytree(src.parent, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))
    main = target / src.name
    raw = yaml.safe_load(main.read_text(encoding="utf-8")) or {}
    raw.setdefault("org", {})
    raw["org"]["sandbox"] = True
    raw.setdefault("lake", {})
    raw["lake"]["root"] = root
    demo = raw.get("demo") or {}
    if demo.get("out_dir"):
        demo["out_dir"] = join(root, "demo")
    if demo.get("truth_dir"):  # beside the sandbox's own lake root, like the default
        demo["truth_dir"] = root.rstrip("/") + "-demo-truth"
    header = "# Sandbox copy of " + str(src) + " (cdp sandbox create): own lake root, org.sandbox true.\n"
    main.write_text(header + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    loaded = load_config(main)
    return {"conf": str(main), "lake_root": loaded.lake.root, "org": loaded.org.id, "sandbox": loaded.org.sandbox}
