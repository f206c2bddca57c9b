"""A scripted workshop of 60 participants in three focus areas through
collect, cluster, vote (concurrently), reveal and synthesize, via the API;
the results equal the database and the boards show the same totals."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from app.models import Vote
from tests import factories as f

AFFILIATIONS = [
    "OSCE Secretariat",
    "ODIHR",
    "Field operation: OSCE Mission to Serbia",
    "External partner: UNODC",
]


def _phase(client: TestClient, code: str, fa: int, phase: str, fac: dict[str, str]) -> None:
    r = client.put(
        f"/api/v1/workshops/{code}/focus-areas/{fa}/phase", json={"phase": phase}, headers=fac
    )
    assert r.status_code == 200, r.text


def test_sixty_participants_cluster_vote_reveal(client: TestClient, session: Session) -> None:
    f.organizer(session)
    org = f.bearer(
        client.post("/api/v1/login", json={"name": "Org", "password": f.PASSWORD}).json()["token"]
    )
    ws = client.post(
        "/api/v1/workshops",
        json={
            "title": "Run",
            "template": "osce-organized-crime-2007",
            "settings": {"private_writing": False, "vote_budget": 5, "vote_cap": 3},
        },
        headers=org,
    ).json()
    code = ws["code"]
    fas = [fa["id"] for fa in ws["focus_areas"]]
    key = ws["facilitator_url"].split("key=")[1]
    fac = f.bearer(
        client.post(
            f"/api/v1/workshops/{code}/participants",
            json={"display_name": "Fac", "facilitator_key": key},
        ).json()["token"]
    )
    people = []
    for i in range(60):
        r = client.post(
            f"/api/v1/workshops/{code}/participants",
            json={"display_name": f"Person {i}", "affiliation": AFFILIATIONS[i % 4]},
        )
        assert r.status_code == 201, r.text
        people.append(f.bearer(r.json()["token"]))
    kinds = ["lesson", "lesson"]
    for fa in fas:
        _phase(client, code, fa, "collect", fac)
    card_ids: dict[int, list[int]] = {fa: [] for fa in fas}
    for i, who in enumerate(people[:24]):
        fa = fas[i % 3]
        r = client.post(
            f"/api/v1/workshops/{code}/cards",
            json={"focus_area_id": fa, "kind": kinds[i % 2], "title": f"Finding {i}"},
            headers=who,
        )
        assert r.status_code == 201, r.text
        card_ids[fa].append(r.json()["id"])
    # Cluster: two clusters per focus area, a merge of duplicates.
    for fa in fas:
        _phase(client, code, fa, "cluster", fac)
        ids = card_ids[fa]
        for half in (ids[:4], ids[4:]):
            r = client.post(
                f"/api/v1/workshops/{code}/clusters",
                json={"focus_area_id": fa, "title": f"Theme {half[0]}", "card_ids": half},
                headers=fac,
            )
            assert r.status_code == 201, r.text
        r = client.post(
            f"/api/v1/workshops/{code}/cards/{ids[1]}/merge", json={"into": ids[0]}, headers=fac
        )
        assert r.status_code == 200, r.text
        _phase(client, code, fa, "vote", fac)

    # Everyone votes concurrently, more than the budget allows.
    def vote(i: int) -> int:
        fa = fas[i % 3]
        target = card_ids[fa][(i // 3) % len(card_ids[fa])]
        if target == card_ids[fa][1]:
            target = card_ids[fa][0]
        r = client.post(f"/api/v1/workshops/{code}/cards/{target}/votes", headers=people[i % 60])
        return r.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(vote, range(600)))
    assert set(statuses) <= {200, 409}
    with Session(client.app.state.engine) as s:  # type: ignore[attr-defined]
        per_person = s.exec(
            select(Vote.participant_id, Vote.focus_area_id, func.sum(Vote.dots)).group_by(
                Vote.participant_id, Vote.focus_area_id
            )
        ).all()
        assert per_person and all(total <= 5 for _, _, total in per_person)
        stored = s.exec(select(func.sum(Vote.dots))).one()
    assert stored == statuses.count(200)
    # Blind: results hide totals from participants until the reveal.
    r = client.get(f"/api/v1/workshops/{code}/results", headers=people[0])
    assert all(c["dots"] is None for fa in r.json()["focus_areas"] for c in fa["clusters"])
    for fa in fas:
        r = client.post(f"/api/v1/workshops/{code}/focus-areas/{fa}/reveal", headers=fac)
        assert r.status_code == 200
        _phase(client, code, fa, "synthesize", fac)
    res = client.get(f"/api/v1/workshops/{code}/results", headers=fac).json()
    total = sum(c["dots"] for fa in res["focus_areas"] for c in fa["clusters"])
    total += sum(c["dots"] or 0 for fa in res["focus_areas"] for c in fa["unclustered"])
    assert total == stored
    first = res["focus_areas"][0]["clusters"]
    assert [c["dots"] for c in first] == sorted((c["dots"] for c in first), reverse=True)
    assert "Person" not in str(res)
    # The board shows the same ranked totals.
    client.cookies.clear()
    page = client.get(f"/w/{code}", headers=people[5]).text
    shown = [int(x) for x in re.findall(r'class="r-dots small">(\d+) dots', page)]
    expected = [c["dots"] for fa in res["focus_areas"] for c in fa["clusters"]]
    assert shown == expected


def test_results_api_needs_a_participant(client: TestClient, session: Session) -> None:
    ws = f.workshop(session)
    r = client.get(f"/api/v1/workshops/{ws.code}/results")
    assert r.status_code in (401, 403)
