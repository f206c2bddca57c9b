"""A seeded workshop with one of everything, made through the domain functions,
and the credentials each role holds: the organizer who owns it, another
organizer, a participant (author of ``card``), a second participant (author of
``vcard``), the facilitator (joined with the facilitator key) and the projector
(its key). Also small helpers shared by the security tests."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from app.domain import access, cards, clusters, organizers, participants, phases, votes, workshops
from app.models import (
    Card,
    CardCreate,
    CardKind,
    Cluster,
    FocusArea,
    Organizer,
    Participant,
    ParticipantCreate,
    Workshop,
    WorkshopCreate,
)
from tests import factories as f

CSRF = "csrf-token-for-tests-0123456789"
ROLES = ("anonymous", "participant", "facilitator", "projector", "organizer", "other_organizer")


@dataclass
class World:
    ws: Workshop
    fa_c: FocusArea  # collecting
    fa_v: FocusArea  # voting, ratings on
    card: Card  # by the participant, in fa_c, loose
    card2: Card  # by the participant, in fa_c, loose
    card3: Card  # by author2, in fa_c, in ``cluster``
    vcard: Card  # by author2, in fa_v; the participant has one dot on it
    cluster: Cluster
    cluster2: Cluster
    tokens: dict[str, str] = field(default_factory=dict)  # role -> credential
    keys: dict[str, str] = field(default_factory=dict)  # facilitator / projector key
    participant_id: int = 0
    # Plain copies, usable after the rows are gone or the session closed.
    code: str = ""
    wid: int = 0
    uid: str = ""
    card_ids: list[int] = field(default_factory=list)

    def cookies(self, role: str) -> dict[str, str]:
        """The cookies a browser holding ``role`` sends (plus the CSRF cookie)."""
        jar = {"lw_csrf": CSRF}
        participant, projector = f.cookie_names(self.uid)
        if role in ("participant", "facilitator", "author2"):
            jar[participant] = self.tokens[role]
        elif role == "projector":
            jar[projector] = self.keys["projector"]
        elif role in ("organizer", "other_organizer"):
            jar["lw_session"] = self.tokens[role]
        return jar

    def headers(self, role: str, **extra: str) -> dict[str, str]:
        """Cookie and CSRF headers for ``role``: the request is authorised
        only by who the caller is, never refused for a missing CSRF token."""
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies(role).items())
        return {"Cookie": cookie, "X-CSRF-Token": CSRF, **extra}


def organizer_accounts(session: Session) -> tuple[Organizer, Organizer]:
    """The owner and another organizer (Argon2 hashing is slow: make them once)."""
    owner = session.exec(select(Organizer).where(Organizer.name == "Owner")).first()
    if owner is None:
        owner = f.organizer(session, "Owner")
        other = f.organizer(session, "Other")
    else:
        other = session.exec(select(Organizer).where(Organizer.name == "Other")).one()
    return owner, other


def seed(session: Session, secret: str, *, private_writing: bool = False) -> World:
    """One transaction (SQLite fsyncs every commit, and the route walk seeds
    hundreds of these)."""
    owner, other = organizer_accounts(session)
    ws = workshops.create_workshop(
        session,
        data=WorkshopCreate(
            title="Lessons learned on organized crime", template="osce-organized-crime-2007"
        ),
        organizer_id=owner.id,
    )
    ws.private_writing = private_writing
    assert ws.id is not None
    fa_c, fa_v = workshops.focus_areas(session, ws.id)[:2]
    fa_v.ratings_enabled = True

    def join(name: str, key: str | None = None) -> tuple[Participant, str]:
        data = ParticipantCreate(display_name=name, affiliation="ODIHR", facilitator_key=key)
        return participants.join(session, workshop=ws, data=data, secret=secret)

    def card(author: Participant, fa: FocusArea, title: str, kind: str = "tool") -> Card:
        data = CardCreate(focus_area_id=fa.id or 0, kind=CardKind(kind), title=title)
        return cards.create_card(session, workshop=ws, participant=author, data=data)[0]

    fkey = access.derive_key(secret, uid=ws.uid, role="facilitator", rotation=0)
    participant, p_token = join("Pat Walker")
    author2, a_token = join("Alex Second")
    _, f_token = join("Facilitator", fkey)
    for fa in (fa_c, fa_v):
        phases.set_phase(session, workshop=ws, focus_area=fa, phase="collect", actor="organizer")
    c1 = card(participant, fa_c, "Joint investigation teams")
    c2 = card(participant, fa_c, "Asset declarations", "method")
    c3 = card(author2, fa_c, "Witness protection", "lesson")
    vcard = card(author2, fa_v, "Border liaison offices")
    make = clusters.create_cluster
    cl = make(session, workshop=ws, focus_area=fa_c, title="Justice", actor="organizer")
    cl2 = make(session, workshop=ws, focus_area=fa_c, title="Integrity", actor="organizer")
    clusters.move_card(
        session, workshop=ws, card_id=c3.id or 0, cluster_id=cl.id, actor="organizer"
    )
    phases.set_phase(session, workshop=ws, focus_area=fa_v, phase="vote", actor="organizer")
    votes.change_vote(session, workshop=ws, participant=participant, card_id=vcard.id, delta=1)
    world = World(ws, fa_c, fa_v, c1, c2, c3, vcard, cl, cl2)
    world.participant_id = participant.id or 0
    world.code, world.wid, world.uid = ws.code, ws.id, ws.uid
    world.card_ids = [c.id or 0 for c in (c1, c2, c3, vcard)]
    world.tokens.update(
        participant=p_token,
        author2=a_token,
        facilitator=f_token,
        organizer=organizers.start_session(session, organizer=owner),
        other_organizer=organizers.start_session(session, organizer=other),
    )
    session.commit()
    world.keys["facilitator"] = fkey
    world.keys["projector"] = access.derive_key(secret, uid=ws.uid, role="projector", rotation=0)
    return world


def fingerprint(engine: Engine) -> dict[str, Any]:
    """Row counts of every table and every workshop's ``last_seq``: a refused
    request must leave all of it as it was. Read in a session of its own,
    closed at once (an open SQLite transaction would block the app)."""
    with Session(engine) as session:
        counts = {
            t.name: session.execute(sa_select(func.count()).select_from(t)).scalar_one()
            for t in SQLModel.metadata.sorted_tables
        }
        seqs = {i: s for i, s in session.execute(sa_select(Workshop.id, Workshop.last_seq))}
    return {"rows": counts, "last_seq": seqs}


def csrf_from(html: str) -> str:
    m = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert m, "page has no CSRF token"
    return m.group(1)


def leave(sock: Any, app: Any) -> None:
    """Close a TestClient websocket and wait until the hub has let it go.

    Leaving the ``with`` block at once makes the TestClient cancel the app
    while the hub is still cleaning up, and that cancellation escapes as a
    CancelledError from ``__exit__`` (tests/web/test_pages.py's websocket test
    fails that way at times). Saying goodbye first and waiting avoids the race."""
    hub = app.state.realtime.hub

    def open_sockets() -> int:
        return sum(hub.stats()["sockets"].values())

    before = open_sockets()
    sock.send({"type": "websocket.disconnect", "code": 1000})
    deadline = time.monotonic() + 5
    while open_sockets() >= before and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
