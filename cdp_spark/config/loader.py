"""Load `conf/cdp.yaml` and the domain files it references into validated models.

Errors name the file, the key path, the bad value and what was expected, e.g.
``conf/identity.yaml: id_types.email.limit: got -1, expected a value greater than 0``. Each section is validated
on its own first; then the domains' cross-section checks (`cdp_spark.domains.CONFIG_CHECKS`) run on the whole
config, e.g. ``conf/sources/web.yaml: mapping.emial: got 'emial', unknown catalogue field 'emial'; ...``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cdp_spark.config_base import KeyedValueError
from cdp_spark.config.models import CORE_SECTIONS, CdpConfig
from cdp_spark.domain_spec import ConfigProblem
from cdp_spark.domains import CONFIG_CHECKS

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
REDACTED = "***"


class ConfigError(ValueError):
    """A configuration problem; the message names file, key path, value and expectation."""


class ConfigNotFoundError(ConfigError):
    """The main configuration file does not exist (no project here, or a wrong ``--conf``)."""


class LoadedConfig:
    """The validated config plus where each part came from, for error messages and redaction."""

    def __init__(self, config: CdpConfig, path: Path, secret_paths: set[tuple[str, ...]]):
        self.config = config
        self.path = path
        self.secret_paths = secret_paths

    def redacted(self) -> dict[str, Any]:
        """The resolved config as plain data, with interpolated values and credentials replaced by ***."""
        data = self.config.model_dump(mode="json")
        for key_path in self.secret_paths:
            _set_path(data, key_path, REDACTED)
        for name, value in data.get("lake", {}).get("storage_options", {}).items():
            data["lake"]["storage_options"][name] = REDACTED if value else value
        return data


def load_config(path: str | os.PathLike[str] = "conf/cdp.yaml", *, model: type[CdpConfig] = CdpConfig) -> CdpConfig:
    """Load and validate the configuration.

    Example:
        >>> cfg = load_config("conf/cdp.yaml")         # doctest: +SKIP
        >>> cfg.lake.root                              # doctest: +SKIP
        './lake'
    """
    return load_config_with_sources(path, model=model).config


def load_config_with_sources(path: str | os.PathLike[str], *, model: type[CdpConfig] = CdpConfig) -> LoadedConfig:
    """Like :func:`load_config`, but also returns which values were secrets (for `cdp config check`)."""
    main = Path(path)
    if not main.is_file():
        raise ConfigNotFoundError(f"{main}: file not found")
    secrets: set[tuple[str, ...]] = set()
    raw = _read_yaml(main, secrets, ())
    if not isinstance(raw, dict):
        raise ConfigError(f"{main}: expected a mapping at the top level, got {type(raw).__name__}")
    origin: dict[tuple[str, ...], Path] = {}
    files = raw.get("files") or {}
    if not isinstance(files, dict):
        raise ConfigError(f"{main}: files: expected a mapping of domain name to file, got {files!r}")
    domain_fields = set(model.model_fields) - set(CORE_SECTIONS)
    for domain, rel in files.items():
        if domain not in domain_fields:
            known = ", ".join(sorted(domain_fields)) or "none yet"
            raise ConfigError(f"{main}: files.{domain}: unknown domain (known domains: {known})")
        target = main.parent / str(rel)
        if domain in raw:
            raise ConfigError(f"{main}: {domain}: defined inline and in files.{domain}; keep one")
        raw[domain] = _read_domain(target, main, domain, secrets, origin)
    try:
        config = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, main, origin)) from None
    problems = config_problems(config)
    if problems:
        raise ConfigError("\n".join(_format_problem(p, main, origin) for p in problems))
    return LoadedConfig(config, main, secrets)


def config_problems(config: CdpConfig) -> list[ConfigProblem]:
    """What the domains' cross-section checks find in a config whose sections are each valid (a config built in
    code, e.g. with ``CdpConfig.model_validate``, is not checked until it is passed here).

    Example:
        >>> config_problems(load_config("conf/cdp.yaml"))     # doctest: +SKIP
        []
    """
    return [problem for check in CONFIG_CHECKS for problem in check(config)]


def _read_domain(
    target: Path, main: Path, domain: str, secrets: set[tuple[str, ...]], origin: dict[tuple[str, ...], Path]
) -> Any:
    # A folder holds one YAML document per item (e.g. one file per source); a file holds the whole section.
    if target.is_dir():
        items = []
        for child in sorted(target.glob("*.y*ml")):
            key = (domain, str(len(items)))
            items.append(_read_yaml(child, secrets, key))
            origin[key] = child
        return items
    if not target.exists():
        raise ConfigError(f"{main}: files.{domain}: {target} does not exist (expected a YAML file or folder)")
    origin[(domain,)] = target
    return _read_yaml(target, secrets, (domain,))


def _read_yaml(path: Path, secrets: set[tuple[str, ...]], prefix: tuple[str, ...]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    return _interpolate(data, path, prefix, secrets)


def _interpolate(value: Any, path: Path, key: tuple[str, ...], secrets: set[tuple[str, ...]]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in strings; remember where, since those are secrets."""
    if isinstance(value, dict):
        return {k: _interpolate(v, path, key + (str(k),), secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, path, key + (str(i),), secrets) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{path}: {'.'.join(key)}: environment variable {name} is not set (expected it to hold this value)"
        )

    if any(m.group(2) is None for m in _ENV.finditer(value)):
        secrets.add(key)  # defaults are plain settings; a bare ${VAR} is treated as a secret
    return _ENV.sub(substitute, value)


