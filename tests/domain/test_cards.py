"""Cards: writing rules, idempotent submit, and who sees what."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from app.domain import cards
from app.domain.errors import Invalid, NotAllowed, NotFound, PhaseClosed
from app.models import CardCreate, CardKind, CardUpdate, Participant
from tests import factories as f


def test_card_needs_collect_phase(session: Session) -> None:
    ws = f.workshop(session)
    p, _ = f.join(session, ws)
    fa = f.set_phase(session, ws, 0, "draft")
    with pytest.raises(PhaseClosed):
        f.card(session, ws, p, fa.id)


def test_kind_must_be_allowed_by_the_focus_area(session: Session) -> None:
    ws = f.workshop(session)
    p, _ = f.join(session, ws)
    fa3 = f.set_phase(session, ws, 2, "collect")  # lessons and recommendations only
    with pytest.raises(Invalid):
        f.card(session, ws, p, fa3.id, kind="tool")


def test_same_client_id_returns_the_first_card(session: Session) -> None:
    ws = f.workshop(session)
    p, _ = f.join(session, ws)
    fa = f.set_phase(session, ws, 0, "collect")
    data = CardCreate(focus_area_id=fa.id, kind=CardKind.tool, title="T", client_id="abc")
    first, created = cards.create_card(session, workshop=ws, participant=p, data=data)
    again, created_again = cards.create_card(session, workshop=ws, participant=p, data=data)
    assert created and not created_again and first.id == again.id


def test_private_writing_hides_text_from_others_until_cluster(session: Session) -> None:
    ws = f.workshop(session, private_writing=True)
    ana, _ = f.join(session, ws, "Ana")
    bo, _ = f.join(session, ws, "Bo")
    fac, _ = f.join(session, ws, "Fac", facilitator=True)
    fa = f.set_phase(session, ws, 0, "collect")
    card = f.card(session, ws, ana, fa.id)
    seen = lambda p: [  # noqa: E731
        c.id
        for c in cards.visible_cards(
            session, workshop=ws, viewer=cards.viewer_for(p, facilitator_sees_private=False)
        )
    ]
    assert seen(ana) == [card.id]
    assert seen(bo) == []
    assert seen(fac) == []
    assert cards.visible_cards(session, workshop=ws, viewer=cards.PROJECTOR) == []
    f.set_phase(session, ws, 0, "cluster")
    assert seen(bo) == [card.id]


def _actor(p: Participant) -> cards.Actor:
    return cards.viewer_for(p, facilitator_sees_private=True)


def test_only_author_edits_and_only_facilitator_hides(session: Session) -> None:
    ws = f.workshop(session, private_writing=False)
    ana, _ = f.join(session, ws, "Ana")
    bo, _ = f.join(session, ws, "Bo")
    fac, _ = f.join(session, ws, "Fac", facilitator=True)
    fa = f.set_phase(session, ws, 0, "collect")
    card = f.card(session, ws, ana, fa.id)
    with pytest.raises(NotAllowed):
        cards.update_card(
            session, workshop=ws, actor=_actor(bo), card_id=card.id, data=CardUpdate(title="x")
        )
    with pytest.raises(NotAllowed):
        cards.update_card(
            session,
            workshop=ws,
            actor=_actor(ana),
            card_id=card.id,
            data=CardUpdate(status="hidden"),
        )
    cards.update_card(
        session, workshop=ws, actor=_actor(fac), card_id=card.id, data=CardUpdate(status="hidden")
    )
    session.commit()
    board = cards.visible_cards(session, workshop=ws, viewer=cards.PROJECTOR)
    assert board == []
    # A hidden card is not there for another participant at all: not found.
    with pytest.raises(NotFound):
        cards.withdraw_card(session, workshop=ws, actor=_actor(bo), card_id=card.id)
    cards.withdraw_card(session, workshop=ws, actor=_actor(ana), card_id=card.id)
    assert cards.my_cards(session, participant=ana) == []


def test_public_form_never_carries_the_author(session: Session) -> None:
    ws = f.workshop(session, private_writing=False)
    ana, _ = f.join(session, ws, "Ana")
    fa = f.set_phase(session, ws, 0, "collect")
    card = f.card(session, ws, ana, fa.id)
    view = cards.gate(card, fa, ws, cards.PROJECTOR)
    assert view is not None
    public = cards.to_public(view).model_dump()
    assert not {"author_id", "participant_id", "display_name", "affiliation"} & public.keys()
