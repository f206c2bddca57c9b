"""The participant and organizer flow through the JSON API."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from tests import factories as f


def _setup(client: Any, session: Session) -> dict[str, Any]:
    f.organizer(session)
    r = client.post("/api/v1/login", json={"name": "Org", "password": f.PASSWORD})
    assert r.status_code == 200, r.text
    org = f.bearer(r.json()["token"])
    r = client.post(
        "/api/v1/workshops",
        json={"title": "OC lessons", "template": "osce-organized-crime-2007"},
        headers=org,
    )
    assert r.status_code == 201, r.text
    return {"org": org, "ws": r.json()}


def _join(client: Any, code: str, name: str, affiliation: str) -> dict[str, str]:
    r = client.post(
        f"/api/v1/workshops/{code}/participants",
        json={"display_name": name, "affiliation": affiliation},
    )
    assert r.status_code == 201, r.text
    return f.bearer(r.json()["token"])


def _facilitator(client: Any, ws: dict[str, Any]) -> dict[str, str]:
    key = ws["facilitator_url"].split("key=")[1]
    r = client.post(
        f"/api/v1/workshops/{ws['code']}/participants",
        json={"display_name": "Facilitator", "facilitator_key": key},
    )
    assert r.status_code == 201, r.text
    return f.bearer(r.json()["token"])


def test_create_join_write_edit_withdraw(client: Any, session: Session) -> None:
    ctx = _setup(client, session)
    ws, code = ctx["ws"], ctx["ws"]["code"]
    assert [fa["title"] for fa in ws["focus_areas"]][0].startswith("Cross-dimensional")
    assert len(code) == 8 and ws["join_url"].endswith(f"/join/{code}")
    fac = _facilitator(client, ws)
    fa1, fa2 = ws["focus_areas"][0]["id"], ws["focus_areas"][1]["id"]
    for fa in (fa1, fa2):
        r = client.put(
            f"/api/v1/workshops/{code}/focus-areas/{fa}/phase",
            json={"phase": "collect"},
            headers=fac,
        )
        assert r.status_code == 200, r.text
    ana = _join(client, code.lower(), "Ana Secretariat", "OSCE Secretariat")
    bo = _join(client, code, "Bo Odihr", "ODIHR")
    card = {
        "focus_area_id": fa1,
        "kind": "lesson",
        "title": "Involve prosecutors early",
        "body": "Joint training of police and prosecutors.",
        "context": {"dimensions": ["human"], "partners": ["UNODC"], "where": "Serbia"},
        "client_id": "c-1",
    }
    r = client.post(f"/api/v1/workshops/{code}/cards", json=card, headers=ana)
    assert r.status_code == 201, r.text
    created = r.json()
    assert "author_id" not in created and created["mine"] is True
    # The same client_id again returns the first card, not a second one.
    r = client.post(f"/api/v1/workshops/{code}/cards", json=card, headers=ana)
    assert r.status_code == 200 and r.json()["id"] == created["id"]
    # Private writing (template default): Bo does not see Ana's text yet.
    r = client.get(f"/api/v1/workshops/{code}/cards", headers=bo)
    assert r.json() == []
    client.put(
        f"/api/v1/workshops/{code}/focus-areas/{fa1}/phase", json={"phase": "cluster"}, headers=fac
    )
    r = client.get(f"/api/v1/workshops/{code}/cards", headers=bo)
    assert [c["title"] for c in r.json()] == ["Involve prosecutors early"]
    assert r.json()[0]["mine"] is False
    assert "Ana" not in r.text
    # Bo cannot edit Ana's card; Ana can edit hers only while collecting.
    url = f"/api/v1/workshops/{code}/cards/{created['id']}"
    assert client.patch(url, json={"title": "x"}, headers=bo).status_code == 403
    assert client.patch(url, json={"title": "x"}, headers=ana).status_code == 409
    r = client.post(
        f"/api/v1/workshops/{code}/cards",
        json={"focus_area_id": fa2, "kind": "tool", "title": "Asset declarations"},
        headers=bo,
    )
    assert r.status_code == 201
    bo_card = r.json()["id"]
    r = client.patch(
        f"/api/v1/workshops/{code}/cards/{bo_card}",
        json={"body": "In three field operations"},
        headers=bo,
    )
    assert r.status_code == 200 and r.json()["body"] == "In three field operations"
    assert client.delete(f"/api/v1/workshops/{code}/cards/{bo_card}", headers=bo).status_code == 204
    r = client.get(f"/api/v1/workshops/{code}/cards?focus_area_id={fa2}", headers=bo)
    assert r.json() == []


def test_bad_input_gets_clear_errors(client: Any, session: Session) -> None:
    ctx = _setup(client, session)
    ws, code = ctx["ws"], ctx["ws"]["code"]
    fac = _facilitator(client, ws)
    fa3 = ws["focus_areas"][2]  # lessons and recommendations only
    client.put(
        f"/api/v1/workshops/{code}/focus-areas/{fa3['id']}/phase",
        json={"phase": "collect"},
        headers=fac,
    )
    ana = _join(client, code, "Ana", "ODIHR")
    url = f"/api/v1/workshops/{code}/cards"
    base = {"focus_area_id": fa3["id"], "kind": "lesson", "title": "ok"}
    cases = [
        ({**base, "title": ""}, 422),
        ({**base, "title": "x" * 141}, 422),
        ({**base, "body": "x" * 4001}, 422),
        ({**base, "kind": "banana"}, 422),
        ({**base, "kind": "tool"}, 422),
        ({**base, "focus_area_id": 999999}, 404),
    ]
    for payload, status in cases:
        r = client.post(url, json=payload, headers=ana)
        assert r.status_code == status, (payload, r.text)
        assert r.json()["error"]["message"]
    r = client.post(url, content=b"{not json", headers={**ana, "content-type": "application/json"})
    assert r.status_code in (400, 422) and "error" in r.json()
    r = client.post(
        url, content=b'{"title": "\xff\xfe"}', headers={**ana, "content-type": "application/json"}
    )
    assert r.status_code in (400, 422)
    r = client.post(url, content=b"x" * 70_000, headers={**ana, "content-type": "application/json"})
    assert r.status_code == 413
    assert client.get("/api/v1/workshops/NOPE2345").status_code == 404
    r = client.get(url, headers=f.bearer("forged-token"))
    assert r.status_code == 401
    r = client.post(
        f"/api/v1/workshops/{code}/participants", json={"display_name": "X", "affiliation": "Nope"}
    )
    assert r.status_code == 422
    assert client.get(url, headers=ana).json() == []


def test_participant_cannot_drive_phases(client: Any, session: Session) -> None:
    ctx = _setup(client, session)
    ws, code = ctx["ws"], ctx["ws"]["code"]
    ana = _join(client, code, "Ana", "ODIHR")
    fa = ws["focus_areas"][0]["id"]
    r = client.put(
        f"/api/v1/workshops/{code}/focus-areas/{fa}/phase", json={"phase": "collect"}, headers=ana
    )
    assert r.status_code == 403
    r = client.get(f"/api/v1/workshops/{code}")
    assert r.json()["focus_areas"][0]["phase"] == "draft"


def test_answers_follow_the_documented_contract(client: Any, session: Session) -> None:
    """What the schema says is what the server does: JSON types are taken as
    JSON Schema defines them, blank text is refused with a readable message,
    a state that forbids an action answers 409, a missing object 404, and a
    405 lists every method of the path."""
    ctx = _setup(client, session)
    ws, code = ctx["ws"], ctx["ws"]["code"]
    fac = _facilitator(client, ws)
    fa = ws["focus_areas"][0]["id"]
    api = f"/api/v1/workshops/{code}"
    client.put(f"{api}/focus-areas/{fa}/phase", json={"phase": "collect"}, headers=fac)
    ana = _join(client, code, "Ana", "ODIHR")
    card = {"focus_area_id": fa, "kind": "lesson", "title": "Joint teams"}
    r = client.post(f"{api}/cards", json={**card, "focus_area_id": True}, headers=ana)
    assert r.status_code == 422, r.text
    r = client.post(f"{api}/cards", json={**card, "focus_area_id": str(fa)}, headers=ana)
    assert r.status_code == 422, r.text
    r = client.post(f"{api}/cards", json={**card, "title": "   "}, headers=ana)
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "Title: please write more than spaces"
    r = client.post(
        f"{api}/cards", json={**card, "context": {"dimensions": ["maritime"]}}, headers=ana
    )
    assert (
        r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "context.dimensions.0"
    )
    r = client.post(f"{api}/cards", json={**card, "focus_area_id": float(fa)}, headers=ana)
    assert r.status_code == 201, r.text
    card_id = r.json()["id"]

    r = client.put(f"{api}/focus-areas/{fa}/phase", json={"phase": "voting"}, headers=fac)
    assert r.status_code == 422 and "phase" in r.text
    client.put(f"{api}/focus-areas/{fa}/phase", json={"phase": "vote"}, headers=fac)
    assert client.post(f"{api}/cards/999999/votes", headers=ana).status_code == 404
    r = client.patch(f"{api}/cards/{card_id}", json={"status": "hidden"}, headers=fac)
    assert r.status_code == 200, r.text
    r = client.post(f"{api}/cards/{card_id}/votes", headers=ana)
    assert r.status_code == 409 and r.json()["error"]["field"] == "card_id"
    r = client.patch(f"{api}/cards/{card_id}", json={"status": "withdrawn"}, headers=fac)
    assert r.status_code == 422  # moderation hides or restores; withdrawing is the author's

    r = client.post(f"{api}/clusters", json={"focus_area_id": fa, "title": "A"}, headers=fac)
    cluster = r.json()["id"]
    r = client.post(f"{api}/clusters/{cluster}/merge", json={"into": cluster}, headers=fac)
    assert r.status_code == 409
    # A cluster gone (merged or deleted by another facilitator) is a stale board: 409.
    r = client.post(f"{api}/clusters/{cluster}/merge", json={"into": 999999}, headers=fac)
    assert r.status_code == 409 and "does not exist any more" in r.json()["error"]["message"]
    r = client.patch(f"{api}/clusters/{cluster}", json={"is_recommendation": 1}, headers=fac)
    assert r.status_code == 422

    org = ctx["org"]
    for bad in ({"template": "no-such-template"}, {"focus_areas": []}, {"date": 0}):
        r = client.post("/api/v1/workshops", json={"title": "T", **bad}, headers=org)
        assert r.status_code == 422, (bad, r.text)
    r = client.post(
        "/api/v1/workshops", json={"title": "T", "settings": {"blind_voting": 0}}, headers=org
    )
    assert r.status_code == 422

    r = client.request("OPTIONS", f"{api}/cards/{card_id}", headers=ana)
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) == {"PATCH", "DELETE"}
    r = client.put(f"{api}/cards", headers=ana)
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "POST"}