def _format_errors(exc: ValidationError, main: Path, origin: dict[tuple[str, ...], Path]) -> str:
    lines = []
    for err in exc.errors():
        keyed = (err.get("ctx") or {}).get("error")
        if isinstance(keyed, KeyedValueError):  # a model's check about one value below it: name that value's key
            err = {**err, "loc": (*err["loc"], *keyed.key), "input": REDACTED if keyed.secret else keyed.value}
        lines.append(f"{_where(err['loc'], main, origin)}: {_describe(err)}")
    return "\n".join(lines)


def _format_problem(problem: ConfigProblem, main: Path, origin: dict[tuple[str, ...], Path]) -> str:
    return f"{_where((problem.section, *problem.key), main, origin)}: {problem.describe()}"


def _where(loc: tuple[object, ...], main: Path, origin: dict[tuple[str, ...], Path]) -> str:
    """``file: key.path`` of a value, by the longest prefix of its location that came from a domain file (or one
    file of a domain folder)."""
    parts = tuple(str(p) for p in loc)
    file, rest = main, parts
    for size in range(len(parts), 0, -1):
        if parts[:size] in origin:
            file, rest = origin[parts[:size]], parts[size:]
            break
    return f"{file}: {'.'.join(rest) or '(top level)'}"


def _describe(err: dict[str, Any]) -> str:
    msg: str = err["msg"]
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    expected = msg.removeprefix("Value error, ")
    if expected.startswith("Input should be "):
        wanted = expected.removeprefix("Input should be ")
        if wanted.startswith(("greater", "less", "at least", "at most", "a multiple")):
            wanted = "a value " + wanted
        expected = "expected " + wanted
    value = err.get("input")
    if isinstance(value, (dict, list)):  # a whole section (a model's own check): its keys say more, and may be secret
        return expected
    return f"got {value!r}, {expected}"


def _set_path(data: Any, key_path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in key_path[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.get(part)
        if node is None:
            return
    last = key_path[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif isinstance(node, dict) and last in node:
        node[last] = value


def dump_model(model: BaseModel) -> dict[str, Any]:
    """Plain JSON-ready data of any config model."""
    return model.model_dump(mode="json")
