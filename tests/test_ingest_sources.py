"""Config errors for sources name the file and the key; the repository's sources are valid."""
from __future__ import annotations

from pathlib import Path

import pytest

from cdp_spark.config import ConfigError, load_config
from tests.ingest_fixtures import REPO


def setup_conf(tmp_path: Path, source_yaml: str) -> Path:
    (tmp_path / "sources").mkdir()
    (tmp_path / "catalogue.yaml").write_text((REPO / "conf" / "catalogue.yaml").read_text())
    (tmp_path / "sources" / "web.yaml").write_text(source_yaml)
    main = tmp_path / "cdp.yaml"
    main.write_text("files:\n  catalogue: catalogue.yaml\n  sources: sources\n")
    return main


def test_repository_sources_load():
    config = load_config(REPO / "conf" / "cdp.yaml")
    assert {s.name for s in config.sources} == {"web", "app", "crm", "orders"}
    assert config.catalogue.fields["email"].pii == "pii"
    web = next(s for s in config.sources if s.name == "web")
    assert web.consent.unmapped == "granted" and not web.consent.purposes


def test_mapping_to_unknown_catalogue_field_names_file_and_key(tmp_path):
    main = setup_conf(tmp_path, "name: web\npath: /x\nmapping:\n  emial: traits.email\n")
    with pytest.raises(ConfigError) as err:
        load_config(main)
    text = str(err.value)
    assert str(tmp_path / "sources" / "web.yaml") in text
    assert "mapping.emial" in text and "unknown catalogue field 'emial'" in text


def test_unknown_enricher_and_bad_arguments_name_file_and_key(tmp_path):
    main = setup_conf(tmp_path, "name: web\npath: /x\nenrichers:\n  - {type: sparkle}\n")
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert f"{tmp_path / 'sources' / 'web.yaml'}: enrichers.0:" in str(err.value)
    assert "sparkle" in str(err.value)
    (tmp_path / "sources" / "web.yaml").write_text("name: web\npath: /x\nenrichers:\n  - {type: flatten, depth: 0}\n")
    with pytest.raises(ConfigError, match=r"web.yaml: enrichers.0.flatten.depth: got 0"):
        load_config(main)
    (tmp_path / "sources" / "web.yaml").write_text("name: web\npath: /x\nenrichers:\n  - {type: hash, colum: email}\n")
    with pytest.raises(ConfigError, match=r"web.yaml: enrichers.0.hash.colum: unknown key"):
        load_config(main)


def test_expectation_and_source_consistency_rules(tmp_path):
    main = setup_conf(tmp_path, "name: web\npath: /x\nexpectations:\n  - {field: email, check: regex}\n")
    with pytest.raises(ConfigError, match="needs 'pattern'"):
        load_config(main)
    (tmp_path / "sources" / "web.yaml").write_text("name: crm\npath: /x\nrole: profiles\nload_mode: snapshot\n")
    with pytest.raises(ConfigError, match="snapshot source needs 'key'"):
        load_config(main)


def test_jdbc_source_needs_url_table_and_snapshot(tmp_path):
    main = setup_conf(tmp_path, "name: shop\nkind: jdbc\noptions: {url: 'jdbc:sqlite:/x.db'}\n")
    with pytest.raises(ConfigError, match="needs options.url and options.dbtable"):
        load_config(main)
    (tmp_path / "sources" / "web.yaml").write_text(
        "name: shop\nkind: jdbc\nrole: profiles\noptions: {url: 'jdbc:sqlite:/x.db', dbtable: customers}\n")
    with pytest.raises(ConfigError, match="use load_mode: snapshot"):
        load_config(main)


def test_jdbc_read_with_user_supplied_driver(spark, tmp_path):
    """A JDBC source read through Spark's JDBC reader and a driver jar supplied by the user (here SQLite's, from the
    jar cache: `cdp jars fetch sqlite-jdbc`; see docs/architecture.md (Ingestion))."""
    import sqlite3

    from tests.conftest import unavailable

    jvm = spark.sparkContext._jvm
    try:
        jvm.java.lang.Class.forName("org.sqlite.JDBC", False, jvm.Thread.currentThread().getContextClassLoader())
    except Exception:
        unavailable("no SQLite JDBC driver jar on the classpath: run `cdp jars fetch sqlite-jdbc`")
    from cdp_spark.ingest.readers import read_table
    from cdp_spark.ingest.sources import Source

    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as con:
        con.execute("create table customers (customer_id text, email text)")
        con.execute("insert into customers values ('c1', 'a@x.com')")
    # model_construct: the key check needs the catalogue scope, which this reader test does not use
    source = Source.model_construct(name="shop", kind="jdbc", options={
        "url": f"jdbc:sqlite:{db}", "dbtable": "customers", "driver": "org.sqlite.JDBC"})
    raw = read_table(spark, None, source)
    assert [(r.customer_id, r._file) for r in raw.collect()] == [("c1", "jdbc:customers")]
