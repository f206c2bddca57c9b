"""Rows for export and results tests, built straight through the models, and
one rich sample workshop: distinctive participant names (which must never
leak), affiliation groups above and below the Chatham House minimum, merges,
moves, hostile card text and Cyrillic."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from app.config import Settings
from app.db import make_engine
from app.models import (
    Card,
    Cluster,
    Event,
    FocusArea,
    Participant,
    Rating,
    Vote,
    Workshop,
)

NAMES = [
    "Zebulon Quixworth",
    "Ottoline Vandermeer",
    "Prudence Haverstock",
    "Barnaby Fitzwilliam",
    "Cordelia Pemberton",
    "Ignatius Blackwood",
    "Фёдор Тестовиков",
    "Wilhelmina Stroud",
    "Lysander Okonkwo",
]
AFFILIATIONS = [
    "OSCE Secretariat",
    "OSCE Secretariat",
    "OSCE Secretariat",
    "Field operation: OSCE Mission to Serbia",
    "Field operation: OSCE Mission to Skopje",
    "Field operation: OSCE Programme Office in Dushanbe",
    "ODIHR",
    "ODIHR",
    "External partner: UNODC",
]
NASTY = [
    '=HYPERLINK("http://x","y")',
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "**bold**",
    "</w:t>",
    "Сотрудничество с полицией",
]
_counter = itertools.count(1)


def make_test_engine(tmp_path: Path) -> Iterator[Engine]:
    """PostgreSQL when TEST_DATABASE_URL is set (tables dropped and made
    afresh), a temporary SQLite file otherwise."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        engine = create_engine(url)
        SQLModel.metadata.drop_all(engine)
    else:
        settings = Settings(database_url=f"sqlite:///{tmp_path / 'test.db'}", data_dir=tmp_path)
        engine = make_engine(settings)
    SQLModel.metadata.create_all(engine)
    try:
        yield engine
    finally:
        if url:
            SQLModel.metadata.drop_all(engine)
        engine.dispose()


def workshop(session: Session, **kw: Any) -> Workshop:
    fields: dict[str, Any] = {
        "title": "Lessons learned: organized crime",
        "code": f"T{next(_counter):05d}",
        "date": date(2007, 10, 15),
        "end_date": date(2007, 10, 16),
        "venue": "Hofburg, Vienna",
        "hosted_by": "OSCE Secretariat, Strategic Police Matters Unit",
        "classification": "OSCE internal",
        "executive_summary": "Participants agreed that co-operation matters most.",
        "affiliations": sorted(set(AFFILIATIONS)),
    }
    fields.update(kw)
    ws = Workshop(**fields)
    session.add(ws)
    session.flush()
    return ws


def focus_area(session: Session, ws: Workshop, **kw: Any) -> FocusArea:
    fields: dict[str, Any] = {"title": "Focus area", "phase": "closed", "position": 0}
    fields.update(kw)
    fa = FocusArea(workshop_id=ws.id, **fields)
    session.add(fa)
    session.flush()
    return fa


def participant(session: Session, ws: Workshop, name: str, affiliation: str = "") -> Participant:
    token = hashlib.sha256(f"{name}-{next(_counter)}".encode()).hexdigest()
    p = Participant(workshop_id=ws.id, display_name=name, affiliation=affiliation, token_hash=token)
    session.add(p)
    session.flush()
    return p


def card(session: Session, fa: FocusArea, title: str, kind: str = "lesson", **kw: Any) -> Card:
    c = Card(workshop_id=fa.workshop_id, focus_area_id=fa.id, kind=kind, title=title, **kw)
    session.add(c)
    session.flush()
    return c


def cluster(session: Session, fa: FocusArea, title: str, **kw: Any) -> Cluster:
    cl = Cluster(workshop_id=fa.workshop_id, focus_area_id=fa.id, title=title, **kw)
    session.add(cl)
    session.flush()
    return cl


def vote(
    session: Session, p: Participant | None, c: Card, dots: int, affiliation: str = ""
) -> Vote:
    v = Vote(
        participant_id=p.id if p else None,
        card_id=c.id,
        focus_area_id=c.focus_area_id,
        affiliation=p.affiliation if p else affiliation,
        dots=dots,
    )
    session.add(v)
    return v


def rate(session: Session, p: Participant | None, c: Card, impact: int, feasibility: int) -> None:
    session.add(
        Rating(
            participant_id=p.id if p else None,
            card_id=c.id,
            focus_area_id=c.focus_area_id,
            impact=impact,
            feasibility=feasibility,
        )
    )


def event(session: Session, ws: Workshop, kind: str, **payload: Any) -> None:
    ws.last_seq += 1
    session.add(
        Event(
            workshop_id=ws.id,
            seq=ws.last_seq,
            kind=kind,
            actor_role="facilitator",
            payload=payload,
            created_at=datetime(2007, 10, 15, 14, 37, 21, tzinfo=UTC),
        )
    )


