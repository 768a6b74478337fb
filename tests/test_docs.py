"""Docs stay true: the table reference matches the registry, and the README keeps its two commands."""
from __future__ import annotations

from pathlib import Path

from cdp_spark.lake.reference import render
from cdp_spark.lake.registry import default_registry

REPO = Path(__file__).resolve().parents[1]


def test_table_reference_matches_registry():
    assert (REPO / "docs" / "tables.md").read_text() == render(default_registry()), (
        "docs/tables.md is stale: run `python -m cdp_spark.lake.reference > docs/tables.md`"
    )


def test_every_registered_table_is_documented_with_its_columns():
    text = (REPO / "docs" / "tables.md").read_text()
    for spec in default_registry():
        assert f"## `{spec.name}`" in text
        for col in spec.columns:
            assert f"| `{col.name}` |" in text


def test_readme_starts_with_the_two_fresh_machine_commands_and_ci_runs_the_test_one():
    lines = (REPO / "README.md").read_text().splitlines()
    commands = [line.strip() for line in lines[:12] if line.strip().startswith("python3 -m venv")]
    assert len(commands) == 2
    assert commands[0].endswith("cdp demo")
    assert "pytest" in commands[1]
    assert commands[1] in (REPO / ".ci" / "run").read_text()
