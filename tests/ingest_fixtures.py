"""Shared helpers for the ingest tests: a config around the repository catalogue and a tmp landing area."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cdp_spark.config import CdpConfig

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = yaml.safe_load((REPO / "conf" / "catalogue.yaml").read_text())


def make_config(tmp_path: Path, sources: list[dict[str, Any]], routes: list[dict[str, Any]] | None = None) -> CdpConfig:
    raw = {"lake": {"root": str(tmp_path / "lake")}, "catalogue": CATALOGUE, "sources": sources, "routes": routes or []}
    return CdpConfig.model_validate(raw)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


ORDERS_SOURCE = {
    "name": "orders", "kind": "files", "format": "csv", "glob": "*.csv", "role": "events",
    "timestamp": {"field": "order_time"},
    "max_field_length": 64,
    "enrichers": [
        {"type": "constant", "output": "event_name", "value": "order_completed"},
        {"type": "derive", "output": "revenue", "expr": "try_cast(quantity as double) * try_cast(unit_price as double)"},
    ],
    "mapping": {"event_name": "event_name", "order_id": "order_id", "email": "email", "phone": "phone",
                "quantity": "quantity", "price": "unit_price", "currency": "currency", "revenue": "revenue"},
    "expectations": [
        {"name": "currency_known", "field": "currency", "check": "valid", "action": "drop"},
        {"name": "quantity_is_number", "field": "quantity", "check": "valid", "action": "drop"},
        {"name": "email_valid", "field": "email", "check": "valid", "action": "warn"},
    ],
}