def sample_workshop(session: Session, *, participant_annex: bool = False) -> Workshop:
    """Two focus areas; the first fully clustered, voted and rated."""
    ws = workshop(session, participant_annex=participant_annex)
    people = [participant(session, ws, n, a) for n, a in zip(NAMES, AFFILIATIONS, strict=True)]
    participant(session, ws, "Facilitator Marchbanks", "OSCE Secretariat").role = "facilitator"
    fa1 = focus_area(
        session,
        ws,
        title="Cross-dimensional approach and human rights",
        prompt="What worked across dimensions?",
        position=0,
        ratings_enabled=True,
    )
    fa2 = focus_area(session, ws, title="Tools and methods that worked", position=1)
    for fa in (fa1, fa2):
        for phase in ("collect", "cluster", "vote", "synthesize", "closed"):
            event(session, ws, "focus_area.phase", focus_area_id=fa.id, phase=phase, previous="")

    ctx = {
        "dimensions": ["human", "politico-military"],
        "where": "OSCE Mission to Serbia",
        "partners": ["UNODC", "Europol"],
        "crime_areas": ["Trafficking in human beings"],
        "evidence": "Two joint operations",
        "human_rights": "Victim protection first",
    }
    joint = cluster(
        session, fa1, "Joint investigation teams", synthesis="Joint teams **work**.", position=0
    )
    train = cluster(session, fa1, "Training of prosecutors", synthesis="Train early.", position=1)
    old = cluster(session, fa1, "Old duplicate cluster", status="merged", merged_into_id=train.id)
    nasty = cluster(session, fa1, NASTY[0], synthesis=NASTY[1], position=2, is_recommendation=True)
    event(session, ws, "cluster.created", cluster_id=joint.id, focus_area_id=fa1.id)
    event(session, ws, "cluster.merged", cluster_id=old.id, into_cluster_id=train.id)

    c1 = card(
        session,
        fa1,
        "Joint teams with Europol",
        "method",
        context=ctx,
        cluster_id=joint.id,
        body="Worked in two cases.",
        author_id=people[0].id,
    )
    c2 = card(
        session, fa1, "Shared case files", "tool", cluster_id=joint.id, author_id=people[1].id
    )
    c3 = card(
        session,
        fa1,
        "Prosecutor curriculum",
        "lesson",
        cluster_id=train.id,
        context={"dimensions": ["human"], "partners": ["Council of Europe"]},
    )
    dup = card(
        session,
        fa1,
        "Curriculum duplicate",
        "lesson",
        status="merged",
        merged_into_id=c3.id,
        body="Same idea, other words.",
    )
    c4 = card(session, fa1, "Use mentoring", "recommendation", cluster_id=old.id)
    cards_nasty = [
        card(
            session,
            fa1,
            text[:140],
            "lesson",
            body=f"Body: {text}",
            cluster_id=nasty.id,
            context={"where": text, "evidence": text},
        )
        for text in NASTY
    ]
    card(session, fa1, "Hidden card", "tool", status="hidden", cluster_id=joint.id)
    card(session, fa1, "Withdrawn card", "tool", status="withdrawn")
    loose = card(
        session,
        fa1,
        "Unclustered idea",
        "recommendation",
        context={"dimensions": ["economic-environmental"], "partners": ["INTERPOL"]},
    )
    event(session, ws, "card.moved", card_id=c1.id, from_cluster_id=None, to_cluster_id=joint.id)
    event(
        session, ws, "card.moved", card_id=c3.id, from_cluster_id=joint.id, to_cluster_id=train.id
    )
    event(session, ws, "card.merged", card_id=dup.id, into_card_id=c3.id)

    # Secretariat (3 voters) and field operations (3 voters) are shown; ODIHR
    # (2) and the external partner (1) fold into "Other" (3 voters, shown).
    secretariat, field, odihr, external = people[0:3], people[3:6], people[6:8], people[8:9]
    for p in secretariat:
        vote(session, p, c1, 3)
        vote(session, p, c3, 1)
        vote(session, p, c4, 1)
        rate(session, p, c1, 5, 4)
    for p in field:
        vote(session, p, c1, 1)
        vote(session, p, c3, 2)
        vote(session, p, loose, 2)
        rate(session, p, c3, 3, 2)
    for p in odihr + external:
        vote(session, p, c2, 2)
        vote(session, p, cards_nasty[0], 2)
        vote(session, p, c3, 0)
        rate(session, p, cards_nasty[0], 2, 5)

    t1 = card(
        session,
        fa2,
        "Мониторинг границ",
        "tool",
        body="Пограничный контроль работает.",
        context={"dimensions": ["politico-military"], "crime_areas": ["Border security"]},
    )
    card(session, fa2, "Peer reviews", "method")
    for p in people[:4]:
        vote(session, p, t1, 1)
    session.commit()
    return ws
