"""The web console: read-only pages over the lake, served by `cdp api serve` under ``/console``.

Pages: Overview (last runs, table freshness, streaming lag, destinations), Profiles (look up by any identifier:
traits, attributes, consent, scores, audiences and the identity graph), Audiences (sizes over time, entered and
exited per day, variants, destinations with their last delivery) and Identity (profile sizes, largest profiles,
blocked values, the latest run).

Access is the Profile API's: an API key with the ``read`` scope, sent as ``Authorization: Bearer``/``X-API-Key``
or entered once in the login form, which keeps it in an HttpOnly, SameSite=Strict cookie scoped to ``/console``.
No key, no data (401 with the login form; 403 without ``read``). Without the ``pii`` scope, identifier values and
PII traits and attributes are masked exactly as the API masks them.

Pages are rendered on the server (Jinja2, autoescaped) with inline CSS and SVG: no script, nothing fetched from
elsewhere, and a Content-Security-Policy that forbids both. The three POSTs (login, logout, look-up) are refused
unless the browser says they come from this origin (``Sec-Fetch-Site``/``Origin``); everything else is a GET that
changes nothing. Identifier values never appear in URLs (a look-up posts them, then redirects to the profile id),
and every page view is audited like an API call (action ``console``).

Example:
    >>> app.include_router(console_router(api))     # doctest: +SKIP
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from cdp_spark.api.console import charts, data
from cdp_spark.http_errors import ApiError

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.api.app import ProfileApi
    from cdp_spark.api.keys import ApiKey

PREFIX = "/console"
COOKIE = "cdp_console_key"
SESSION_HOURS = 8
MAX_FORM = 8 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # not "no-referrer": browsers then send `Origin: null` with the forms
    "Cache-Control": "no-store",  # pages may show personal data
}
SCORE_FIELDS = ("rfm_segment", "rfm_recency_days", "rfm_frequency", "rfm_monetary", "rfm_r", "rfm_f", "rfm_m",
                "expected_purchases", "p_alive", "clv", "clv_percentile", "propensity_purchase", "propensity_churn")


class Denied(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _templates() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("cdp_spark.api.console", "templates"),
                       autoescape=select_autoescape(default=True, default_for_string=True), trim_blocks=True,
                       lstrip_blocks=True)


def console_router(api: "ProfileApi") -> APIRouter:
    """The console's routes, on the Profile API's keys, masking policy, serving store and lake."""
    env = _templates()
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    id_types = sorted(api.id_types)

    def page(template: str, request: Request, key: "ApiKey | None", status: int = 200, **values: Any) -> HTMLResponse:
        body = env.get_template(template).render(key=key, pii=bool(key and "pii" in key.scopes), org=api.config.org.id,
                                                 mask=api.policy.mask, status=status, **values)
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    def authorise(request: Request) -> "ApiKey":
        request.state.action = "console"
        presented = request.cookies.get(COOKIE) or _header_key(request)
        key = api.keys.verify(presented) if presented else None
        if key is None:
            request.state.key_id = api.keys.key_id_of(presented)
            raise Denied(401, "Sign in with an API key." if not presented else "Unknown or revoked API key.")
        request.state.key_id = key.key_id
        if "read" not in key.scopes:
            raise Denied(403, "This key lacks the read scope.")
        return key

    def guarded(request: Request, render: Any) -> Response:
        try:
            key = authorise(request)
        except Denied as exc:
            if exc.status == 401:
                return page("login.html", request, None, exc.status, title="Sign in", message=exc.message,
                            next_path=_next_path(request.url.path))
            return page("message.html", request, None, exc.status, title="Not allowed", message=exc.message)
        return render(key)

    def masked(key: "ApiKey", id_type: str, value: Any) -> Any:
        """An identifier value as this key may see it (the API's rule: masked without ``pii``)."""
        policy = api.policy
        if "pii" in key.scopes or value is None:
            return value
        return policy.mask if id_type in policy.identifier_types or policy.mask_unknown_identifiers else value

    @router.get("")
    def overview(request: Request) -> Response:
        return guarded(request, lambda key: page("overview.html", request, key, title="Overview", page="Overview",
                                                 s=data.overview(api.lake, api.config)))

    def refused(request: Request) -> Response:
        return page("message.html", request, None, 403, title="Refused",
                    message="The form did not come from this console.")

    @router.get("/login")
    def login_form(request: Request, next: str = PREFIX) -> Response:  # noqa: A002 - the form field's name
        return page("login.html", request, None, title="Sign in", next_path=_next_path(next))

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        if form is None:
            return refused(request)
        presented = form.get("key", "").strip()
        key = api.keys.verify(presented)
        request.state.action = "console_login"
        request.state.key_id = key.key_id if key else api.keys.key_id_of(presented)
        if key is None or "read" not in key.scopes:
            message = "Unknown or revoked API key." if key is None else "This key lacks the read scope."
            return page("login.html", request, None, 401 if key is None else 403, title="Sign in", message=message,
                        next_path=_next_path(form.get("next", PREFIX)))
        response = RedirectResponse(_next_path(form.get("next", PREFIX)), status_code=303, headers=SECURITY_HEADERS)
        response.set_cookie(COOKIE, presented, max_age=SESSION_HOURS * 3600, path=PREFIX, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        request.state.action = "console_logout"
        if await _form(request) is None:
            return refused(request)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303, headers=SECURITY_HEADERS)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    @router.get("/profiles")
    def profiles(request: Request) -> Response:
        return guarded(request, lambda key: page("profiles.html", request, key, title="Profiles", page="Profiles",
                                                 id_types=id_types, selected="email"))

    @router.post("/profiles")
    async def lookup(request: Request) -> Response:
        form = await _form(request)
        if form is None:
            return refused(request)

        def found(key: "ApiKey") -> Response:
            id_type, value = form.get("id_type", ""), form.get("value", "")
            try:
                if id_type == "profile_id":
                    doc = api._doc(request, value.strip(), None, None)  # noqa: SLF001 - the API's own resolution
                else:
                    doc = api._doc(request, None, id_type, value)  # noqa: SLF001
            except ApiError as exc:
                message = "No profile has this identifier." if exc.status == 404 else exc.message
                return page("profiles.html", request, key, 404 if exc.status == 404 else exc.status, title="Profiles",
                            page="Profiles", id_types=id_types, selected=id_type, message=message)
            return RedirectResponse(f"{PREFIX}/profiles/{quote(doc['profile_id'], safe='')}", status_code=303,
                                    headers=SECURITY_HEADERS)

        return guarded(request, found)

    @router.get("/profiles/{profile_id}")
    def profile(request: Request, profile_id: str) -> Response:
        def render(key: "ApiKey") -> Response:
            try:
                doc = api.render(key, api._doc(request, profile_id, None, None), None)  # noqa: SLF001
            except ApiError as exc:
                return page("message.html", request, key, exc.status, title="Profile", page="Profiles",
                            message="No such profile." if exc.status == 404 else exc.message)
            extras = data.profile_extras(api.lake, doc["profile_id"])
            graph = data.identity_graph(api.lake, doc["profile_id"])
            for i in graph["identifiers"]:
                i["shown"] = masked(key, i["id_type"], i["value"])
            for link in graph["links"]:
                link["src_shown"] = masked(key, link["src_type"], link["src_value"])
                link["dst_shown"] = masked(key, link["dst_type"], link["dst_value"])
            return page("profile.html", request, key, title=f"Profile {doc['profile_id']}", page="Profiles",
                        doc=doc, scores=extras["scores"], audiences=extras["audiences"], graph=graph,
                        graph_svg=Markup(_graph_svg(graph)), score_fields=SCORE_FIELDS,
                        id_types=id_types)

        return guarded(request, render)

    @router.get("/audiences")
    def audiences(request: Request) -> Response:
        def render(key: "ApiKey") -> Response:
            rows = data.audiences(api.lake, api.config)
            for a in rows:
                a["size_svg"] = Markup(charts.line_chart([(str(r["as_of"]), r["size"]) for r in a["sizes"]],
                                                         title=f"{a['name']}: size per as-of date"))
                a["flow_svg"] = Markup(charts.entered_exited(
                    [(str(r["as_of"]), r["entered"], r["exited"]) for r in a["sizes"]],
                    title=f"{a['name']}: entered and exited per as-of date"))
            return page("audiences.html", request, key, title="Audiences", page="Audiences", audiences=rows)

        return guarded(request, render)

    @router.get("/identity")
    def identity(request: Request) -> Response:
        def render(key: "ApiKey") -> Response:
            summary = data.identity(api.lake)
            for b in summary["blocked"]:
                b["shown"] = masked(key, b["id_type"], b["value"])
            svg = charts.bar_chart([(str(d["identifiers"]), d["profiles"]) for d in summary["distribution"]],
                                   title="profiles by number of identifiers")
            return page("identity.html", request, key, title="Identity", page="Identity", i=summary,
                        distribution_svg=Markup(svg))

        return guarded(request, render)

    def _graph_svg(graph: dict[str, Any]) -> str:
        index = {r["vertex_id"]: n for n, r in enumerate(graph["identifiers"])}
        nodes = [(r["id_type"], str(r["shown"])) for r in graph["identifiers"]]
        edges = [(index[link["src_id"]], index[link["dst_id"]], link["status"]) for link in graph["links"]
                 if link["src_id"] in index and link["dst_id"] in index]
        return charts.identity_graph(nodes, edges, title="identifiers of this profile and their links")

    return router


def _header_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key")


def _next_path(path: str) -> str:
    """Where to go after signing in: a console page of this server, never another site (``//host``, ``/\\host``)."""
    if not path.startswith(PREFIX) or path.startswith(("//", "/\\")) or any(c in path for c in "\\\r\n") \
            or urlsplit(path).netloc:
        return PREFIX
    return path


async def _form(request: Request) -> dict[str, str] | None:
    """The posted form's fields (first value each), or None when the browser says the post came from another site
    or the body is too large."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return None
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        return None
    body = await request.body()
    if len(body) > MAX_FORM:
        return None
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), max_num_fields=20).items()}

