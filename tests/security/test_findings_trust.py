"""Regressions from a black-box attack on main: the API docs page under the
app's own CSP, JSON ``null`` for optional fields, NUL characters in text
(the same answer on SQLite and PostgreSQL), what counts as a bearer token
(the CSRF exemption and the caller lookup must agree), and organizer login
limits that an attacker cannot turn into a lock-out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, select

from app.models import Card, Cluster, FocusArea, Participant, Workshop
from tests import factories as f

CSRF = "csrf-token-for-findings-0123456789"
NUL = "\x00"


@dataclass
class Scene:
    """A workshop made through the API: the organizer's token, the facilitator's
    and a participant's, one collecting focus area with a card and a cluster."""

    code: str
    uid: str
    fa: int
    card: int
    cluster: int
    org: str
    fac: str
    ana: str
    api: str = field(init=False)
    pcookie: str = field(init=False)  # the name of its participant cookie

    def __post_init__(self) -> None:
        self.api = f"/api/v1/workshops/{self.code}"
        self.pcookie = f.cookie_names(self.uid)[0]

    def cookies(self, who: str) -> dict[str, str]:
        """What a browser holding ``who``'s credential sends, with the CSRF
        header the page would add: only the content is under test."""
        jar = {"lw_csrf": CSRF}
        if who == "org":
            jar["lw_session"] = self.org
        else:
            jar[self.pcookie] = getattr(self, who)
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()), "X-CSRF-Token": CSRF}


def _scene(client: TestClient, session: Session) -> Scene:
    f.organizer(session)
    r = client.post("/api/v1/login", json={"name": "Org", "password": f.PASSWORD})
    assert r.status_code == 200, r.text
    org = r.json()["token"]
    r = client.post(
        "/api/v1/workshops",
        json={"title": "Findings", "template": "osce-organized-crime-2007"},
        headers=f.bearer(org),
    )
    assert r.status_code == 201, r.text
    ws = r.json()
    code, fa = ws["code"], ws["focus_areas"][0]["id"]
    key = ws["facilitator_url"].split("key=")[1]
    r = client.post(
        f"/api/v1/workshops/{code}/participants",
        json={"display_name": "Facilitator", "facilitator_key": key},
    )
    fac = r.json()["token"]
    r = client.put(
        f"/api/v1/workshops/{code}/focus-areas/{fa}/phase",
        json={"phase": "collect"},
        headers=f.bearer(fac),
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/api/v1/workshops/{code}/participants",
        json={"display_name": "Ana", "affiliation": "ODIHR"},
    )
    assert r.status_code == 201, r.text
    ana = r.json()["token"]
    r = client.post(
        f"/api/v1/workshops/{code}/cards",
        json={
            "focus_area_id": fa,
            "kind": "lesson",
            "title": "Involve prosecutors early",
            "body": "Joint training",
            "context": {"where": "Serbia", "evidence": "Two evaluations", "partners": ["UNODC"]},
        },
        headers=f.bearer(ana),
    )
    assert r.status_code == 201, r.text
    card = r.json()["id"]
    r = client.post(
        f"/api/v1/workshops/{code}/clusters",
        json={"focus_area_id": fa, "title": "Prosecution"},
        headers=f.bearer(fac),
    )
    assert r.status_code == 201, r.text
    return Scene(code, ws["uid"], fa, card, r.json()["id"], org, fac, ana)


def _card_row(client: TestClient, card_id: int) -> Card:
    # A session of its own, closed at once: on SQLite an open one would hold
    # the write lock the next request needs.
    with Session(client.app.state.engine, expire_on_commit=False) as db:
        row = db.get(Card, card_id)
    assert row is not None
    return row


def _card_count(client: TestClient) -> int:
    with Session(client.app.state.engine) as db:
        return db.exec(select(func.count()).select_from(Card)).one()


