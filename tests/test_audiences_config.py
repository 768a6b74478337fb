"""Audience definitions loaded from YAML: the demo audiences, and errors naming file, clause path and reason.
No Spark."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdp_spark.audiences.config import Audience, dependency_order, find_cycle
from cdp_spark.config import ConfigError, load_config

CONF = Path(__file__).resolve().parent.parent / "conf"


def test_demo_audiences_and_destinations_load():
    cfg = load_config(CONF / "cdp.yaml")
    names = {a.name for a in cfg.audiences}
    assert {"cart_abandoners", "high_clv_at_risk", "electronics_fans", "existing_customers_suppression"} <= names
    cart = next(a for a in cfg.audiences if a.name == "cart_abandoners")
    assert cart.rule.all[0].event.within.days == 7 and cart.rule.all[1].not_.event.name == ["order completed", "order_completed"]
    assert [v.weight for v in cart.variants] == [45, 45, 10] and cart.variants[2].holdout
    assert {d.name: d.transport.type for d in cfg.destinations} == {"crm_file_drop": "file", "ads_webhook": "webhook"}


@pytest.fixture
def conf(tmp_path):
    shutil.copytree(CONF, tmp_path / "conf")
    folder = tmp_path / "conf" / "audiences"
    for f in folder.glob("*.yaml"):
        f.unlink()
    (tmp_path / "conf" / "destinations" / "ads_webhook.yaml").unlink()
    (tmp_path / "conf" / "destinations" / "crm_file_drop.yaml").unlink()
    return tmp_path / "conf"


def write(conf, name, text):
    (conf / "audiences" / f"{name}.yaml").write_text(text)


def error(conf) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(conf / "cdp.yaml")
    return str(e.value)


def test_default_event_condition_is_count_above_zero_within_30_days(conf):
    write(conf, "a", "name: a\nrule: {event: {name: Order_Completed}}\n")
    ev = load_config(conf / "cdp.yaml").audiences[0].rule.event
    assert ev.name == ["order_completed"] and ev.within.days == 30
    assert (ev.aggregate.fn, ev.aggregate.op, ev.aggregate.value) == ("count", ">", 0)


@pytest.mark.parametrize("yaml_text, where, reason", [
    ("name: a\nrule: {all: [{event: {name: x, whithin: {days: 3}}}]}\n", "rule.all.0.event.whithin", "unknown key"),
    ("name: a\nrule: {all: [{trait: {field: country, op: '>', value: GB}}]}\n", "rule.all.0",
     "trait.country: cannot compare a string field with '>'"),
    ("name: a\nrule: {trait: {field: favourite_colour, value: red}}\n", "rule", "unknown trait 'favourite_colour'"),
    ("name: a\nrule: {score: {field: clv_percentile, op: contains, value: x}}\n", "rule", "'contains' needs a text field"),
    ("name: a\nrule: {event: {name: x, where: [{field: colour, value: red}]}}\n", "rule.event",
     "where.0.field: unknown event field 'colour'"),
    ("name: a\nrule: {event: {name: x, where: [{field: price, op: '>', value: cheap}]}}\n", "rule.event",
     "double field compared with non-numeric 'cheap'"),
    ("name: a\nrule: {event: {name: x, aggregate: {fn: sum}}}\n", "rule.event.aggregate", "needs a property"),
    ("name: a\nrule: {event: {name: x, within: {days: 3}, between: {start: -9d}}}\n", "rule.event", "not both"),
    ("name: a\nrule: {any: [{not: {audience: ghost}}]}\n", "rule.any.0.not.audience",
     "got 'ghost', expected the name of an audience in conf/audiences/ (defined: a)"),
    ("name: a\nrule: {consent: {purpose: telepathy}}\n", "rule", "unknown purpose 'telepathy'"),
    ("name: a\nrule: {identifier: shoe_size}\n", "rule", "unknown identifier type 'shoe_size'"),
    ("name: a\nrule: {event: {name: x}, trait: {field: country, value: GB}}\n", "rule", "exactly one of"),
    ("name: a\nrule: {all: []}\n", "rule", "all needs at least one clause"),
    ("name: a\nrule: {trait: {field: country, op: in, value: GB}}\n", "rule.trait", "needs a non-empty list"),
    ("name: a\nrule: {trait: {field: country, op: regex, value: '(['}}\n", "rule.trait", "invalid regex"),
])
def test_errors_name_file_clause_path_and_reason(conf, yaml_text, where, reason):
    write(conf, "a", yaml_text)
    msg = error(conf)
    assert "audiences/a.yaml" in msg and reason in msg
    assert f"a.yaml: {where}" in msg, msg


def test_reference_cycle_is_refused_with_its_path(conf):
    write(conf, "a", "name: a\nrule: {all: [{identifier: email}, {audience: b}]}\n")
    write(conf, "b", "name: b\nrule: {not: {audience: c}}\n")
    write(conf, "c", "name: c\nrule: {any: [{audience: a}]}\n")
    msg = error(conf)
    assert "audiences/a.yaml" in msg and "rule.all.1.audience: reference cycle a -> b -> c -> a" in msg


def test_duplicate_names_are_refused(conf):
    write(conf, "a", "name: same\nrule: {identifier: email}\n")
    write(conf, "b", "name: same\nrule: {identifier: phone}\n")
    msg = error(conf)
    assert "a.yaml" in msg and "b.yaml" in msg and "defined in more than one file" in msg


def test_references_resolve_in_dependency_order():
    aud = [Audience.model_validate({"name": n, "rule": r}) for n, r in [
        ("top", {"all": [{"audience": "mid"}, {"audience": "leaf"}]}), ("mid", {"not": {"audience": "leaf"}}),
        ("leaf", {"identifier": "email"})]]
    assert [a.name for a in dependency_order(aud)] == ["leaf", "mid", "top"]
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None


def test_the_types_conditions_are_checked_against_are_the_profile_views():
    """The cross-section check types traits and attributes from config alone; the profile view (Spark types) agrees."""
    from cdp_spark.audiences.config import known_fields
    from cdp_spark.profiles.view import view_schema

    cfg = load_config(CONF / "cdp.yaml")
    schema, fields = view_schema(cfg), known_fields(cfg)
    for kind in ("traits", "attributes"):
        assert fields[kind] == {f.name: f.dataType.simpleString() for f in schema[kind].dataType.fields}, kind
