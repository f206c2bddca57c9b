"""CSRF and the browser-side headers: a state-changing request that rides on
cookies needs the page's token (form field or X-CSRF-Token header), or it is
refused with 403 and nothing changes; bearer-token API calls are exempt. Every
answer carries a strict CSP and the other hardening headers, and pages with
workshop content are never cached."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from tests import factories as f
from tests.conftest import SECRET

from .world import CSRF, World, csrf_from, fingerprint, seed


def _cookies_only(w: World, role: str) -> dict[str, str]:
    """The role's cookies (the CSRF cookie included) but no token header:
    what a forged cross-site form or fetch would carry."""
    return {"Cookie": w.headers(role)["Cookie"]}


FORGED = [
    # (role, method, path, request keyword arguments)
    ("organizer", "POST", "/organizer/workshops", {"data": {"title": "Forged"}}),
    ("organizer", "POST", "/organizer/w/{code}/rotate", {"data": {"what": "keys"}}),
    ("organizer", "POST", "/organizer/w/{code}/close", {"data": {"confirm_close": "yes"}}),
    ("organizer", "POST", "/logout", {}),
    ("participant", "POST", "/w/{code}/cards", {"data": {"kind": "tool", "title": "Forged"}}),
    ("participant", "POST", "/w/{code}/cards/{card}/withdraw", {}),
    ("participant", "POST", "/w/{code}/cards/{vcard}/votes", {}),
    ("facilitator", "PUT", "/w/{code}/fa/{fa}/phase", {"data": {"phase": "cluster"}}),
    ("facilitator", "POST", "/w/{code}/cards/{card}/moderate", {"data": {"status": "hidden"}}),
    # JSON endpoints accept the cookie too, so they need the token as well.
    ("participant", "POST", "/api/v1/workshops/{code}/cards", {"json": {"title": "Forged"}}),
    ("participant", "DELETE", "/api/v1/workshops/{code}/cards/{card}", {}),
    ("facilitator", "PUT", "/api/v1/workshops/{code}/focus-areas/{fa}/phase", {"json": {}}),
    # The classic trick: JSON sent as text/plain, which a cross-site form can do.
    (
        "participant",
        "POST",
        "/api/v1/workshops/{code}/cards",
        {
            "content": b'{"kind": "tool", "title": "Forged"}',
            "headers": {"content-type": "text/plain"},
        },
    ),
]


def _path(template: str, w: World) -> str:
    return template.format(
        code=w.code, card=w.card.id, vcard=w.vcard.id, fa=w.fa_c.id, cluster=w.cluster.id
    )


@pytest.mark.parametrize("token", ["missing", "wrong"])
def test_cookie_requests_without_the_token_are_refused_and_change_nothing(
    client: TestClient, session: Session, token: str
) -> None:
    w = seed(session, SECRET)
    problems = []
    for role, method, path, kwargs in FORGED:
        headers = _cookies_only(w, role) | kwargs.get("headers", {})
        sent = {k: v for k, v in kwargs.items() if k != "headers"}
        if token == "wrong":
            headers["X-CSRF-Token"] = "not-" + CSRF
            if "data" in sent:
                sent["data"] = {**sent["data"], "csrf_token": "not-" + CSRF}
        before = fingerprint(session.get_bind())
        client.cookies.clear()
        url = _path(path, w)
        r = client.request(method, url, headers=headers, follow_redirects=False, **sent)
        if r.status_code != 403:
            problems.append(f"{role} {method} {url}: {r.status_code}")
        elif fingerprint(session.get_bind()) != before:
            problems.append(f"{role} {method} {url}: refused, but the database changed")
    assert not problems, "\n".join(problems)


def test_htmx_posts_with_the_pages_token_go_through(client: TestClient, session: Session) -> None:
    """The other half of the proof: the same requests pass with the token the
    page gave (so the 403s above are CSRF, not something else)."""
    w = seed(session, SECRET)
    client.cookies.clear()
    for name, value in w.cookies("participant").items():
        if name != "lw_csrf":
            client.cookies.set(name, value)
    page = client.get(f"/w/{w.code}")
    token = csrf_from(page.text)
    r = client.post(
        f"/w/{w.code}/cards",
        data={"focus_area_id": str(w.fa_c.id), "kind": "tool", "title": "With token"},
        headers={"HX-Request": "true", "X-CSRF-Token": token},
    )
    assert r.status_code == 200
    r = client.post(f"/w/{w.code}/cards/{w.card.id}/withdraw", data={"csrf_token": token})
    assert r.status_code == 200


def test_bearer_api_calls_need_no_csrf_token(client: TestClient, session: Session) -> None:
    w = seed(session, SECRET)
    client.cookies.clear()
    r = client.post(
        f"/api/v1/workshops/{w.code}/cards",
        json={"focus_area_id": w.fa_c.id, "kind": "tool", "title": "By API"},
        headers=f.bearer(w.tokens["participant"]),
    )
    assert r.status_code == 201
    r = client.put(
        f"/api/v1/workshops/{w.code}/focus-areas/{w.fa_c.id}/phase",
        json={"phase": "cluster"},
        headers=f.bearer(w.tokens["facilitator"]),
    )
    assert r.status_code == 200


def _check_headers(r: Any, where: str) -> None:
    h = r.headers
    csp = h["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, where
    assert directives.get("frame-ancestors") == ["'none'"], where
    assert directives.get("script-src") == ["'self'"], where
    assert directives.get("object-src") == ["'none'"], where
    assert directives.get("base-uri") == ["'none'"], where
    assert h["referrer-policy"] == "no-referrer", where
    assert h["x-content-type-options"] == "nosniff", where
    assert h["x-frame-options"] == "DENY", where
    assert "camera=()" in h["permissions-policy"] and "microphone=()" in h["permissions-policy"]
    assert "strict-transport-security" not in h, where  # plain HTTP: meaningless there


def test_https_answers_tell_browsers_to_stay_on_https(client: TestClient) -> None:
    https = TestClient(client.app, base_url="https://testserver")
    assert https.get("/").headers["strict-transport-security"].startswith("max-age=")


def test_security_headers_on_every_kind_of_answer(client: TestClient, session: Session) -> None:
    w = seed(session, SECRET)
    cases = [
        ("anonymous", "GET", "/"),
        ("anonymous", "GET", "/login"),
        ("anonymous", "GET", f"/join/{w.code}"),
        ("anonymous", "GET", "/w/NOSUCHCODE"),  # an error page
        ("anonymous", "GET", "/static/app.css"),
        ("participant", "GET", f"/w/{w.code}"),
        ("facilitator", "GET", f"/w/{w.code}/console"),
        ("projector", "GET", f"/w/{w.code}/projector"),
        ("organizer", "GET", f"/organizer/w/{w.code}"),
        ("organizer", "GET", f"/w/{w.code}/report"),
        ("participant", "GET", f"/api/v1/workshops/{w.code}/cards"),
        ("participant", "POST", f"/api/v1/workshops/{w.code}/cards"),  # 4xx JSON
    ]
    for role, method, path in cases:
        client.cookies.clear()
        r = client.request(method, path, headers=w.headers(role), follow_redirects=False)
        _check_headers(r, f"{method} {path}")


def test_pages_with_workshop_content_are_never_cached(client: TestClient, session: Session) -> None:
    w = seed(session, SECRET)
    cases = [
        ("participant", f"/w/{w.code}"),
        ("participant", f"/w/{w.code}/mine/{w.fa_c.id}"),
        ("participant", f"/api/v1/workshops/{w.code}/cards"),
        ("participant", f"/api/v1/workshops/{w.code}/results"),
        ("facilitator", f"/w/{w.code}/console"),
        ("projector", f"/w/{w.code}/projector"),
        ("organizer", f"/organizer/w/{w.code}"),
        ("organizer", f"/w/{w.code}/report"),
        ("organizer", f"/w/{w.code}/export/md"),
        ("organizer", f"/api/v1/workshops/{w.code}/export?format=csv"),
    ]
    for role, path in cases:
        client.cookies.clear()
        r = client.get(path, headers=w.headers(role))
        assert r.status_code == 200, (path, r.status_code)
        assert "no-store" in r.headers.get("cache-control", ""), path
    # Fragments answer differently to htmx and to a page load: caches must know.
    client.cookies.clear()
    r = client.get(f"/w/{w.code}", headers=w.headers("participant"))
    assert "HX-Request" in r.headers.get("vary", "")


def test_websockets_from_another_origin_are_refused(client: TestClient, session: Session) -> None:
    from starlette.websockets import WebSocketDisconnect

    w = seed(session, SECRET)
    for origin in ("https://evil.example", "http://testserver.evil.example", "null"):
        client.cookies.clear()
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect(
                f"/ws/workshops/{w.code}", headers={**w.headers("participant"), "Origin": origin}
            ) as sock,
        ):
            sock.receive_text()
        assert refused.value.code == 4403, origin
