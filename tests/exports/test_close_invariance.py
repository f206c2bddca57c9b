"""The outcome is invariant under close: anonymize-on-close erases who did
what and keeps every number of the outcome document.

The attack this pins (a facilitator's walkthrough on main): after closing,
"13 dots from 4 voters" became "from 5 voters", "5 participants voted"
became 4, every affiliation share became "Other 100%", and the board read
"0 voted, 25 dots spent". The document people take home is the one after
close, so it was wrong."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlmodel import Session, select

from app.domain import clusters, phases, votes, workshops
from app.domain.results import workshop_results
from app.exports import FORMATS, export_workshop
from app.models import Participant, Vote, Workshop
from tests import factories as f
from tests.exports import readers

NUMBER = re.compile(r"\d+(?:[.,]\d+)?%?")
GROUPS = [
    ("ODIHR", 3),
    ("OSCE Secretariat", 3),
    ("Field operation: OSCE Mission to Skopje", 3),
    ("Field operation: OSCE Mission to Serbia", 1),
]


def _voted_workshop(session: Session) -> Workshop:
    ws = f.workshop(session, private_writing=False, anonymize_on_close=True)
    assert ws.id is not None
    fa = f.set_phase(session, ws, 0, "collect")
    people = [f.join(session, ws, f"{aff} {i}", aff)[0] for aff, n in GROUPS for i in range(n)]
    cards = [
        f.card(session, ws, people[i], fa.id, title=t)
        for i, t in enumerate(["Joint teams", "Shared registry", "Training", "Hotline"])
    ]
    f.set_phase(session, ws, 0, "cluster")
    a = clusters.create_cluster(
        session,
        workshop=ws,
        focus_area=fa,
        title="Co-operation",
        actor="facilitator",
        card_ids=[cards[0].id, cards[1].id],
    )
    clusters.create_cluster(
        session,
        workshop=ws,
        focus_area=fa,
        title="Capacity",
        actor="facilitator",
        card_ids=[cards[2].id],
    )
    assert a.id is not None
    session.commit()
    f.set_phase(session, ws, 0, "vote")
    # Everyone votes, several on two cards of the same cluster (one person,
    # two vote rows: the case that anonymization used to count twice).
    for i, p in enumerate(people):
        for card in (cards[i % 4], cards[(i + 1) % 4]):
            votes.change_vote(session, workshop=ws, participant=p, card_id=card.id, delta=1)
        session.commit()
    phases.reveal(session, workshop=ws, focus_area=fa, actor="facilitator")
    session.commit()
    f.set_phase(session, ws, 0, "synthesize")
    return ws


def _numbers(fmt: str, content: bytes) -> list[str]:
    if fmt == "json":
        data = json.loads(content)
        voters = {v["voter"] for v in data["votes"]}
        return [
            str(len(voters)),
            json.dumps(sorted((v["card"], v["group"], v["dots"]) for v in data["votes"])),
        ] + [json.dumps(r) for r in data["ratings"]]
    text = {
        "md": lambda c: c.decode(),
        "csv": lambda c: c.decode(),
        "docx": lambda c: "\n".join(readers.docx_paragraphs(c)),
        "pdf": readers.pdf_text,
        "xlsx": lambda c: "\n".join(readers.xlsx_values(c)),
    }[fmt](content)
    return NUMBER.findall(text)


def _report(session: Session, ws: Workshop) -> list[Any]:
    assert ws.id is not None
    out = []
    for fa in workshop_results(session, ws.id).focus_areas:
        out.append((fa.turnout.to_json(), fa.groups_shown))
        for cl in fa.clusters:
            out.append((cl.title, cl.dots, cl.voters, [s.to_json() for s in cl.shares]))
            out.extend((c.title, c.dots, c.voters) for c in cl.cards)
        out.extend((c.title, c.dots, c.voters) for c in fa.unclustered)
    return out


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_keeps_its_numbers_through_close(session: Session, fmt: str) -> None:
    ws = _voted_workshop(session)
    assert ws.id is not None
    before = _numbers(fmt, export_workshop(session, ws.id, fmt).content)
    results_before = _report(session, ws)
    workshops.close_workshop(session, workshop=ws, actor="organizer")
    session.commit()
    # Anonymized for good: no vote leads back to a participant any more.
    assert all(v.participant_id is None for v in session.exec(select(Vote)))
    assert all(p.voter_key is None for p in session.exec(select(Participant)))
    assert _report(session, ws) == results_before
    after = _numbers(fmt, export_workshop(session, ws.id, fmt).content)
    assert after == before


def test_board_turnout_keeps_its_count_through_close(session: Session) -> None:
    ws = _voted_workshop(session)
    fa = workshops.focus_areas(session, ws.id or 0)[0]
    before = votes.turnout(session, focus_area_id=fa.id or 0)
    assert before == (10, 20)
    workshops.close_workshop(session, workshop=ws, actor="organizer")
    session.commit()
    assert votes.turnout(session, focus_area_id=fa.id or 0) == before


def test_reopen_restores_phases_and_join_lock(session: Session) -> None:
    ws = f.workshop(session, anonymize_on_close=True)
    assert ws.id is not None
    f.set_phase(session, ws, 0, "collect")
    f.set_phase(session, ws, 1, "vote")
    workshops.lock_joins(session, workshop=ws, locked=False, actor="organizer")
    session.commit()
    before = [fa.phase for fa in workshops.focus_areas(session, ws.id)]
    workshops.close_workshop(session, workshop=ws, actor="organizer")
    session.commit()
    assert {fa.phase for fa in workshops.focus_areas(session, ws.id)} == {"closed"}
    assert ws.joins_locked
    workshops.reopen_workshop(session, workshop=ws)
    session.commit()
    assert [fa.phase for fa in workshops.focus_areas(session, ws.id)] == before
    assert not ws.joins_locked and not ws.closed and ws.reopen_state is None


def test_reopen_keeps_a_join_lock_set_before_close(session: Session) -> None:
    ws = f.workshop(session)
    workshops.lock_joins(session, workshop=ws, locked=True, actor="organizer")
    workshops.close_workshop(session, workshop=ws, actor="organizer")
    workshops.reopen_workshop(session, workshop=ws)
    session.commit()
    assert ws.joins_locked
