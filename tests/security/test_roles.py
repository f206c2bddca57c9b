"""The route walk: every route of the app, called as every role, against a
table of who may do what. A route missing from the table fails the test, so
a new route needs an entry (and a decision about who may call it).

Roles: anonymous; participant (the author of ``card``); facilitator (joined
with the facilitator link); projector (the projector key in its cookie);
organizer (owns the workshop); other organizer. Every request carries a valid
CSRF token: what is tested here is authorisation only. A refusal is 401/403,
or for pages a redirect to /login or the join page, and it must leave the
database as it was (row counts and ``Workshop.last_seq``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from sqlmodel import Session
from starlette.websockets import WebSocketDisconnect

from tests import factories as f
from tests.conftest import SECRET

from .conftest import make_settings
from .world import ROLES, World, fingerprint, leave, seed

ALL = frozenset(ROLES)
NOBODY: frozenset[str] = frozenset()
P = frozenset({"participant"})
F = frozenset({"facilitator"})
J = frozenset({"projector"})
PF = P | F
STAFF = frozenset({"facilitator", "organizer"})
OWNER = frozenset({"organizer"})
ORGANIZERS = frozenset({"organizer", "other_organizer"})

Body = Callable[[World], dict[str, Any]]


@dataclass(frozen=True)
class Spec:
    allowed: frozenset[str]
    body: Body | None = None  # keyword arguments for the request (json=, data=, params=)
    params: dict[str, Callable[[World], Any]] = field(default_factory=dict)
    # Per-role outcome other than "ok"/"deny", e.g. "422" for every role.
    expect: dict[str, str] = field(default_factory=dict)


def _form(**values: Any) -> Body:
    return lambda w: {"data": {k: v(w) if callable(v) else v for k, v in values.items()}}


def _json(**values: Any) -> Body:
    return lambda w: {"json": {k: v(w) if callable(v) else v for k, v in values.items()}}


def _query(**values: Any) -> Body:
    return lambda w: {"params": {k: v(w) if callable(v) else v for k, v in values.items()}}


def _fa_v(w: World) -> int:
    return w.fa_v.id or 0


def _vcard(w: World) -> int:
    return w.vcard.id or 0


VOTE = {"card_id": _vcard}
ON_VOTING_AREA = {"fa_id": _fa_v}
# A facilitator's dot on the board page is refused inside the fragment (200 with
# "Facilitators do not vote."), not with a 403; the database must not change.
INLINE_REFUSAL = {"facilitator": "refused-200"}

TABLE: dict[tuple[str, str], Spec] = {
    # -- participant pages ---------------------------------------------------------
    ("GET", "/"): Spec(ALL),
    ("GET", "/join"): Spec(ALL, _query(code=lambda w: w.code)),
    ("GET", "/join/{code}"): Spec(ALL),
    ("POST", "/join/{code}"): Spec(ALL, _form(display_name="Newcomer", affiliation="ODIHR")),
    ("GET", "/w/{code}"): Spec(PF),
    ("POST", "/w/{code}/cards"): Spec(
        PF, _form(focus_area_id=lambda w: w.fa_c.id, kind="tool", title="Mentoring")
    ),
    ("GET", "/w/{code}/mine/{fa_id}"): Spec(PF),
    ("GET", "/w/{code}/cards/{card_id}/edit"): Spec(P),
    ("POST", "/w/{code}/cards/{card_id}"): Spec(P, _form(title="Edited title")),
    ("POST", "/w/{code}/cards/{card_id}/withdraw"): Spec(P),
    ("POST", "/w/{code}/cards/{card_id}/votes"): Spec(P, params=VOTE, expect=INLINE_REFUSAL),
    ("POST", "/w/{code}/cards/{card_id}/votes/remove"): Spec(P, params=VOTE, expect=INLINE_REFUSAL),
    ("PUT", "/w/{code}/cards/{card_id}/rating"): Spec(
        P, _form(impact="3", feasibility="4"), params=VOTE
    ),
    ("GET", "/w/{code}/similar"): Spec(
        PF, _query(focus_area_id=lambda w: w.fa_c.id, title="joint investigation")
    ),
    # -- organizer pages -----------------------------------------------------------
    # Set-up is over once an organizer exists: everybody is sent to /login.
    ("GET", "/setup"): Spec(NOBODY),
    ("POST", "/setup"): Spec(
        NOBODY,
        _form(token="guess", name="Mallory", password="long enough password"),
        expect=dict.fromkeys(ROLES, "422"),
    ),
    ("GET", "/login"): Spec(ALL),
    ("POST", "/login"): Spec(ALL, _form(name="Owner", password=f.PASSWORD)),
    ("POST", "/logout"): Spec(ALL),
    ("GET", "/organizer"): Spec(ORGANIZERS),
    ("POST", "/organizer/workshops"): Spec(ORGANIZERS, _form(title="Another workshop")),
    ("GET", "/organizer/w/{code}"): Spec(OWNER),
    ("POST", "/organizer/w/{code}/settings"): Spec(
        OWNER, _form(title="Renamed", vote_budget="5", vote_cap="3", anonymize_on_close="1")
    ),
    ("POST", "/organizer/w/{code}/fa"): Spec(OWNER, _form(title="A fourth focus area")),
    ("POST", "/organizer/w/{code}/fa/{fa_id}"): Spec(
        OWNER, _form(action="save", title="Renamed area", prompt="", kinds=["tool", "lesson"])
    ),
    ("POST", "/organizer/w/{code}/affiliations"): Spec(OWNER, _form(affiliations="A\nB\nC")),
    ("POST", "/organizer/w/{code}/rotate"): Spec(OWNER, _form(what="keys")),
    ("POST", "/organizer/w/{code}/close"): Spec(OWNER, _form(confirm_close="yes")),
    ("POST", "/organizer/w/{code}/reopen"): Spec(OWNER),
    ("POST", "/organizer/w/{code}/delete"): Spec(OWNER, _form(confirm=lambda w: w.code)),
    # The join QR code carries only the public join link.
    ("GET", "/w/{code}/qr.svg"): Spec(ALL),
    # -- facilitator console and projector -----------------------------------------
    # Without ?key= only an existing facilitator passes (redirected to the console).
    ("GET", "/w/{code}/facilitate"): Spec(F),
    ("GET", "/w/{code}/console"): Spec(F),
    ("GET", "/w/{code}/projector"): Spec(J),
    ("PUT", "/w/{code}/fa/{fa_id}/phase"): Spec(STAFF, _form(phase="cluster")),
    ("POST", "/w/{code}/fa/{fa_id}/timer"): Spec(STAFF, _form(minutes="5")),
    ("POST", "/w/{code}/fa/{fa_id}/spotlight"): Spec(STAFF),
    ("POST", "/w/{code}/fa/{fa_id}/reveal"): Spec(STAFF, params=ON_VOTING_AREA),
    ("POST", "/w/{code}/lock"): Spec(STAFF, _form(locked="1")),
    ("POST", "/w/{code}/private-writing"): Spec(STAFF, _form(on="1")),
    ("POST", "/w/{code}/cards/{card_id}/moderate"): Spec(F, _form(status="hidden")),
    ("POST", "/w/{code}/fa/{fa_id}/clusters"): Spec(
        STAFF, _form(title="New cluster", card_ids=lambda w: [str(w.card.id)])
    ),
    ("POST", "/w/{code}/clusters/{cluster_id}"): Spec(
        STAFF, _form(title="Renamed", synthesis="What we learned")
    ),
    ("POST", "/w/{code}/clusters/{cluster_id}/position"): Spec(STAFF, _form(offset="1")),
    ("POST", "/w/{code}/clusters/{cluster_id}/delete"): Spec(STAFF),
    ("POST", "/w/{code}/clusters/{cluster_id}/merge"): Spec(
        STAFF, _form(into=lambda w: str(w.cluster2.id))
    ),
    ("POST", "/w/{code}/cards/{card_id}/move"): Spec(
        STAFF, _form(cluster_id=lambda w: str(w.cluster2.id))
    ),
    ("POST", "/w/{code}/cards/{card_id}/merge"): Spec(STAFF, _form(into=lambda w: str(w.card2.id))),
    ("GET", "/w/{code}/fa/{fa_id}/suggestions"): Spec(STAFF),
    ("POST", "/w/{code}/fa/{fa_id}/suggestions/accept"): Spec(
        STAFF, _form(title=["Accepted"], cards=lambda w: [f"{w.card.id},{w.card2.id}"])
    ),
    # -- reports and exports -------------------------------------------------------
    ("GET", "/w/{code}/export/{fmt}"): Spec(STAFF),
    ("GET", "/api/v1/workshops/{code}/export"): Spec(STAFF, _query(format="md")),
    ("GET", "/w/{code}/report"): Spec(STAFF),
    ("GET", "/api/v1/workshops/{code}/results"): Spec(P | STAFF),
    # -- JSON API ------------------------------------------------------------------
    ("POST", "/api/v1/login"): Spec(ALL, _json(name="Owner", password=f.PASSWORD)),
    ("POST", "/api/v1/workshops"): Spec(ORGANIZERS, _json(title="API workshop")),
    ("GET", "/api/v1/workshops/{code}"): Spec(ALL),
    ("POST", "/api/v1/workshops/{code}/participants"): Spec(
        ALL, _json(display_name="Newcomer", affiliation="ODIHR")
    ),
    ("GET", "/api/v1/workshops/{code}/cards"): Spec(PF),
    ("POST", "/api/v1/workshops/{code}/cards"): Spec(
        PF, _json(focus_area_id=lambda w: w.fa_c.id, kind="tool", title="Mentoring")
    ),
    ("PATCH", "/api/v1/workshops/{code}/cards/{card_id}"): Spec(P, _json(title="Edited")),
    ("DELETE", "/api/v1/workshops/{code}/cards/{card_id}"): Spec(P),
    ("POST", "/api/v1/workshops/{code}/clusters"): Spec(
        STAFF,
        _json(focus_area_id=lambda w: w.fa_c.id, title="API", card_ids=lambda w: [w.card.id]),
    ),
    ("PATCH", "/api/v1/workshops/{code}/clusters/{cluster_id}"): Spec(
        STAFF, _json(title="Renamed")
    ),
    ("DELETE", "/api/v1/workshops/{code}/clusters/{cluster_id}"): Spec(STAFF),
    ("PUT", "/api/v1/workshops/{code}/cards/{card_id}/cluster"): Spec(
        STAFF, _json(cluster_id=lambda w: w.cluster2.id)
    ),
    ("POST", "/api/v1/workshops/{code}/cards/{card_id}/merge"): Spec(
        STAFF, _json(into=lambda w: w.card2.id)
    ),
    ("POST", "/api/v1/workshops/{code}/clusters/{cluster_id}/merge"): Spec(
        STAFF, _json(into=lambda w: w.cluster2.id)
    ),
    ("POST", "/api/v1/workshops/{code}/cards/{card_id}/votes"): Spec(P, params=VOTE),
    ("DELETE", "/api/v1/workshops/{code}/cards/{card_id}/votes"): Spec(P, params=VOTE),
    ("PUT", "/api/v1/workshops/{code}/cards/{card_id}/rating"): Spec(
        P, _json(impact=3, feasibility=4), params=VOTE
    ),
    ("PUT", "/api/v1/workshops/{code}/focus-areas/{fa_id}/phase"): Spec(
        STAFF, _json(phase="cluster")
    ),
    ("POST", "/api/v1/workshops/{code}/focus-areas/{fa_id}/reveal"): Spec(
        STAFF, params=ON_VOTING_AREA
    ),
    ("GET", "/api/v1/workshops/{code}/me"): Spec(PF),
    ("GET", "/api/v1/workshops/{code}/similar"): Spec(
        PF, _query(focus_area_id=lambda w: w.fa_c.id, text="joint investigation")
    ),
    ("GET", "/api/v1/workshops/{code}/focus-areas/{fa_id}/suggestions"): Spec(STAFF),
    # -- live updates --------------------------------------------------------------
    ("WS", "/ws/workshops/{code}"): Spec(PF | J),
}

# route -> (reason, condition): the table says what should happen; these
# cells do something else today. strict: the test fails once they are fixed.
KNOWN_BUGS: dict[tuple[str, str], tuple[str, bool]] = {}

SKIPPED_PREFIXES = ("/static", "/docs", "/openapi.json", "/redoc")


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app answers, "WS" for websockets. FastAPI
    0.16x keeps included routers as nodes of their own: walk into them."""

    def walk(routes: list[Any]) -> Iterator[Any]:
        for route in routes:
            nested = getattr(route, "original_router", None)
            if nested is not None:
                yield from walk(nested.routes)
            else:
                yield route

    found: set[tuple[str, str]] = set()
    for route in walk(list(app.routes)):
        path = getattr(route, "path", "")
        if path.startswith(SKIPPED_PREFIXES):
            continue
        if isinstance(route, APIWebSocketRoute):
            found.add(("WS", path))
        elif isinstance(route, APIRoute):
            found.update((m, path) for m in route.methods if m != "HEAD")
    return found


