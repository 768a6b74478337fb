"""The domains declare themselves once and `cdp_spark.domains` assembles the config model, the table registry, the
stage plan, the cross-section checks and the CLI from those declarations (no Spark)."""
from __future__ import annotations

import ast
from pathlib import Path

import typer

from cdp_spark import domains
from cdp_spark.config import CdpConfig
from cdp_spark.config.models import CORE_SECTIONS
from cdp_spark.domain_spec import load
from cdp_spark.lake import default_registry

ROOT = Path(__file__).resolve().parents[1] / "cdp_spark"


def test_every_table_is_declared_by_exactly_one_domain_and_the_registry_is_their_union():
    owners = {t.name: d.name for d in domains.DOMAINS for t in d.tables}
    assert len(owners) == sum(len(d.tables) for d in domains.DOMAINS)  # no table declared twice
    assert default_registry().names() == [t.name for t in domains.TABLES] == list(owners)
    assert owners["ops.job_runs"] == "ops" and owners["gold.profiles"] == "profiles"


def test_the_config_model_has_the_core_sections_and_the_declared_domain_sections():
    assert list(CdpConfig.model_fields) == [*CORE_SECTIONS, *(s.name for s in domains.SECTIONS)]
    assert {s.name for s in domains.SECTIONS} >= {"catalogue", "sources", "routes", "identity", "collector", "api",
                                                  "privacy", "scores", "profiles", "attributes", "audiences",
                                                  "destinations", "connections", "content"}
    config = CdpConfig()
    for section in domains.SECTIONS:  # each default is the declared one
        assert getattr(config, section.name) == section.default()


def test_the_cli_registers_every_declared_domain_command():
    import cdp_spark.cli

    groups = {g.name: g.typer_instance for g in cdp_spark.cli.app.registered_groups}
    commands = {c.name: c.callback for c in cdp_spark.cli.app.registered_commands}
    assert domains.CLI
    for name, target in domains.CLI:
        command = load(target)
        assert (groups.get(name) if isinstance(command, typer.Typer) else commands.get(name)) is command, name


def test_no_module_loads_a_module_by_name_except_the_declarations_loader():
    """Which modules exist is said by imports and declarations, not by strings handed to importlib."""
    users = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "import_module":
                users.append(str(path.relative_to(ROOT)))
    assert users == ["domain_spec.py"]

