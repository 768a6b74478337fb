"""Schema-driven fuzzing of the collector and the Profile API from their own OpenAPI documents (schemathesis,
in-process over ASGI): whatever a client sends, no 5xx, and every error is a JSON ``{"code", "message"}`` body.

A few hundred generated requests per service, positive (bodies that fit the schema) and negative (bodies that
break it); with a valid key, so the requests reach the handlers rather than stopping at authentication."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from cdp_spark.api.app import create_app as api_app
from cdp_spark.api.audit import AuditLog
from cdp_spark.api.keys import store_for as keys_for
from cdp_spark.api.store import SEP, store_for
from cdp_spark.collect.app import create_app as collector_app
from cdp_spark.collect.config import CollectorConfig
from cdp_spark.config import load_config
from cdp_spark.config.models import LakeConfig
from cdp_spark.runtime import metadata_lake

pytestmark = pytest.mark.slow  # hundreds of generated requests per operation

REPO = Path(__file__).resolve().parents[1]
KEY = "fuzz-web-write-key"
EXAMPLES = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _fuzz(schema, headers: dict) -> int:  # type: ignore[no-untyped-def]
    """Every operation of ``schema``, with bodies that fit it and bodies that break it. One test drives the whole
    document so that the checks of what the requests reached run after them in the same process, whatever the
    test runner's scheduling. Returns the number of operations."""
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @EXAMPLES
            def one(case):  # type: ignore[no-untyped-def]
                _json_error(case.call(headers=headers))
            try:
                one()
            except Unsatisfiable:
                # An operation without parameters or body has nothing to break; schemathesis skips it the same way.
                assert mode is GenerationMode.NEGATIVE, operation.label

    return len(operations)


def _json_error(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code < 500, (response.status_code, response.text[:300])
    content_type = response.headers.get("content-type") or [""]   # schemathesis: header -> list of values
    assert content_type[0].startswith("application/json"), response.headers
    if response.status_code >= 400:
        body = json.loads(response.content)
        assert set(body) == {"code", "message"} and all(isinstance(v, str) for v in body.values()), body


# ---- the collector
_LANDING = Path(__import__("tempfile").mkdtemp(prefix="fuzz-landing-"))
_COLLECTOR = collector_app(CollectorConfig.model_validate({
    "sources": {"web": {"keys": [{"key": KEY}]}}, "spool": {"rotate_seconds": 3600, "fsync": False},
    "rate_limit": {"per_second": 1e6, "burst": 1_000_000}}), str(_LANDING))
collector_schema = schemathesis.openapi.from_asgi("/openapi.json", _COLLECTOR)
_BASIC = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}


def test_collector_never_answers_5xx_and_errors_are_json_and_the_bodies_reach_the_handlers():
    """No 5xx, JSON errors; and generated bodies were stored or dead-lettered, not only refused at the door."""
    assert _fuzz(collector_schema, _BASIC) >= 2
    lines = [json.loads(line) for f in _LANDING.rglob("*") if f.is_file()
             for line in f.read_text(encoding="utf-8").split("\n") if line]   # NDJSON: only \n ends a line
    assert lines and any("_cdp_reject" in m for m in lines) and any("_cdp_reject" not in m for m in lines)


# ---- the Profile API
def _api():  # type: ignore[no-untyped-def]
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="fuzz-api-"))
    config = load_config(REPO / "conf" / "cdp.yaml").model_copy(update={"lake": LakeConfig(root=str(root))})
    docs = [{"profile_id": pid, "identifiers": {"email": [email]}, "traits": {"first_name": "Ann"}, "attributes": {},
             "consent": {}, "audiences": []} for pid, email in (("p_ann", "ann@example.com"), ("p_bob", "bob@example.com"))]
    store_for(config).build([(d["profile_id"], json.dumps(d), [f"email{SEP}{d['identifiers']['email'][0]}"])
                             for d in docs])
    secret, _ = keys_for(config).create("fuzz", ["read", "write", "delete", "pii"])
    lake = metadata_lake(config)
    return api_app(config, lake=lake, audit=AuditLog(lake, flush_seconds=3600, background=False)), secret, lake


def _with_known_profiles(doc: dict) -> dict:
    """The API's own document, with the path values narrowed to profiles that exist, so that generated traits
    reach the normalisers and the writes (random ids would only ever meet 404). DELETE gets its own profile."""
    doc = json.loads(json.dumps(doc))
    for path in doc["paths"].values():
        for method, operation in path.items():
            erase = method == "delete"
            for param in operation.get("parameters", []):
                if param["name"] == "profile_id":
                    param["schema"] = {"type": "string", "enum": ["p_bob"] if erase else ["p_ann", "p_missing"]}
                elif param["name"] == "value":
                    param["schema"] = {"type": "string",
                                       "enum": ["bob@example.com"] if erase else ["ann@example.com", "ANN@example.com "]}
    return doc


_API, _SECRET, _API_LAKE = _api()
api_schema = schemathesis.openapi.from_dict(_with_known_profiles(_API.openapi()))
api_schema.app = _API


def test_profile_api_never_answers_5xx_and_errors_are_json_and_writes_land():
    """No 5xx, JSON errors; and some generated PATCHes passed every check and landed in bronze (source api)."""
    from deltalake import DeltaTable

    assert _fuzz(api_schema, {"Authorization": f"Bearer {_SECRET}"}) >= 4

    rows = DeltaTable(_API_LAKE.path("bronze.profile_records")).to_pyarrow_table().to_pylist()
    assert any(r["source"] == "api" and r["traits"] for r in rows)


@pytest.mark.parametrize("schema", [collector_schema, api_schema], ids=["collector", "api"])
def test_the_openapi_documents_describe_the_bodies(schema):
    doc = schema.raw_schema
    posts = [op for path in doc["paths"].values() for method, op in path.items() if method in ("post", "patch")]
    assert posts and all("requestBody" in op for op in posts)