# -- fixtures: one database and one app for the module -----------------------------


@pytest.fixture(scope="module")
def walk_app(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    from app.main import create_app

    settings = make_settings(
        module_database_url,
        tmp_path_factory.mktemp("walk"),
        rate_logins_per_minute=10_000,
        rate_joins_per_ip_per_minute=10_000,
        rate_failed_joins_per_ip_per_minute=10_000,
        rate_exports_per_minute=10_000,
    )
    return create_app(settings)


@pytest.fixture(scope="module")
def walk_client(walk_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(walk_app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def db(walk_app: FastAPI) -> Iterator[Session]:
    with Session(walk_app.state.engine, expire_on_commit=False) as s:
        yield s


# -- calling a route as a role ---------------------------------------------------------


def _url(path: str, spec: Spec, w: World) -> str:
    values: dict[str, Any] = {
        "code": w.code,
        "fa_id": w.fa_c.id,
        "card_id": w.card.id,
        "cluster_id": w.cluster.id,
        "fmt": "md",
    }
    values.update({k: fn(w) for k, fn in spec.params.items()})
    return path.format(**values)


def outcome(method: str, path: str, status: int, location: str = "") -> str:
    """ok, deny, or the status code of any other answer (a rule said no)."""
    if status in (401, 403):
        return "deny"
    if 300 <= status < 400:
        target = urlsplit(location).path
        if target == "/login" or (target.startswith("/join/") and not path.startswith("/join")):
            return "deny"
        return "ok"
    if status < 300:
        return "ok"
    return str(status)


def call(client: TestClient, method: str, path: str, spec: Spec, w: World, role: str) -> Any:
    client.cookies.clear()
    url = _url(path, spec, w)
    if method == "WS":
        headers = {**w.headers(role), "Origin": "http://testserver"}
        try:
            with client.websocket_connect(url, headers=headers) as sock:
                sock.send_text('{"type": "hello", "seq": null}')
                frame = sock.receive_text()
                assert "hx-swap-oob" in frame
                leave(sock, client.app)
                return 200, ""
        except WebSocketDisconnect as exc:
            return (403 if exc.code in (4401, 4403) else exc.code), ""
    kwargs = spec.body(w) if spec.body else {}
    r = client.request(method, url, headers=w.headers(role), follow_redirects=False, **kwargs)
    return r.status_code, r.headers.get("location", "")


def _cases() -> list[Any]:
    cases = []
    for key in sorted(TABLE):
        marks = []
        if key in KNOWN_BUGS:
            reason, condition = KNOWN_BUGS[key]
            marks.append(pytest.mark.xfail(condition, reason=reason, strict=True))
        cases.append(pytest.param(key, id=f"{key[0]} {key[1]}", marks=marks))
    return cases


def test_every_route_has_an_entry_in_the_table(walk_app: FastAPI) -> None:
    routes = app_routes(walk_app)
    missing = sorted(routes - TABLE.keys())
    stale = sorted(TABLE.keys() - routes)
    assert not missing, f"routes without an access rule in TABLE: {missing}"
    assert not stale, f"TABLE entries for routes that no longer exist: {stale}"


@pytest.mark.parametrize("route", _cases())
def test_route_answers_each_role_as_the_table_says(
    route: tuple[str, str], walk_client: TestClient, db: Session
) -> None:
    method, path = route
    spec = TABLE[route]
    engine = db.get_bind()
    problems = []
    # Refusals share one workshop (they must not change it); every allowed call
    # gets a fresh one, since it may delete, rotate, merge or log out.
    shared = seed(db, SECRET)
    for role in ROLES:
        want = spec.expect.get(role, "ok" if role in spec.allowed else "deny")
        w = seed(db, SECRET) if want == "ok" else shared
        before = fingerprint(engine)
        status, location = call(walk_client, method, path, spec, w, role)
        got = outcome(method, path, status, location)
        if want == "refused-200":
            if status != 200 or fingerprint(engine) != before:
                problems.append(f"{role}: expected a refusal inside a 200, got {status}")
            continue
        if got != want:
            problems.append(f"{role}: expected {want}, got {status} {location}".strip())
            continue
        if want != "ok" and fingerprint(engine) != before:
            problems.append(f"{role}: refused ({status}) but the database changed")
        staff_action = "facilitator" in spec.allowed and "participant" not in spec.allowed
        if role == "participant" and staff_action and method != "WS" and status != 403:
            # A participant trying a facilitator action: a plain 403, not a redirect.
            problems.append(f"participant: expected 403 for a facilitator action, got {status}")
    assert not problems, "\n".join(problems)


def test_projector_key_in_the_query_opens_the_projector_only(
    walk_client: TestClient, db: Session
) -> None:
    w = seed(db, SECRET)
    walk_client.cookies.clear()
    r = walk_client.get(f"/w/{w.code}/projector", params={"key": w.keys["projector"]})
    assert r.status_code == 200
    assert r.cookies.get(f.cookie_names(w.uid)[1]) == w.keys["projector"]
    # The projector key is not a facilitator key, and a wrong key is refused.
    walk_client.cookies.clear()
    r = walk_client.get(
        f"/w/{w.code}/facilitate", params={"key": w.keys["projector"]}, follow_redirects=False
    )
    assert r.status_code == 403
    r = walk_client.get(f"/w/{w.code}/projector", params={"key": "0" * 40})
    assert r.status_code == 403
    with walk_client.websocket_connect(
        f"/ws/workshops/{w.code}?key={w.keys['projector']}",
        headers={"Origin": "http://testserver"},
    ) as sock:
        sock.send_text('{"type": "hello", "seq": null}')
        assert 'id="projector"' in sock.receive_text()
        leave(sock, walk_client.app)


def test_facilitator_key_makes_a_facilitator_and_nothing_else_does(
    walk_client: TestClient, db: Session
) -> None:
    w = seed(db, SECRET)
    walk_client.cookies.clear()
    r = walk_client.get(
        f"/w/{w.code}/facilitate", params={"key": w.keys["facilitator"]}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == f"/w/{w.code}/console"
    assert r.cookies.get(f.cookie_names(w.uid)[0])
    # A key of another workshop does not work here.
    other = seed(db, SECRET)
    walk_client.cookies.clear()
    r = walk_client.get(
        f"/w/{w.code}/facilitate", params={"key": other.keys["facilitator"]}, follow_redirects=False
    )
    assert r.status_code == 403
    # Nor does a participant token of another workshop.
    walk_client.cookies.clear()
    r = walk_client.get(
        f"/api/v1/workshops/{w.code}/cards", headers=f.bearer(other.tokens["participant"])
    )
    assert r.status_code == 401


def test_participant_cannot_touch_another_participants_card(
    walk_client: TestClient, db: Session
) -> None:
    w = seed(db, SECRET)
    other = f.bearer(w.tokens["author2"])  # did not write ``card``
    base = f"/api/v1/workshops/{w.code}/cards/{w.card.id}"
    before = fingerprint(db.get_bind())
    walk_client.cookies.clear()
    assert walk_client.patch(base, json={"title": "Mine now"}, headers=other).status_code == 403
    assert walk_client.delete(base, headers=other).status_code == 403
    r = walk_client.patch(base, json={"status": "hidden"}, headers=other)
    assert r.status_code == 403
    mine = [c for c in walk_client.get(base.rsplit("/", 1)[0], headers=other).json()]
    assert {c["id"]: c["mine"] for c in mine}[w.card.id] is False
    assert fingerprint(db.get_bind()) == before


def test_a_path_of_another_workshop_is_not_a_way_in(walk_client: TestClient, db: Session) -> None:
    """Ids from workshop B used under workshop A's code are refused (404)."""
    a, b = seed(db, SECRET), seed(db, SECRET)
    before = fingerprint(db.get_bind())
    walk_client.cookies.clear()
    fac = f.bearer(a.tokens["facilitator"])
    r = walk_client.put(
        f"/api/v1/workshops/{a.code}/cards/{b.card.id}/cluster",
        json={"cluster_id": a.cluster.id},
        headers=fac,
    )
    assert r.status_code == 404
    r = walk_client.patch(
        f"/api/v1/workshops/{a.code}/clusters/{b.cluster.id}", json={"title": "x"}, headers=fac
    )
    assert r.status_code in (404, 409)
    r = walk_client.put(
        f"/api/v1/workshops/{a.code}/focus-areas/{b.fa_c.id}/phase",
        json={"phase": "cluster"},
        headers=fac,
    )
    assert r.status_code == 404
    assert fingerprint(db.get_bind()) == before