# -- 1. /docs works under the app's own CSP, with nothing from elsewhere ---------------


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self.style_attrs = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "style" in a:
            self.style_attrs += 1
        if tag == "script":
            self._in_script = True
            if a.get("src"):
                self.urls.append(str(a["src"]))
        elif tag == "link" and a.get("href") and not str(a["href"]).startswith("data:"):
            self.urls.append(str(a["href"]))
        elif tag == "img" and a.get("src"):
            self.urls.append(str(a["src"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data.strip()[:80])


def test_docs_page_loads_only_its_own_assets_and_no_inline_script(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://", r.text), "an external URL in /docs"
    page = _Assets()
    page.feed(r.text)
    assert page.inline_scripts == [] and page.style_attrs == 0
    assert any(u.endswith(".js") for u in page.urls) and any(u.endswith(".css") for u in page.urls)
    for url in page.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
    # Scripts stay locked to our own origin on this page too.
    csp = r.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives["script-src"] == ["'self'"] and "unsafe-eval" not in csp
    assert directives["connect-src"] == ["'self'"] and directives["frame-ancestors"] == ["'none'"]


def test_docs_init_script_points_at_our_openapi_and_calls_no_one_else(client: TestClient) -> None:
    page = _Assets()
    page.feed(client.get("/docs").text)
    ours = [u for u in page.urls if u.endswith(".js") and "/vendor/" not in u]
    assert ours, "the page has no init script of its own"
    for url in ours:
        text = client.get(url).text
        assert "/openapi.json" in client.get("/docs").text + text
        assert not re.search(r"https?://", text), url
        assert "validatorUrl" in text  # the default validator badge calls validator.swagger.io
    assert client.get("/openapi.json").status_code == 200


def test_fastapis_own_docs_pages_are_gone(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404
    assert client.get("/docs/oauth2-redirect").status_code == 404


def test_the_docs_page_needs_no_relaxed_csp(client: TestClient) -> None:
    """Swagger UI sets its styles through the DOM, which ``style-src 'self'``
    allows (tests/e2e/test_docs_page.py shows it renders with no violation),
    so /docs keeps the policy of every other page."""
    policies = {client.get(p).headers["content-security-policy"] for p in ("/docs", "/login")}
    assert len(policies) == 1 and "unsafe-inline" not in policies.pop()


# -- 2. JSON null for an optional field means "not given" ------------------------------


def test_null_optional_fields_on_create_take_their_defaults(
    client: TestClient, session: Session
) -> None:
    s = _scene(client, session)
    nulls = {
        "dimensions": None,
        "where": None,
        "partners": None,
        "crime_areas": None,
        "evidence": None,
        "human_rights": None,
    }
    r = client.post(
        f"{s.api}/cards",
        json={
            "focus_area_id": s.fa,
            "kind": "lesson",
            "title": "Null everywhere",
            "body": None,
            "context": nulls,
            "client_id": None,
        },
        headers=f.bearer(s.ana),
    )
    assert r.status_code == 201, r.text
    assert r.json()["body"] == "" and r.json()["context"] == {}
    r = client.post(
        f"{s.api}/cards",
        json={"focus_area_id": s.fa, "kind": "tool", "title": "Null context", "context": None},
        headers=f.bearer(s.ana),
    )
    assert r.status_code == 201, r.text
    row = _card_row(client, r.json()["id"])
    assert row.body == "" and row.context == {}
    # A required field stays required: null is not a title.
    r = client.post(
        f"{s.api}/cards",
        json={"focus_area_id": s.fa, "kind": "tool", "title": None},
        headers=f.bearer(s.ana),
    )
    assert r.status_code == 422


def test_null_fields_on_update_leave_the_card_unchanged(
    client: TestClient, session: Session
) -> None:
    s = _scene(client, session)
    url = f"{s.api}/cards/{s.card}"
    before = _card_row(client, s.card)
    kept = (before.kind, before.body, dict(before.context))
    for body in (
        {"body": None},
        {"kind": None, "title": None, "body": None, "context": None, "status": None},
        {"title": "Involve prosecutors from day one", "body": None, "context": None},
    ):
        r = client.patch(url, json=body, headers=f.bearer(s.ana))
        assert r.status_code == 200, (body, r.text)
        row = _card_row(client, s.card)
        assert (row.kind, row.body, row.context) == kept, body
        assert row.title in ("Involve prosecutors early", "Involve prosecutors from day one")
    assert _card_row(client, s.card).title == "Involve prosecutors from day one"


def test_null_optional_fields_of_the_other_inputs_mean_not_given(
    client: TestClient, session: Session
) -> None:
    s = _scene(client, session)
    r = client.post(
        f"{s.api}/participants",
        json={"display_name": "Bo", "affiliation": "ODIHR", "facilitator_key": None},
    )
    assert r.status_code == 201 and r.json()["role"] == "participant", r.text
    r = client.post(
        "/api/v1/workshops",
        json={
            "title": "Nulls",
            "template": None,
            "date": None,
            "venue": None,
            "focus_areas": [{"title": "Only", "prompt": None, "kinds": None}],
            "settings": {"classification": None, "vote_budget": None},
        },
        headers=f.bearer(s.org),
    )
    assert r.status_code == 201, r.text
    with Session(client.app.state.engine) as db:
        ws = db.exec(select(Workshop).where(Workshop.code == r.json()["code"])).one()
        assert (ws.venue, ws.classification, ws.vote_budget) == ("", "", 5)
        fa = db.exec(select(FocusArea).where(FocusArea.workshop_id == ws.id)).one()
        assert fa.prompt == "" and len(fa.kinds) == 4
    fac = f.bearer(s.fac)
    r = client.post(f"{s.api}/clusters", json={"focus_area_id": s.fa, "title": None}, headers=fac)
    assert r.status_code == 201, r.text
    r = client.patch(
        f"{s.api}/clusters/{s.cluster}",
        json={"title": None, "synthesis": None, "position": None, "is_recommendation": None},
        headers=fac,
    )
    assert r.status_code == 200 and r.json()["title"] == "Prosecution", r.text
    # Where null is a value of its own, it keeps that meaning: out of any cluster.
    r = client.put(f"{s.api}/cards/{s.card}/cluster", json={"cluster_id": s.cluster}, headers=fac)
    assert r.status_code == 200 and r.json()["cluster_id"] == s.cluster
    r = client.put(f"{s.api}/cards/{s.card}/cluster", json={"cluster_id": None}, headers=fac)
    assert r.status_code == 200 and r.json()["cluster_id"] is None


# -- 3. NUL characters: one clear 422 naming the field, on every database -----------------


def _nul_error(r: Any, label: str) -> str | None:
    """None when ``r`` is the refusal we want: a 422 whose message says
    "<label>: cannot contain a NUL character" (the label as the page or the
    API shows the field), else what is wrong with it."""
    if r.status_code != 422:
        return f"status {r.status_code}: {r.text[:200]}"
    text = r.text.lower().replace("_", " ")
    wanted = label.lower().replace("_", " ") + ": cannot contain a nul character"
    if wanted not in text:
        return f"no {wanted!r} in: {r.text[:300]}"
    return None


def _nothing_with_nul(engine: Any) -> list[str]:
    """Every text and JSON value of the rows a request could write, read back
    and searched in Python (a NUL inside SQL LIKE means different things to
    the two databases)."""
    found = []
    with Session(engine) as db:
        for model in (Card, Cluster, Workshop, FocusArea, Participant):
            for row in db.exec(select(model)):
                for name, value in row.model_dump().items():
                    if "\\x00" in repr(value):  # how repr() shows a NUL
                        found.append(f"{model.__name__}.{name}")
    return found


def test_nul_in_json_text_is_refused_naming_the_field(client: TestClient, session: Session) -> None:
    s = _scene(client, session)
    quiet = TestClient(client.app, raise_server_exceptions=False)
    ana, fac, org = f.bearer(s.ana), f.bearer(s.fac), f.bearer(s.org)
    card = {"focus_area_id": s.fa, "kind": "lesson", "title": "Fine"}
    ctx = {"where": "Serbia"}
    cases: list[tuple[str, str, dict[str, str], dict[str, Any], str]] = [
        ("POST", f"{s.api}/cards", ana, {**card, "title": f"a{NUL}b"}, "title"),
        ("POST", f"{s.api}/cards", ana, {**card, "body": f"a{NUL}b"}, "body"),
        ("POST", f"{s.api}/cards", ana, {**card, "client_id": f"c{NUL}"}, "client_id"),
        ("POST", f"{s.api}/cards", ana, {**card, "context": {"where": NUL}}, "context.where"),
        (
            "POST",
            f"{s.api}/cards",
            ana,
            {**card, "context": {**ctx, "evidence": f"x{NUL}"}},
            "context.evidence",
        ),
        (
            "POST",
            f"{s.api}/cards",
            ana,
            {**card, "context": {"human_rights": f"x{NUL}"}},
            "context.human_rights",
        ),
        (
            "POST",
            f"{s.api}/cards",
            ana,
            {**card, "context": {"partners": [NUL]}},
            "context.partners",
        ),
        (
            "POST",
            f"{s.api}/cards",
            ana,
            {**card, "context": {"crime_areas": [NUL]}},
            "context.crime_areas",
        ),
        ("PATCH", f"{s.api}/cards/{s.card}", ana, {"title": f"x{NUL}"}, "title"),
        ("PATCH", f"{s.api}/cards/{s.card}", ana, {"body": f"x{NUL}"}, "body"),
        ("PATCH", f"{s.api}/cards/{s.card}", ana, {"context": {"where": NUL}}, "context.where"),
        ("POST", f"{s.api}/participants", {}, {"display_name": f"A{NUL}"}, "display_name"),
        (
            "POST",
            f"{s.api}/participants",
            {},
            {"display_name": "Bo", "affiliation": f"ODIHR{NUL}"},
            "affiliation",
        ),
        ("POST", "/api/v1/workshops", org, {"title": f"T{NUL}"}, "title"),
        ("POST", "/api/v1/workshops", org, {"title": "T", "venue": NUL}, "venue"),
        (
            "POST",
            "/api/v1/workshops",
            org,
            {"title": "T", "focus_areas": [{"title": "F", "prompt": NUL}]},
            "focus_areas.0.prompt",
        ),
        (
            "POST",
            "/api/v1/workshops",
            org,
            {"title": "T", "settings": {"classification": NUL}},
            "settings.classification",
        ),
        ("POST", f"{s.api}/clusters", fac, {"focus_area_id": s.fa, "title": NUL}, "title"),
        ("PATCH", f"{s.api}/clusters/{s.cluster}", fac, {"title": f"x{NUL}"}, "title"),
        ("PATCH", f"{s.api}/clusters/{s.cluster}", fac, {"synthesis": NUL}, "synthesis"),
        ("POST", "/api/v1/login", {}, {"name": f"Org{NUL}", "password": "x" * 12}, "name"),
    ]
    problems = []
    for method, url, headers, body, name in cases:
        r = quiet.request(method, url, json=body, headers=headers)
        details = r.json()["error"].get("details", []) if r.status_code == 422 else []
        said = {d["field"]: d["message"] for d in details}
        if r.status_code != 422 or "cannot contain a NUL character" not in said.get(name, ""):
            problems.append(f"{method} {url} {name}: {r.status_code} {r.text[:300]}")
    assert not problems, "\n".join(problems)
    assert _nothing_with_nul(client.app.state.engine) == []


def test_nul_in_form_text_is_refused_naming_the_field(client: TestClient, session: Session) -> None:
    s = _scene(client, session)
    quiet = TestClient(client.app, raise_server_exceptions=False)
    w = f"/w/{s.code}"
    o = f"/organizer/w/{s.code}"
    card_form = {"focus_area_id": str(s.fa), "kind": "lesson", "title": "Fine"}
    settings_form = {
        "title": "Findings",
        "venue": "",
        "hosted_by": "",
        "classification": "",
        "executive_summary": "",
        "vote_budget": "5",
        "vote_cap": "3",
    }
    cases: list[tuple[str, str, dict[str, str], str]] = [
        ("ana", f"{w}/cards", {**card_form, "title": f"a{NUL}"}, "title"),
        ("ana", f"{w}/cards", {**card_form, "body": f"a{NUL}"}, "text"),
        ("ana", f"{w}/cards", {**card_form, "where": NUL}, "where"),
        ("ana", f"{w}/cards", {**card_form, "partners": NUL}, "partners"),
        ("ana", f"{w}/cards/{s.card}", {"title": f"x{NUL}"}, "title"),
        ("ana", f"{w}/cards/{s.card}", {"body": f"x{NUL}"}, "text"),
        ("fac", f"{w}/fa/{s.fa}/clusters", {"title": f"x{NUL}"}, "title"),
        ("fac", f"{w}/clusters/{s.cluster}", {"title": f"x{NUL}"}, "title"),
        ("fac", f"{w}/clusters/{s.cluster}", {"synthesis": f"x{NUL}"}, "synthesis"),
        ("org", "/organizer/workshops", {"title": f"x{NUL}"}, "title"),
        ("org", "/organizer/workshops", {"title": "x", "venue": NUL}, "venue"),
        ("org", f"{o}/settings", {**settings_form, "title": f"x{NUL}"}, "title"),
        ("org", f"{o}/settings", {**settings_form, "venue": NUL}, "venue"),
        ("org", f"{o}/settings", {**settings_form, "hosted_by": NUL}, "hosted by"),
        ("org", f"{o}/settings", {**settings_form, "classification": NUL}, "classification"),
        ("org", f"{o}/settings", {**settings_form, "executive_summary": NUL}, "summary"),
        ("org", f"{o}/fa", {"title": f"x{NUL}"}, "title"),
        ("org", f"{o}/fa", {"title": "x", "prompt": NUL}, "prompt"),
        ("org", f"{o}/fa/{s.fa}", {"title": f"x{NUL}", "kinds": "lesson"}, "title"),
        ("org", f"{o}/fa/{s.fa}", {"title": "x", "prompt": NUL, "kinds": "lesson"}, "prompt"),
        ("org", f"{o}/affiliations", {"affiliations": f"ODIHR\nA{NUL}"}, "affiliations"),
    ]
    problems = []
    for who, url, data, name in cases:
        r = quiet.post(
            url, data={**data, "csrf_token": CSRF}, headers=s.cookies(who), follow_redirects=False
        )
        problem = _nul_error(r, name)
        if problem:
            problems.append(f"{who} POST {url} {name}: {problem}")
    # Joining through the form: the name and the affiliation.
    for data, name in (
        ({"display_name": f"A{NUL}", "affiliation": "ODIHR"}, "name"),
        ({"display_name": "Bo", "affiliation": f"ODIHR{NUL}"}, "affiliation"),
    ):
        r = quiet.post(
            f"/join/{s.code}",
            data={**data, "csrf_token": CSRF},
            headers={"Cookie": f"lw_csrf={CSRF}"},
            follow_redirects=False,
        )
        problem = _nul_error(r, name)
        if problem:
            problems.append(f"join form {name}: {problem}")
    assert not problems, "\n".join(problems)
    assert _nothing_with_nul(client.app.state.engine) == []


def test_nul_in_an_organizer_name_is_refused_at_set_up(client: TestClient) -> None:
    client.app.state.setup_token = "set-up-token-for-tests"
    r = client.post(
        "/setup",
        data={"token": "set-up-token-for-tests", "name": f"Org{NUL}", "password": f.PASSWORD},
        headers={"Cookie": f"lw_csrf={CSRF}", "X-CSRF-Token": CSRF},
        follow_redirects=False,
    )
    assert _nul_error(r, "name") is None, r.text[:300]


# -- 4. One definition of a bearer token --------------------------------------------------

NOT_BEARER_TOKENS: list[bytes] = [
    b"Bearer \xa0",  # a non-breaking space: str.strip() takes it away
    b"Bearer \xa0\xa0\x85",
    b"Bearer ",
    b"Bearer",
    b"Bearer \t",
    b"bearer  ",
    b"Basic b3JnOnBhc3N3b3Jk",
    b"Bearer two words",
    b"Bearer tok\xe9n",
]


@pytest.mark.parametrize("auth", NOT_BEARER_TOKENS, ids=repr)
def test_an_authorization_header_that_is_no_bearer_token_gets_no_csrf_pass(
    client: TestClient, session: Session, auth: bytes
) -> None:
    s = _scene(client, session)
    client.cookies.clear()
    cookie = f"{s.pcookie}={s.ana}"  # the participant's cookie, no CSRF token
    before = _card_count(client)
    r = client.post(
        f"{s.api}/cards",
        json={"focus_area_id": s.fa, "kind": "tool", "title": "Forged"},
        headers={"Cookie": cookie, "Authorization": auth},  # type: ignore[dict-item]
    )
    assert r.status_code == 403, (auth, r.status_code, r.text)
    assert _card_count(client) == before
    # With the page's CSRF token the cookie does what it always did.
    r = client.post(
        f"{s.api}/cards",
        json={"focus_area_id": s.fa, "kind": "tool", "title": "With the token"},
        headers={
            "Cookie": f"{cookie}; lw_csrf={CSRF}",
            "X-CSRF-Token": CSRF,
            "Authorization": auth,  # type: ignore[dict-item]
        },
    )
    assert r.status_code == 201, (auth, r.text)


def test_a_bearer_token_that_is_wrong_never_falls_back_to_the_cookie(
    client: TestClient, session: Session
) -> None:
    s = _scene(client, session)
    client.cookies.clear()
    for auth in ("Bearer not-a-real-token", "bearer  not-a-real-token  "):
        r = client.post(
            f"{s.api}/cards",
            json={"focus_area_id": s.fa, "kind": "tool", "title": "Forged"},
            headers={"Cookie": f"{s.pcookie}={s.ana}", "Authorization": auth},
        )
        assert r.status_code == 401, (auth, r.text)
        r = client.get(
            f"{s.api}/me", headers={"Cookie": f"{s.pcookie}={s.ana}", "Authorization": auth}
        )
        assert r.status_code == 403, (auth, r.text)  # "join first": nobody
    # Any spelling of the scheme, the token itself does the work.
    for auth in (f"Bearer {s.ana}", f"bearer {s.ana}", f"BEARER   {s.ana} "):
        r = client.get(f"{s.api}/me", headers={"Authorization": auth})
        assert r.status_code == 200 and r.json()["display_name"] == "Ana", auth


def test_the_websocket_reads_a_bearer_token_as_http_does(
    client: TestClient, session: Session
) -> None:
    """The handshake takes the same tokens as HTTP; a header that is no bearer
    token counts as no header (the cookie then speaks, behind the Origin
    check), and a well-formed token that is wrong never falls back to it."""
    from starlette.websockets import WebSocketDisconnect

    s = _scene(client, session)
    client.cookies.clear()
    url = f"/ws/workshops/{s.code}"
    cookie = f"{s.pcookie}={s.ana}"

    def served(headers: dict[str, Any]) -> bool:
        with client.websocket_connect(url, headers=headers) as sock:
            sock.send_text('{"type": "hello", "seq": null}')
            first = sock.receive_text()
            sock.close()
            return 'id="ws-status"' in first

    assert served({"Authorization": f"bearer  {s.ana}"})
    for auth in NOT_BEARER_TOKENS:
        assert served({"Authorization": auth, "Cookie": cookie}), auth
    for auth in (b"Bearer not-a-real-token", b"Bearer \xa0", b"Bearer two words"):
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect(url, headers={"Authorization": auth}) as sock,  # type: ignore[dict-item]
        ):
            sock.receive_text()
        assert refused.value.code == 4401, auth
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(
            url, headers={"Authorization": "Bearer not-a-real-token", "Cookie": cookie}
        ) as sock,
    ):
        sock.receive_text()
    assert refused.value.code == 4401


# -- 5. Login limits count failures, per address ------------------------------------------


def _api_login(client: TestClient, password: str, name: str = "Org") -> int:
    return client.post("/api/v1/login", json={"name": name, "password": password}).status_code


def _form_login(client: TestClient, password: str, name: str = "Org") -> int:
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": CSRF},
        headers={"Cookie": f"lw_csrf={CSRF}"},
        follow_redirects=False,
    ).status_code


def test_an_attackers_failed_logins_do_not_lock_the_organizer_out(client_with: Any) -> None:
    client = client_with(rate_logins_per_minute=3)
    with Session(client.app.state.engine) as s:
        f.organizer(s)
    attacker = TestClient(client.app, client=("198.51.100.66", 40000))
    seen = [_api_login(attacker, f"guess {i}") for i in range(12)]
    assert seen[:3] == [401, 401, 401] and set(seen[3:]) == {429}, seen
    assert _form_login(attacker, "another guess") == 429
    organizer = TestClient(client.app, client=("192.0.2.10", 40000))
    assert _form_login(organizer, f.PASSWORD) == 303
    organizer.cookies.clear()  # the API login, from a script that holds no cookie
    assert _api_login(organizer, f.PASSWORD) == 200
    # Even the attacker's own right guess is stopped now: its address is over its limit.
    assert _api_login(attacker, f.PASSWORD) == 429


def test_right_passwords_are_not_counted(client_with: Any) -> None:
    client = client_with(rate_logins_per_minute=2)
    with Session(client.app.state.engine) as s:
        f.organizer(s)
    assert [_api_login(client, f.PASSWORD) for _ in range(8)] == [200] * 8
    assert _api_login(client, "wrong password 1") == 401
    assert _form_login(client, f.PASSWORD) == 303  # one failure is under the limit


def test_a_wrong_password_storm_from_one_address_is_stopped(client_with: Any) -> None:
    client = client_with(rate_logins_per_minute=2)  # 6 failures per address
    with Session(client.app.state.engine) as s:
        f.organizer(s)
    names = ["Org", "Org", "alpha", "bravo", "charlie", "delta", "echo", "Org"]
    seen = [_api_login(client, "guess guess", name=n) for n in names]
    assert seen == [401, 401, 401, 401, 401, 401, 429, 429], seen
    assert _form_login(client, f.PASSWORD) == 429
    r = client.post("/api/v1/login", json={"name": "Org", "password": "x" * 12})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_guessing_spread_over_many_addresses_meets_the_deployment_limit(
    client_with: Any,
) -> None:
    client = client_with(rate_logins_per_minute=3, rate_failed_logins_per_minute=5)
    with Session(client.app.state.engine) as s:
        f.organizer(s)
    seen = []
    for i in range(7):
        botnet = TestClient(client.app, client=(f"203.0.113.{i + 1}", 40000))
        seen.append(_api_login(botnet, f"guess {i}"))
    assert seen == [401] * 5 + [429] * 2, seen
