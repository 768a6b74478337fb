"""The web console on a copy of the session's demo lake, with the audiences evaluated once more eight days later
(past the cart abandoners' 7-day window), so their sizes change over time.

Access and safety over HTTP (no key, no data; the API's masking without `pii`; the login cookie; forms from other
sites refused; values escaped), then every page in headless Chromium: drawn without a console error, nothing
requested from anywhere but the server, screenshots kept under .ci/artifacts/, and every number shown equal to the
same number read independently from the Delta tables with delta-rs and pandas."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pandas as pd
import pytest
import uvicorn
from deltalake import DeltaTable

from cdp_spark.api.app import create_app
from cdp_spark.api.keys import store_for
from cdp_spark.cli import main
from cdp_spark.config import load_config
from tests import ops_browser
from tests.spark_settings import cli_keeps_test_settings

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "cdp.yaml"
ARTIFACTS = Path(os.environ.get("CDP_ARTIFACTS_DIR", ROOT / ".ci" / "artifacts"))
LATER_DAYS = 8  # one more audiences run, this many days after the demo's as-of date


def table(root: Path, name: str) -> pd.DataFrame:
    """A table read with delta-rs alone (not through the lake port)."""
    layer, _, short = name.partition(".")
    return DeltaTable(str(root / layer / short)).to_pandas()


@pytest.fixture(scope="module")
def lake(spark, demo_lake, tmp_path_factory):
    """A copy of the demo lake, with the audiences stage run once more LATER_DAYS later, and API keys."""
    root = tmp_path_factory.mktemp("console") / "lake"
    shutil.copytree(demo_lake.root, root)
    as_of = dt.date.fromisoformat(demo_lake.report["run"]["as_of"])
    with pytest.MonkeyPatch.context() as mp, cli_keeps_test_settings():
        mp.setenv("CDP_LAKE_ROOT", str(root))
        code = main(["run", "audiences", "--as-of", str(as_of + dt.timedelta(days=LATER_DAYS)), "--conf", str(CONF),
                     "--json"])
        assert code == 0
        config = load_config(CONF)
    keys = store_for(config)
    secrets = {name: keys.create(name, scopes)[0] for name, scopes in
               (("console-pii", ["read", "pii"]), ("console", ["read"]), ("writer", ["write"]))}
    return {"root": root, "config": config, "keys": secrets, "as_of": as_of}


@pytest.fixture(scope="module")
def server(lake):
    """The Profile API app (with the console) served by uvicorn on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(lake["config"])
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(30)


