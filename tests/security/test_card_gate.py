"""One gate for card content: every card operation authorises first, and a
card the caller may not see answers 404 exactly like a missing one.

The attack these pin (found black-box on main): ``PATCH .../cards/{id}`` with
``{}`` from another participant answered 200 with the full text of an
unrevealed private card, a withdrawn card or a hidden card, and bumped its
version; card ids are sequential, so a loop read the whole workshop."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session

from app.domain import cards as cards_domain
from app.models import Card, CardStatus, Participant
from tests import factories as f
from tests.conftest import SECRET

SECRET_TEXT = "ZQXsecretQXZ"


def _world(session: Session, *, private: bool = True) -> dict[str, Any]:
    ws = f.workshop(session, private_writing=private)
    assert ws.id is not None
    fa = f.set_phase(session, ws, 0, "collect")
    author, author_token = f.join(session, ws, "Ana", "ODIHR")
    other, other_token = f.join(session, ws, "Bo", "ODIHR")
    fac, fac_token = f.join(session, ws, "Fa", facilitator=True, secret=SECRET)
    card = f.card(
        session,
        ws,
        author,
        fa.id,
        title=f"title {SECRET_TEXT}",
        body=f"body {SECRET_TEXT}",
        context={"where": f"where {SECRET_TEXT}"},
    )
    return {
        "ws": ws,
        "fa": fa,
        "card": card,
        "author": f.bearer(author_token),
        "other": f.bearer(other_token),
        "fac": f.bearer(fac_token),
    }


def _url(w: dict[str, Any], card_id: int | None = None) -> str:
    return f"/api/v1/workshops/{w['ws'].code}/cards/{card_id or w['card'].id}"


def _stored(session: Session, card_id: int) -> Card:
    # A session of its own, closed at once: on SQLite an open transaction
    # here would hold the write lock the app needs next.
    with Session(session.get_bind(), expire_on_commit=False) as fresh:
        card = fresh.get(Card, card_id)
        assert card is not None
        return card


def _not_found_like_missing(client: Any, w: dict[str, Any], method: str, path: str) -> None:
    """The answer for a card the caller may not see is the answer for a card
    that does not exist: same status, same body, and no text of the card."""
    kwargs: dict[str, Any] = {"headers": w["other"]}
    if method in ("PATCH", "PUT", "POST"):
        kwargs["json"] = {} if method == "PATCH" else {"impact": 3, "feasibility": 3}
    seen = client.request(method, _url(w) + path, **kwargs)
    missing = client.request(method, _url(w, 10**9) + path, **kwargs)
    assert SECRET_TEXT not in seen.text
    assert seen.status_code == 404, seen.text
    assert (seen.status_code, seen.json()) == (missing.status_code, missing.json())


@pytest.mark.parametrize("state", ["private", "withdrawn", "hidden"])
def test_empty_patch_of_unseen_card_answers_404_and_changes_nothing(
    client: Any, session: Session, state: str
) -> None:
    w = _world(session, private=state == "private")
    if state == "withdrawn":
        assert client.delete(_url(w), headers=w["author"]).status_code == 204
    if state == "hidden":
        r = client.patch(_url(w), json={"status": "hidden"}, headers=w["fac"])
        assert r.status_code == 200, r.text
    before = _stored(session, w["card"].id)
    version, updated = before.version, before.updated_at
    _not_found_like_missing(client, w, "PATCH", "")
    after = _stored(session, w["card"].id)
    assert (after.version, after.updated_at) == (version, updated)


@pytest.mark.parametrize(
    ("method", "path"),
    [("PATCH", ""), ("DELETE", ""), ("POST", "/votes"), ("DELETE", "/votes"), ("PUT", "/rating")],
)
def test_every_operation_on_unrevealed_card_is_404(
    client: Any, session: Session, method: str, path: str
) -> None:
    w = _world(session, private=True)
    _not_found_like_missing(client, w, method, path)


def test_sequential_ids_read_nothing_unrevealed(client: Any, session: Session) -> None:
    """The loop an attacker ran: every id from 1 up, with every verb."""
    w = _world(session, private=True)
    for card_id in range(1, w["card"].id + 3):
        for method in ("PATCH", "DELETE"):
            r = client.request(
                method,
                _url(w, card_id),
                headers=w["other"],
                **({"json": {}} if method == "PATCH" else {}),
            )
            assert SECRET_TEXT not in r.text
    listed = client.get(f"/api/v1/workshops/{w['ws'].code}/cards", headers=w["other"])
    assert listed.status_code == 200 and SECRET_TEXT not in listed.text


def test_empty_patch_of_own_card_keeps_its_version(client: Any, session: Session) -> None:
    w = _world(session)
    before = _stored(session, w["card"].id)
    r = client.patch(_url(w), json={}, headers=w["author"])
    assert r.status_code == 200, r.text
    assert r.json()["version"] == before.version and r.json()["mine"] is True
    after = _stored(session, w["card"].id)
    assert (after.version, after.updated_at) == (before.version, before.updated_at)


def test_visible_card_of_another_is_refused_403_without_change(
    client: Any, session: Session
) -> None:
    """A card the caller may see but not edit: the refusal is 403, and even
    an empty change is refused (authorise first)."""
    w = _world(session, private=False)
    for body in ({}, {"title": "mine now"}):
        r = client.patch(_url(w), json=body, headers=w["other"])
        assert r.status_code == 403, r.text
    assert _stored(session, w["card"].id).version == 1


def test_facilitator_moderation_does_not_need_authorship(client: Any, session: Session) -> None:
    w = _world(session, private=False)
    r = client.patch(_url(w), json={"status": "hidden"}, headers=w["fac"])
    assert r.status_code == 200 and r.json()["status"] == "hidden"
    assert _stored(session, w["card"].id).status == CardStatus.hidden
    # The author still sees it; another participant no longer does.
    assert client.patch(_url(w), json={}, headers=w["author"]).status_code == 200
    assert client.patch(_url(w), json={}, headers=w["other"]).status_code == 404


def test_gate_is_the_only_way_to_card_content(session: Session) -> None:
    """The domain's gated view carries no author and is None for a viewer who
    may not see the card; the public model is built from the view only."""
    w = _world(session, private=True)
    fa, ws, card = w["fa"], w["ws"], _stored(session, w["card"].id)
    board = cards_domain.Actor.participant(participant_id=10**6)
    assert cards_domain.gate(card, fa, ws, board) is None
    author = cards_domain.Actor.participant(participant_id=card.author_id)
    view = cards_domain.gate(card, fa, ws, author)
    assert view is not None and view.mine and not hasattr(view, "author_id")
    assert "author" not in cards_domain.to_public(view).model_dump()


def test_merged_then_withdrawn_card_leaves_every_push(client: Any, session: Session) -> None:
    """Found by the adversary: a card merged into another and then withdrawn
    by its author still showed its text in the survivor's "merged from" note,
    in every board and console push."""
    from app.render import render_push

    w = _world(session, private=False)
    ws, fa = w["ws"], w["fa"]
    survivor = f.card(
        session,
        ws,
        session.get(Participant, _stored(session, w["card"].id).author_id),
        fa.id,
        title="survivor",
    )
    r = client.post(
        f"/api/v1/workshops/{ws.code}/cards/{w['card'].id}/merge",
        json={"into": survivor.id},
        headers=w["fac"],
    )
    assert r.status_code == 200, r.text
    session.expire_all()
    frames = render_push(session, ws, fa_ids=None, facilitator_sees_private=True, join_url="x")
    assert any(SECRET_TEXT in html for html in frames.values())  # shown while merged
    session.commit()
    assert client.delete(_url(w), headers=w["author"]).status_code == 204
    session.expire_all()
    frames = render_push(session, ws, fa_ids=None, facilitator_sees_private=True, join_url="x")
    session.commit()
    assert not any(SECRET_TEXT in html for html in frames.values())
