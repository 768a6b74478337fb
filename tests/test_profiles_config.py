"""profiles.yaml / attributes.yaml validation (no Spark): errors name the file and the key; the view schema comes
from config alone."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdp_spark.config import ConfigError, load_config
from cdp_spark.profiles.config import AttributesConfig, sql_identifiers
from cdp_spark.profiles.view import view_schema

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def conf(tmp_path):
    """A copy of the shipped conf/ to break one file at a time."""
    dst = tmp_path / "conf"
    shutil.copytree(REPO / "conf", dst)
    return dst


def _attributes(conf: Path, body: str) -> Path:
    path = conf / "attributes.yaml"
    path.write_text("properties: {platform: string, basket_value: double}\nattributes:\n" + body)
    return path


def _error(conf: Path) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(conf / "cdp.yaml")
    return str(err.value)


def test_shipped_config_gives_typed_view_schema():
    config = load_config(REPO / "conf" / "cdp.yaml")
    schema = view_schema(config)
    assert [f.name for f in schema] == ["profile_id", "identifiers", "traits", "attributes", "consent", "consent_at",
                                        "consent_source", "first_seen", "last_seen", "sources", "updated_at", "scores"]
    traits = {f.name: f.dataType.simpleString() for f in schema["traits"].dataType}
    assert traits["birth_date"] == "date" and traits["signup_date"] == "date" and traits["country"] == "string"
    attrs = {f.name: f.dataType.simpleString() for f in schema["attributes"].dataType}
    assert attrs["logins_last_7_days"] == "bigint"
    assert attrs["revenue_last_90_days"] == "double"
    assert attrs["most_viewed_product_last_3_days"] == "string"
    assert attrs["categories_viewed"] == "array<string>"
    assert attrs["days_since_last_order"] == "int"
    assert attrs["lead_score"] == "bigint" and attrs["value_tier"] == "string"
    assert len(attrs) >= 15
    assert schema["consent"].dataType.simpleString() == "map<string,string>"
    assert "clv" in schema["scores"].dataType.names
    assert "scores" not in view_schema(config, with_scores=False).names


@pytest.mark.parametrize("body, key, words", [
    ("  x: {kind: count, where: \"colour = 'red'\"}\n", "attributes.x.where", "unknown event field 'colour'"),
    ("  x: {kind: sum, field: product_id}\n", "attributes.x.field", "sum needs a numeric field; product_id is string"),
    ("  x: {kind: avg, field: properties.platform}\n", "attributes.x.field", "numeric"),
    ("  x: {kind: last, field: properties.colour}\n", "attributes.x.field", "unknown event property 'colour'"),
    ("  x: {kind: max}\n", "attributes.x.field", "needs a `field`"),
    ("  a: {kind: count}\n  x: {kind: formula, expr: a + nope * 2}\n", "attributes.x.expr",
     "unknown attribute or trait nope"),
    ("  x: {kind: formula, expr: y}\n  y: {kind: formula, expr: x + 1}\n", "attributes", "formula cycle"),
    ("  country: {kind: count}\n", "attributes.country", "also a trait"),
])
def test_attribute_errors_name_file_and_key(conf, body, key, words):
    path = _attributes(conf, body)
    message = _error(conf)
    assert f"{path}: {key}:" in message
    assert words in message


def test_valid_attributes_with_properties_and_trait_formula(conf):
    _attributes(conf, "  v: {kind: sum, field: properties.basket_value, window_days: 7}\n"
                      "  p: {kind: most_frequent, field: properties.platform, events: [App_Opened]}\n"
                      "  s: {kind: formula, type: boolean, expr: \"v > 10 AND country = 'GB'\"}\n")
    config = load_config(conf / "cdp.yaml")
    assert config.attributes.attributes["p"].events == ["app_opened"]  # event names are normalised to lower case
    assert config.attributes.attributes["s"].value_type == "boolean"


def test_trait_rule_errors_name_file_and_key(conf):
    path = conf / "profiles.yaml"
    path.write_text("traits:\n  shoe_size: {rule: max}\n")
    assert f"{path}: traits.shoe_size: got 'shoe_size', not a catalogue trait" in _error(conf)
    path.write_text("traits:\n  city: {rule: sum}\n")
    assert f"{path}: traits.city.rule: got 'sum', rule sum needs a numeric trait" in _error(conf)
    path.write_text("traits:\n  city: {rule: loudest}\n")
    assert f"{path}: traits.city.rule:" in _error(conf)


def test_sql_identifiers_skip_literals_functions_and_keywords():
    assert sql_identifiers("CASE WHEN a >= 1e3 THEN 'b c' ELSE lower(d) END IS NOT NULL") == {"a", "d"}
    assert sql_identifiers("cast(x as double) + interval 3 days") == {"x"}


def test_formula_order_follows_references():
    cfg = AttributesConfig.model_validate({"attributes": {
        "c": {"kind": "formula", "expr": "b * 2"}, "b": {"kind": "formula", "expr": "a + 1"},
        "a": {"kind": "count"}}})
    assert cfg.formulas() == ["b", "c"]


def test_attribute_event_fields_match_the_bronze_events_table():
    from cdp_spark.ingest.tables import EVENTS
    from cdp_spark.profiles.config import EVENT_FIELDS

    spark_names = {"string": "string", "double": "double", "bigint": "long", "timestamp": "timestamp", "date": "date"}
    table = {f.name: spark_names.get(f.dataType.simpleString()) for f in EVENTS.schema.fields}
    for name, kind in EVENT_FIELDS.items():
        assert table[name] == kind, name