def bearer(lake, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {lake['keys'][name]}"}


def busiest_profile(root: Path, rank: int = 0) -> tuple[str, str]:
    """The profile with the most identifiers (``rank`` 1: the next one) that has an e-mail, and one of its e-mails
    (independent read)."""
    graph = table(root, "gold.id_graph")
    sizes = graph.groupby("profile_id").size().sort_values(ascending=False, kind="stable")
    with_email = set(graph.loc[graph["id_type"] == "email", "profile_id"])
    profile = [p for p in sizes.index if p in with_email][rank]
    email = sorted(graph.loc[(graph["profile_id"] == profile) & (graph["id_type"] == "email"), "value"])[0]
    return profile, email


PAGES = ("/console", "/console/profiles", "/console/audiences", "/console/identity")


def test_no_key_no_data_and_a_key_without_read_is_refused(server, lake):
    profile, email = busiest_profile(lake["root"])
    for path in (*PAGES, f"/console/profiles/{profile}"):
        anonymous = httpx.get(server + path)
        assert anonymous.status_code == 401 and 'name="key"' in anonymous.text
        assert "data-metric" not in anonymous.text and email not in anonymous.text and "<table" not in anonymous.text
        wrong = httpx.get(server + path, headers={"Authorization": "Bearer k000000000000.nope"})
        assert wrong.status_code == 401 and "data-metric" not in wrong.text
        writer = httpx.get(server + path, headers=bearer(lake, "writer"))
        assert writer.status_code == 403 and "data-metric" not in writer.text
        assert anonymous.headers["content-security-policy"].startswith("default-src 'none'")


def test_pii_is_masked_without_the_pii_scope_like_the_api_masks_it(server, lake):
    profile, email = busiest_profile(lake["root"])
    masked = httpx.get(f"{server}/console/profiles/{profile}", headers=bearer(lake, "console"))
    full = httpx.get(f"{server}/console/profiles/{profile}", headers=bearer(lake, "console-pii"))
    assert masked.status_code == full.status_code == 200
    api = httpx.get(f"{server}/v1/profiles/{profile}", headers=bearer(lake, "console")).json()
    first_name = table(lake["root"], "gold.profiles").set_index("profile_id").loc[profile, "traits"]
    first_name = dict(first_name).get("first_name")
    assert email in full.text and email not in masked.text and "PII masked" in masked.text
    assert first_name and f">{first_name}<" in full.text and f">{first_name}<" not in masked.text
    assert api["traits"]["first_name"] == "***" and ">***<" in masked.text
    # Blocked values are identifier values too.
    blocked = table(lake["root"], "silver.identifiers").query("status == 'blocked'")["value"]
    identity = httpx.get(f"{server}/console/identity", headers=bearer(lake, "console")).text
    assert len(blocked) and not any(f">{v}<" in identity for v in blocked)


def test_login_cookie_is_httponly_strict_and_forms_from_other_sites_are_refused(server, lake):
    secret = lake["keys"]["console"]
    with httpx.Client(base_url=server) as client:
        refused = client.post("/console/login", data={"key": secret}, headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403 and "set-cookie" not in refused.headers
        refused = client.post("/console/login", data={"key": secret}, headers={"Sec-Fetch-Site": "cross-site"})
        assert refused.status_code == 403 and not client.cookies
        bad = client.post("/console/login", data={"key": "k1.wrong"})
        assert bad.status_code == 401 and not client.cookies
        ok = client.post("/console/login", data={"key": secret, "next": "//evil.example/x"},
                         headers={"Origin": server})
        assert ok.status_code == 303 and ok.headers["location"] == "/console"  # never off this site
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
        assert client.get("/console/identity").status_code == 200
        assert client.post("/console/logout", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 303
        assert client.get("/console/identity").status_code == 401


def test_lookup_posts_the_identifier_and_redirects_by_profile_id(server, lake):
    profile, email = busiest_profile(lake["root"])
    with httpx.Client(base_url=server, headers=bearer(lake, "console")) as client:
        found = client.post("/console/profiles", data={"id_type": "email", "value": f"  {email.upper()} "})
        assert found.status_code == 303 and found.headers["location"] == f"/console/profiles/{profile}"
        assert email not in found.headers["location"]
        missing = client.post("/console/profiles", data={"id_type": "email", "value": "nobody@nowhere.example"})
        assert missing.status_code == 404 and "No profile has this identifier." in missing.text
        assert "nobody@nowhere.example" not in missing.text  # the value is not echoed back either


def test_values_are_escaped(server, lake):
    profile, _ = busiest_profile(lake["root"], rank=1)  # not the one the browser test compares with gold.profiles
    writer = store_for(lake["config"]).create("console-xss", ["write", "read", "pii"])[0]
    payload = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    patched = httpx.patch(f"{server}/v1/profiles/{profile}", json={"traits": {"city": payload}},
                          headers={"Authorization": f"Bearer {writer}"})
    assert patched.status_code == 200, patched.text
    page = httpx.get(f"{server}/console/profiles/{profile}", headers={"Authorization": f"Bearer {writer}"}).text
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def metrics(browser: ops_browser.Browser) -> dict[tuple[str, str], str]:
    pairs = browser.evaluate("""Array.from(document.querySelectorAll('[data-metric]'))
        .map(e => [e.dataset.metric, e.dataset.key || '', e.textContent.trim()])""")
    return {(m, k): v for m, k, v in pairs}


def number(text: str) -> float:
    return float(text.replace(",", ""))


@pytest.mark.skipif(not ops_browser.available(), reason="Debian chromium is not installed (.ci/run installs it)")
def test_every_page_in_headless_chromium_shows_the_numbers_of_the_delta_tables(server, lake):
    root = lake["root"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile, email = busiest_profile(root)
    with ops_browser.Browser() as browser:
        browser.open(f"{server}/console")
        assert browser.statuses[f"{server}/console"] == 401
        browser.submit(f"document.querySelector('input[name=key]').value = {json.dumps(lake['keys']['console-pii'])};"
                       "document.querySelector('form[action=\"/console/login\"]').submit()")
        browser.console_errors.clear()  # the sign-in page itself was a 401

        # Overview: the latest ledger row per stage, and every table's row count.
        shown = metrics(browser)
        (ARTIFACTS / "console-overview.png").write_bytes(browser.screenshot())
        runs = table(root, "ops.job_runs").sort_values("started_at")
        latest = runs.assign(key=runs["step"].where(runs["step"] != "job", runs["job"])).groupby("key").last()
        for stage in ("ingest", "identity", "profiles", "scores", "audiences", "activation", "daily"):
            assert shown[("run-status", stage)] == latest.loc[stage, "status"]
        for name in ("bronze.events", "gold.profiles", "gold.audience_sizes", "ops.job_runs"):
            assert number(shown[("table-rows", name)]) == len(table(root, name))

        # Audiences: sizes, entries and exits per day, current members per audience and variant.
        browser.open(f"{server}/console/audiences")
        shown = metrics(browser)
        (ARTIFACTS / "console-audiences.png").write_bytes(browser.screenshot())
        sizes = table(root, "gold.audience_sizes")
        assert sizes["as_of"].nunique() == 2 and sizes["exited"].sum() > 0  # the later run saw exits
        for r in sizes.itertuples():
            key = f"{r.audience}|{r.as_of}"
            assert (number(shown[("audience-size", key)]), number(shown[("audience-entered", key)]),
                    number(shown[("audience-exited", key)])) == (r.size, r.entered, r.exited)
        members = table(root, "gold.audience_members")
        for audience, n in members.groupby("audience").size().items():
            assert number(shown[("audience-members", audience)]) == n
        for (audience, variant), n in members.groupby(["audience", "variant"]).size().items():
            assert number(shown[("variant-members", f"{audience}|{variant}")]) == n
        deliveries = table(root, "ops.deliveries").sort_values("ended_at").groupby("destination").last()
        for key, text in shown.items():
            if key[0] == "delivery-sent":
                assert number(text) == deliveries.loc[key[1].split("|")[1], "records_sent"]
        drawn = browser.evaluate("Array.from(document.querySelectorAll('[data-audience] svg polyline'))"
                                 ".map(p => p.getAttribute('points').split(' ').length)")
        assert drawn and all(n == 2 for n in drawn)  # one point per as-of date

        # Identity: profiles by number of identifiers, the largest ones, blocked values.
        browser.open(f"{server}/console/identity")
        shown = metrics(browser)
        (ARTIFACTS / "console-identity.png").write_bytes(browser.screenshot())
        graph = table(root, "gold.id_graph")
        per_profile = graph.groupby("profile_id").size()
        assert number(shown[("profiles", "")]) == len(per_profile)
        for size, n in Counter(per_profile).items():
            assert number(shown[("size-profiles", str(size))]) == n
        largest = {k: number(v) for (m, k), v in shown.items() if m == "largest"}
        assert len(largest) == 10 and all(per_profile[p] == n for p, n in largest.items())
        assert min(largest.values()) >= per_profile.drop(list(largest)).max()
        blocked = table(root, "silver.identifiers").query("status == 'blocked'")
        assert sorted(number(v) for (m, _), v in shown.items() if m == "blocked-seen") == sorted(blocked["times_seen"])

        # Profiles: look the busiest profile up by its e-mail, as typed by a person.
        browser.open(f"{server}/console/profiles")
        browser.submit("document.querySelector('select[name=id_type]').value = 'email';"
                       f"document.querySelector('input[name=value]').value = {json.dumps(email.upper())};"
                       "document.querySelector('form[action=\"/console/profiles\"]').submit()")
        shown = metrics(browser)
        (ARTIFACTS / "console-profile.png").write_bytes(browser.screenshot())
        assert shown[("profile-id", "")] == profile
        mine = graph[graph["profile_id"] == profile]
        assert number(shown[("identifier-count", "")]) == len(mine)
        links = table(root, "silver.id_links")
        touching = links[links["src_id"].isin(mine["vertex_id"]) | links["dst_id"].isin(mine["vertex_id"])]
        assert number(shown[("link-count", "")]) == len(touching)
        assert {k for (m, k) in shown if m == "member-of"} == set(members.loc[members["profile_id"] == profile,
                                                                                "audience"])
        scores = table(root, "gold.profile_scores").set_index("profile_id").loc[profile]
        assert number(shown[("score", "rfm_frequency")]) == scores["rfm_frequency"]
        traits = {k: v for k, v in dict(table(root, "gold.profiles").set_index("profile_id").loc[profile, "traits"])
                  .items() if v is not None}
        assert traits and all(shown[("trait", k)] == v for k, v in traits.items())
        assert browser.evaluate("document.querySelectorAll('svg circle').length") == len(mine)

        assert browser.console_errors == []
        assert {u.split("/")[2] for u in browser.requests if not u.startswith("data:")} == {server.split("/")[2]}
        html = browser.evaluate("document.documentElement.outerHTML")
        assert "http://" not in html.replace(server, "") and "https://" not in html and "<script" not in html


def test_console_page_views_are_audited(server, lake):
    httpx.get(f"{server}/console/identity", headers=bearer(lake, "console"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        root = lake["root"]
        if (root / "ops" / "api_audit").exists():
            audit = table(root, "ops.api_audit")
            if ((audit["action"] == "console") & (audit["route"] == "/console/identity")).any():
                return
        time.sleep(0.5)
    pytest.fail("no audit row for a console page view")
