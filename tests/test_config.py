"""Typed config loading: errors name file, key path, value and expectation; secrets are redacted."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from cdp_spark.config import CdpConfig, ConfigError, load_config, load_config_with_sources

REPO = Path(__file__).resolve().parents[1]


class IdType(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: PositiveInt = 5


class IdentityDomain(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id_types: dict[str, IdType] = Field(default_factory=dict)


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    format: str


class WithDomains(CdpConfig):
    """A config with two domains, like the stages add: one file and one folder of files."""

    identity: IdentityDomain = Field(default_factory=IdentityDomain)
    sources: list[Source] = Field(default_factory=list)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_repository_config_is_valid():
    config = load_config(REPO / "conf" / "cdp.yaml")
    assert config.lake.backend == "auto"
    assert config.pipeline.stages[:2] == ["erasure", "ingest"]
    assert config.lake.checkpoint_dir.endswith("/_system/checkpoints")


def test_the_demo_answer_key_may_not_live_under_the_lake_root(tmp_path):
    main = write(tmp_path / "cdp.yaml", f"lake:\n  root: {tmp_path}/lake\ndemo:\n  truth_dir: {tmp_path}/lake/truth\n")
    with pytest.raises(ConfigError, match=r"demo.truth_dir: .* is under lake.root"):
        load_config(main)
    assert load_config(write(tmp_path / "ok.yaml", f"lake:\n  root: {tmp_path}/lake\n")).demo_truth_dir == (
        f"{tmp_path}/lake-demo-truth")


def test_bad_value_names_file_key_value_and_expectation(tmp_path):
    main = write(tmp_path / "cdp.yaml", "engine:\n  cores: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert str(err.value) == f"{main}: engine.cores: got -1, expected a value greater than 0"


def test_unknown_key_is_an_error(tmp_path):
    main = write(tmp_path / "cdp.yaml", "lake:\n  rooot: /tmp/x\n")
    with pytest.raises(ConfigError, match=r"cdp.yaml: lake.rooot: unknown key"):
        load_config(main)


def test_domain_file_errors_point_into_that_file(tmp_path):
    write(tmp_path / "identity.yaml", "id_types:\n  email:\n    limit: -1\n")
    main = write(tmp_path / "cdp.yaml", "files:\n  identity: identity.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(main, model=WithDomains)
    assert str(err.value) == f"{tmp_path / 'identity.yaml'}: id_types.email.limit: got -1, expected a value greater than 0"


def test_domain_folder_loads_one_item_per_file_and_blames_the_right_file(tmp_path):
    write(tmp_path / "sources" / "a_web.yaml", "name: web\nformat: json\n")
    write(tmp_path / "sources" / "b_crm.yaml", "name: crm\nformt: csv\n")
    main = write(tmp_path / "cdp.yaml", "files:\n  sources: sources\n")
    with pytest.raises(ConfigError) as err:
        load_config(main, model=WithDomains)
    text = str(err.value)
    assert f"{tmp_path / 'sources' / 'b_crm.yaml'}: formt: unknown key" in text
    assert f"{tmp_path / 'sources' / 'b_crm.yaml'}: format: required key is missing" in text
    write(tmp_path / "sources" / "b_crm.yaml", "name: crm\nformat: csv\n")
    assert [s.name for s in load_config(main, model=WithDomains).sources] == ["web", "crm"]


def test_unknown_domain_and_missing_file_are_errors(tmp_path):
    main = write(tmp_path / "cdp.yaml", "files:\n  identiti: identity.yaml\n")
    with pytest.raises(ConfigError, match="files.identiti: unknown domain"):
        load_config(main, model=WithDomains)
    main = write(tmp_path / "cdp.yaml", "files:\n  identity: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="files.identity: .*nowhere.yaml does not exist"):
        load_config(main, model=WithDomains)


def test_env_interpolation_and_redaction(tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_TEST_KEY", "s3cr3t-value")
    monkeypatch.delenv("CDP_TEST_ROOT", raising=False)
    main = write(
        tmp_path / "cdp.yaml",
        "lake:\n  root: ${CDP_TEST_ROOT:-/data/lake}\n  storage_options:\n    AWS_SECRET_ACCESS_KEY: ${CDP_TEST_KEY}\n"
        "engine:\n  spark_conf:\n    spark.hadoop.fs.s3a.secret.key: ${CDP_TEST_KEY}\n",
    )
    loaded = load_config_with_sources(main)
    assert loaded.config.lake.root == "/data/lake"
    assert loaded.config.lake.storage_options["AWS_SECRET_ACCESS_KEY"] == "s3cr3t-value"
    shown = loaded.redacted()
    assert "s3cr3t-value" not in repr(shown)
    assert shown["engine"]["spark_conf"]["spark.hadoop.fs.s3a.secret.key"] == "***"
    assert shown["lake"]["root"] == "/data/lake"  # a default is a setting, not a secret


def test_missing_env_var_names_file_and_key(tmp_path, monkeypatch):
    monkeypatch.delenv("CDP_TEST_MISSING", raising=False)
    main = write(tmp_path / "cdp.yaml", "lake:\n  root: ${CDP_TEST_MISSING}\n")
    with pytest.raises(ConfigError, match=r"cdp.yaml: lake.root: environment variable CDP_TEST_MISSING is not set"):
        load_config(main)


def test_invalid_yaml_reports_line_and_column(tmp_path):
    main = write(tmp_path / "cdp.yaml", "lake:\n  root: [unclosed\n")
    with pytest.raises(ConfigError, match=r"cdp.yaml: line \d+, column \d+: invalid YAML"):
        load_config(main)


# ---- configuration that must fail: exit 2, naming file, key and value (secrets stay hidden)

def _conf_copy(tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    return tmp_path / "conf"


def _edit(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    import yaml

    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _check(conf: Path) -> tuple[int, str]:
    from typer.testing import CliRunner

    import cdp_spark.cli

    result = CliRunner().invoke(cdp_spark.cli.app, ["config", "check", "--conf", str(conf / "cdp.yaml")])
    return result.exit_code, _squash(result.output)


def _squash(text: str) -> str:
    return "".join(text.split())  # rich wraps long lines anywhere


def test_a_misspelt_pipeline_stage_is_an_error_not_a_skipped_stage(tmp_path):
    conf = _conf_copy(tmp_path)
    _edit(conf / "cdp.yaml", lambda d: d["pipeline"].update(stages=["ingest", "identiy", "profiles"]))
    code, out = _check(conf)
    assert code == 2, out
    assert _squash(f"{conf / 'cdp.yaml'}: pipeline.stages.1: got 'identiy', expected a registered stage") in out
    assert _squash("did you mean 'identity'?") in out
    _edit(conf / "cdp.yaml", lambda d: d["pipeline"].update(stages=["ingest", "ingest"]))
    code, out = _check(conf)
    assert code == 2 and _squash("pipeline.stages: expected each stage once; listed more than once: ingest") in out


def test_a_stage_listed_before_the_stage_that_writes_its_input_is_a_configuration_error(tmp_path):
    conf = _conf_copy(tmp_path)
    _edit(conf / "cdp.yaml", lambda d: d["pipeline"].update(stages=["ingest", "identity", "profiles", "serve",
                                                                      "scores"]))
    code, out = _check(conf)
    assert code == 2, out
    assert _squash(f"{conf / 'cdp.yaml'}: pipeline.stages: stage 'serve' reads gold.profile_scores, which stage "
                   "'scores' writes after it: put 'scores' before 'serve'") in out


def test_one_write_key_on_two_collector_sources_is_an_error_without_showing_the_key(tmp_path):
    conf = _conf_copy(tmp_path)
    _edit(conf / "collector.yaml", lambda d: d["sources"].update(
        app={"keys": [{"key": "${CDP_WEB_WRITE_KEY:-demo-web-write-key}"}]}))
    code, out = _check(conf)
    assert code == 2, out
    assert _squash(f"{conf / 'collector.yaml'}: sources.app.keys.0.key: got '***', this write key is also "
                   "sources.web.keys.0.key; a write key belongs to one source") in out
    assert "demo-web-write-key" not in out and "Traceback" not in out


def test_a_destination_linking_an_unknown_audience_is_an_error(tmp_path):
    conf = _conf_copy(tmp_path)
    _edit(conf / "destinations" / "crm_file_drop.yaml", lambda d: d["audiences"].insert(1, "cart_abandonerz"))
    code, out = _check(conf)
    assert code == 2, out
    assert _squash(f"{conf / 'destinations' / 'crm_file_drop.yaml'}: audiences.1: got 'cart_abandonerz', expected "
                   "the name of an audience in conf/audiences/") in out


def test_a_model_level_error_does_not_print_the_whole_section(tmp_path):
    conf = _conf_copy(tmp_path)
    _edit(conf / "sources" / "web.yaml", lambda d: d.pop("path"))
    code, out = _check(conf)
    assert code == 2 and _squash(f"{conf / 'sources' / 'web.yaml'}: (top level): a files source needs 'path'") in out
    assert "mapping" not in out   # the section's content is not dumped into the message


def test_a_log_retention_shorter_than_the_file_retention_is_an_error(tmp_path):
    main = write(tmp_path / "cdp.yaml", "lake:\n  log_retention_days: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert "lake" in str(err.value) and "log_retention_days: 3 days is shorter than vacuum_retention_hours (168 h); " \
        "expected at least 7 days" in str(err.value)
    load_config(write(tmp_path / "ok.yaml", "lake:\n  log_retention_days: 3\n  vacuum_retention_hours: 72\n"))


def test_cross_section_checks_come_from_the_domain_declarations_and_report_every_problem(tmp_path):
    """Each domain declares its checks between sections; loading runs them all from `cdp_spark.domains` and names
    every problem at once, each in its own file."""
    from cdp_spark import activation, audiences, connections, ingest, profiles
    from cdp_spark.config.loader import config_problems
    from cdp_spark.domains import CONFIG_CHECKS

    for domain in (ingest, profiles, audiences, activation, connections):
        assert set(domain.DOMAIN.checks) <= set(CONFIG_CHECKS), domain.DOMAIN.name
    conf = _conf_copy(tmp_path)
    _edit(conf / "sources" / "web.yaml", lambda d: d["mapping"].update(emial="traits.email"))
    _edit(conf / "profiles.yaml", lambda d: d.setdefault("traits", {}).update(shoe_size={"rule": "max"}))
    _edit(conf / "destinations" / "crm_file_drop.yaml", lambda d: d["audiences"].insert(1, "cart_abandonerz"))
    code, out = _check(conf)
    assert code == 2, out
    for line in (f"{conf / 'sources' / 'web.yaml'}: mapping.emial: got 'emial', unknown catalogue field 'emial'",
                 f"{conf / 'profiles.yaml'}: traits.shoe_size: got 'shoe_size', not a catalogue trait",
                 f"{conf / 'destinations' / 'crm_file_drop.yaml'}: audiences.1: got 'cart_abandonerz'"):
        assert _squash(line) in out, line
    # A config built in code is checked when it is handed to the same checks.
    built = CdpConfig.model_validate({"catalogue": {"fields": {"email": {"group": "identifier"}}},
                                      "sources": [{"name": "web", "path": "/x", "mapping": {"emial": "e"}}]})
    assert [(p.section, p.key, p.value) for p in config_problems(built)] == [("sources", (0, "mapping", "emial"),
                                                                             "emial")]


def test_no_config_model_keeps_state_in_a_context_variable():
    """Checks between sections take the whole config as an argument; none reads another section from a context
    variable set while pydantic validates."""
    users = [p.relative_to(REPO) for p in (REPO / "cdp_spark").rglob("*.py")
             if "config_base" in p.read_text() and "contextvars" in p.read_text()]
    assert users == []
