"""Render the table reference (docs/tables.md) from the registry, so the doc cannot drift from the code.

Example:
    $ python -m cdp_spark.lake.reference > docs/tables.md
"""
from __future__ import annotations

from cdp_spark.lake.registry import TableRegistry, default_registry

HEADER = """# Table reference

Generated from the table registry by `python -m cdp_spark.lake.reference > docs/tables.md`; a test fails when
this page and the registry disagree. Every table is a Delta table at `<lake.root>/<layer>/<table>`.
Columns marked PII carry `{"pii": ...}` in their Delta column metadata and are masked for roles without access.
"""


def render(registry: TableRegistry) -> str:
    """Markdown for every registered table: description, keys, partitioning, change feed and columns."""
    parts = [HEADER]
    for spec in registry:
        parts.append(f"\n## `{spec.name}`\n\n{spec.description}\n")
        parts.append(f"- keys: {', '.join(f'`{k}`' for k in spec.keys) or 'none (append-only)'}")
        parts.append(f"- partitioned by: {', '.join(f'`{p}`' for p in spec.partition_by) or 'not partitioned'}")
        parts.append(f"- change data feed: {'on' if spec.change_data_feed else 'off'}\n")
        parts.append("| column | type | PII | meaning |\n|---|---|---|---|")
        for col in spec.columns:
            parts.append(f"| `{col.name}` | `{col.type.simpleString()}` | {col.pii or ''} | {col.description} |")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(render(default_registry()), end="")
