"""`cdp run ingest`, `cdp keys` and `cdp quarantine` on a tiny landing folder; PII masked in the output."""
from __future__ import annotations

import json

import pytest
import yaml

from cdp_spark.cli import main
from cdp_spark.ingest.report import mask
from tests.ingest_fixtures import ORDERS_SOURCE, REPO, write

HEADER = "order_id,order_time,email,phone,quantity,unit_price,currency\n"


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def test_mask_hides_letters_digits_and_emails():
    assert mask("O1,ann@example.com,+44 20 7946,café") == "X9,***@***,+99 99 9999,X"


@pytest.mark.slow
def test_ingest_keys_and_quarantine_commands(spark, capsys, tmp_path):
    landing = tmp_path / "landing"
    write(landing / "a.csv", HEADER + "O1,2026-10-30T10:00:00Z,ann@example.com,,1,5,EUR\n"
          "O2,2026-10-30T10:00:00Z,secret.person@example.com,,1,5,ZZZ\n")
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "orders.yaml").write_text(yaml.safe_dump({**ORDERS_SOURCE, "path": str(landing)}))
    (tmp_path / "catalogue.yaml").write_text((REPO / "conf" / "catalogue.yaml").read_text())
    conf = tmp_path / "cdp.yaml"
    conf.write_text(f"lake:\n  root: {tmp_path / 'lake'}\nengine:\n  cores: 1\n  shuffle_partitions: 1\n"
                    "files:\n  catalogue: catalogue.yaml\n  sources: sources\n")
    code, out = run(capsys, "run", "ingest", "--as-of", "2026-11-01", "--conf", str(conf), "--json")
    assert code == 0 and json.loads(out)["status"] == "succeeded"
    code, out = run(capsys, "quarantine", "--source", "orders", "--conf", str(conf), "--json")
    rows = json.loads(out)
    assert code == 0 and [(r["reason"], r["records"]) for r in rows] == [("currency_known", 1)]
    assert "secret" not in out and "example" not in out
    code, out = run(capsys, "keys", "orders", "--conf", str(conf), "--json")
    keys = {r["key"]: r for r in json.loads(out)}
    assert code == 0 and keys["order_id"]["times_seen"] == 2 and keys["order_id"]["mapped"] is True
    assert keys["order_time"]["predicted_type"] == "timestamp" and keys["quantity"]["predicted_type"] == "long"
    code, out = run(capsys, "runs", "--conf", str(conf), "--json")
    stage_row = next(r for r in json.loads(out) if r["step"] == "ingest")
    assert stage_row["rows_in"] == {"source.orders": 2}
    assert json.loads(stage_row["metrics"])["sources"]["orders"]["reconciled"] is True
