"""JSON API v1. The same domain functions as the pages; bearer tokens in
``Authorization`` (organizer tokens from /login, participant tokens from
joining); errors are ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, StrictBool
from sqlmodel import SQLModel

from app.domain import cards, clusters, organizers, participants, phases, votes, workshops
from app.domain.actors import ActorRole
from app.domain.errors import NotAllowed
from app.models import (
    CardCreate,
    CardPublic,
    CardUpdate,
    ClusterPublic,
    FocusAreaPublic,
    Input,
    JsonInt,
    ParticipantCreate,
    Phase,
    WorkshopCreate,
    WorkshopPublic,
)
from app.web.apidoc import ERRORS
from app.web.common import links
from app.web.deps import (
    MaybeParticipantDep,
    OrganizerDep,
    ParticipantDep,
    SessionDep,
    SettingsDep,
    StaffDep,
    WorkshopDep,
    commit,
    failed_access,
    viewer_of,
)

router = APIRouter(prefix="/api/v1", tags=["api"], responses=ERRORS)


class LoginIn(Input):
    name: str = Field(max_length=80)
    password: str = Field(max_length=1024)


class TokenOut(BaseModel):
    token: str


class WorkshopCreated(SQLModel):
    id: int
    # The workshop's identity, which no other workshop ever has (its cookies
    # and live channel carry it); ids are never given twice either.
    uid: str
    code: str
    title: str
    join_url: str
    facilitator_url: str
    projector_url: str
    focus_areas: list[FocusAreaPublic]


class Joined(BaseModel):
    participant_id: int
    token: str
    role: str


class ClusterIn(Input):
    focus_area_id: JsonInt
    title: str = Field(default="", max_length=140)
    card_ids: list[JsonInt] = Field(default_factory=list, max_length=500)


class ClusterPatch(Input):
    title: str | None = Field(default=None, max_length=140)
    synthesis: str | None = Field(default=None, max_length=4000)
    position: JsonInt | None = Field(default=None, ge=0, le=10_000)
    is_recommendation: StrictBool | None = None


class ClusterTarget(Input):
    cluster_id: JsonInt | None


class MergeIn(Input):
    into: JsonInt


class VoteOut(BaseModel):
    card_id: int
    my_dots: int
    dots_left: int


class RatingIn(Input):
    impact: JsonInt = Field(ge=1, le=5)
    feasibility: JsonInt = Field(ge=1, le=5)


class PhaseIn(Input):
    phase: Phase


def _staff_view(request: Request, session: Any, workshop: Any, actor: str, card: Any) -> CardPublic:
    settings = request.app.state.settings
    viewer = cards.Viewer(
        ActorRole(actor), sees_private=actor == "organizer" or settings.facilitator_sees_private
    )
    return cards.to_public(cards.view_of(session, workshop=workshop, viewer=viewer, card=card))


def _fa_public(fa: Any) -> FocusAreaPublic:
    return FocusAreaPublic.model_validate(fa, from_attributes=True)


@router.post("/login", response_model=TokenOut)
def login(request: Request, body: LoginIn, session: SessionDep) -> TokenOut:
    from app.web.organizer import check_login

    org = check_login(request, session, name=body.name, password=body.password)
    token = organizers.start_session(session, organizer=org, kind="bearer")
    session.commit()
    return TokenOut(token=token)


@router.post("/workshops", status_code=201, response_model=WorkshopCreated)
def create_workshop(
    request: Request,
    body: WorkshopCreate,
    session: SessionDep,
    organizer: OrganizerDep,
    settings: SettingsDep,
) -> WorkshopCreated:
    ws = workshops.create_workshop(session, data=body, organizer_id=organizer.id)
    commit(request, session)
    assert ws.id is not None
    return WorkshopCreated(
        id=ws.id,
        uid=ws.uid,
        code=ws.code,
        title=ws.title,
        focus_areas=[_fa_public(fa) for fa in workshops.focus_areas(session, ws.id)],
        **links(settings, ws),
    )


@router.get("/workshops/{code}", response_model=WorkshopPublic)
def get_workshop(workshop: WorkshopDep, session: SessionDep) -> WorkshopPublic:
    assert workshop.id is not None
    return WorkshopPublic(
        code=workshop.code,
        title=workshop.title,
        date=workshop.date,
        venue=workshop.venue,
        closed=workshop.closed,
        joins_locked=workshop.joins_locked,
        affiliations=workshop.affiliations,
        focus_areas=[_fa_public(fa) for fa in workshops.focus_areas(session, workshop.id)],
    )


@router.post("/workshops/{code}/participants", status_code=201, response_model=Joined)
def join(
    request: Request,
    body: ParticipantCreate,
    workshop: WorkshopDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Joined:
    ip = request.client.host if request.client else "?"
    request.app.state.limiter.hit(f"join:{ip}", limit=settings.rate_joins_per_ip_per_minute)
    try:
        p, token = participants.join(
            session, workshop=workshop, data=body, secret=settings.resolved_secret()
        )
    except NotAllowed:
        failed_access(request, workshop.code)  # a wrong facilitator key
        raise
    commit(request, session)
    assert p.id is not None
    return Joined(participant_id=p.id, token=token, role=p.role)


@router.get("/workshops/{code}/cards", response_model=list[CardPublic])
def list_cards(
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
    settings: SettingsDep,
    focus_area_id: int | None = None,
) -> list[CardPublic]:
    found = cards.visible_cards(
        session,
        workshop=workshop,
        viewer=viewer_of(participant, settings),
        focus_area_id=focus_area_id,
    )
    return [cards.to_public(c) for c in found]


@router.post("/workshops/{code}/cards", status_code=201, response_model=CardPublic)
def create_card(
    request: Request,
    response: Response,
    body: CardCreate,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
    settings: SettingsDep,
) -> CardPublic:
    request.app.state.limiter.hit(f"cards:{participant.id}", limit=settings.rate_cards_per_minute)
    card, created = cards.create_card(
        session, workshop=workshop, participant=participant, data=body
    )
    commit(request, session)
    if not created:
        response.status_code = 200
    actor = viewer_of(participant, settings)
    return cards.to_public(cards.view_of(session, workshop=workshop, viewer=actor, card=card))


@router.patch("/workshops/{code}/cards/{card_id}", response_model=CardPublic)
def update_card(
    request: Request,
    card_id: int,
    body: CardUpdate,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
    settings: SettingsDep,
) -> CardPublic:
    actor = viewer_of(participant, settings)
    card = cards.update_card(session, workshop=workshop, actor=actor, card_id=card_id, data=body)
    commit(request, session)
    return cards.to_public(cards.view_of(session, workshop=workshop, viewer=actor, card=card))


@router.delete("/workshops/{code}/cards/{card_id}", status_code=204)
def withdraw_card(
    request: Request,
    card_id: int,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    actor = viewer_of(participant, settings)
    cards.withdraw_card(session, workshop=workshop, actor=actor, card_id=card_id)
    commit(request, session)
    return Response(status_code=204)


@router.post("/workshops/{code}/clusters", status_code=201, response_model=ClusterPublic)
def create_cluster(
    request: Request, body: ClusterIn, workshop: WorkshopDep, session: SessionDep, actor: StaffDep
) -> ClusterPublic:
    fa = workshops.get_focus_area(session, workshop, body.focus_area_id)
    cl = clusters.create_cluster(
        session,
        workshop=workshop,
        focus_area=fa,
        title=body.title,
        actor=actor,
        card_ids=body.card_ids,
    )
    commit(request, session)
    return ClusterPublic.model_validate(cl, from_attributes=True)


@router.patch("/workshops/{code}/clusters/{cluster_id}", response_model=ClusterPublic)
def update_cluster(
    request: Request,
    cluster_id: int,
    body: ClusterPatch,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> ClusterPublic:
    cl = clusters.update_cluster(
        session,
        workshop=workshop,
        cluster_id=cluster_id,
        actor=actor,
        **body.model_dump(exclude_unset=True),
    )
    commit(request, session)
    return ClusterPublic.model_validate(cl, from_attributes=True)


@router.delete("/workshops/{code}/clusters/{cluster_id}", status_code=204)
def delete_cluster(
    request: Request, cluster_id: int, workshop: WorkshopDep, session: SessionDep, actor: StaffDep
) -> Response:
    clusters.delete_cluster(session, workshop=workshop, cluster_id=cluster_id, actor=actor)
    commit(request, session)
    return Response(status_code=204)


@router.put("/workshops/{code}/cards/{card_id}/cluster", response_model=CardPublic)
def move_card(
    request: Request,
    card_id: int,
    body: ClusterTarget,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> CardPublic:
    card = clusters.move_card(
        session, workshop=workshop, card_id=card_id, cluster_id=body.cluster_id, actor=actor
    )
    commit(request, session)
    return _staff_view(request, session, workshop, actor, card)


@router.post("/workshops/{code}/cards/{card_id}/merge", response_model=CardPublic)
def merge_card(
    request: Request,
    card_id: int,
    body: MergeIn,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> CardPublic:
    card = clusters.merge_cards(
        session, workshop=workshop, card_id=card_id, into=body.into, actor=actor
    )
    commit(request, session)
    return _staff_view(request, session, workshop, actor, card)


@router.post("/workshops/{code}/clusters/{cluster_id}/merge", response_model=ClusterPublic)
def merge_cluster(
    request: Request,
    cluster_id: int,
    body: MergeIn,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> ClusterPublic:
    cl = clusters.merge_clusters(
        session, workshop=workshop, cluster_id=cluster_id, into=body.into, actor=actor
    )
    commit(request, session)
    return ClusterPublic.model_validate(cl, from_attributes=True)


def _vote(
    request: Request, card_id: int, workshop: Any, participant: Any, session: Any, delta: int
) -> VoteOut:
    settings = request.app.state.settings
    request.app.state.limiter.hit(f"votes:{participant.id}", limit=settings.rate_votes_per_minute)
    result = votes.change_vote(
        session, workshop=workshop, participant=participant, card_id=card_id, delta=delta
    )
    commit(request, session)
    return VoteOut(card_id=result.card_id, my_dots=result.my_dots, dots_left=result.dots_left)


@router.post("/workshops/{code}/cards/{card_id}/votes", response_model=VoteOut)
def add_vote(
    request: Request,
    card_id: int,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
) -> VoteOut:
    return _vote(request, card_id, workshop, participant, session, +1)


@router.delete("/workshops/{code}/cards/{card_id}/votes", response_model=VoteOut)
def remove_vote(
    request: Request,
    card_id: int,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
) -> VoteOut:
    return _vote(request, card_id, workshop, participant, session, -1)


@router.put("/workshops/{code}/cards/{card_id}/rating", status_code=204)
def rate(
    request: Request,
    card_id: int,
    body: RatingIn,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
) -> Response:
    votes.rate(
        session,
        workshop=workshop,
        participant=participant,
        card_id=card_id,
        impact=body.impact,
        feasibility=body.feasibility,
    )
    commit(request, session)
    return Response(status_code=204)


@router.put("/workshops/{code}/focus-areas/{fa_id}/phase", response_model=FocusAreaPublic)
def set_phase(
    request: Request,
    fa_id: int,
    body: PhaseIn,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> FocusAreaPublic:
    fa = workshops.get_focus_area(session, workshop, fa_id)
    phases.set_phase(session, workshop=workshop, focus_area=fa, phase=body.phase, actor=actor)
    commit(request, session)
    return _fa_public(fa)


@router.post("/workshops/{code}/focus-areas/{fa_id}/reveal", response_model=FocusAreaPublic)
def reveal(
    request: Request, fa_id: int, workshop: WorkshopDep, session: SessionDep, actor: StaffDep
) -> FocusAreaPublic:
    fa = workshops.get_focus_area(session, workshop, fa_id)
    phases.reveal(session, workshop=workshop, focus_area=fa, actor=actor)
    commit(request, session)
    return _fa_public(fa)


@router.get("/workshops/{code}/me")
def me(participant: MaybeParticipantDep) -> dict[str, Any]:
    if participant is None:
        raise NotAllowed("Join first.")
    return {
        "participant_id": participant.id,
        "display_name": participant.display_name,
        "role": participant.role,
    }
