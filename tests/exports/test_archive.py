from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from sqlmodel import Session, select

from app.exports import export_workshop, import_archive
from app.exports.archive import SCHEMA_VERSION, export_archive
from app.models import FocusArea, Participant, Vote, Workshop
from tests.exports import factory


def test_round_trip_gives_the_same_document(session: Session, sample: Workshop) -> None:
    assert sample.id is not None
    data = json.loads(export_workshop(session, sample.id, "json").content)
    assert data["schema_version"] == SCHEMA_VERSION == 1
    copy = import_archive(session, data, new_code="COPY01")
    assert copy.id is not None and copy.id != sample.id
    first = export_workshop(session, sample.id, "md").content.decode()
    second = export_workshop(session, copy.id, "md").content.decode()
    assert second == first
    assert _canonical(export_archive(session, copy.id)) == _canonical(data)


def _canonical(archive: dict) -> dict:  # type: ignore[type-arg]
    """The archive with its voter pseudonyms renamed canonically: the numbers
    are drawn at random on every export, so only their pattern must match."""
    votes = archive["votes"]
    ballots: dict[object, list[tuple[object, ...]]] = {}
    for v in votes:
        ballots.setdefault(v["voter"], []).append((v["card"], v["group"], v["dots"]))
    order = sorted(ballots, key=lambda ref: sorted(map(str, ballots[ref])))
    rename = {ref: i for i, ref in enumerate(order)}
    out = dict(archive)
    out["votes"] = sorted(
        ({**v, "voter": rename[v["voter"]]} for v in votes),
        key=lambda v: (v["card"], v["voter"], v["dots"]),
    )
    out["participants"] = sorted(
        ((p["group"], p["role"]) for p in archive["participants"]), key=str
    )
    return out


def test_import_makes_a_new_closed_workshop(session: Session, sample: Workshop) -> None:
    assert sample.id is not None
    copy = import_archive(session, export_archive(session, sample.id), new_code="COPY02")
    assert copy.code == "COPY02" and copy.closed and copy.title == sample.title
    phases = session.exec(select(FocusArea.phase).where(FocusArea.workshop_id == copy.id)).all()
    assert phases and set(phases) == {"closed"}
    names = session.exec(
        select(Participant.display_name).where(Participant.workshop_id == copy.id)
    ).all()
    assert not set(names) & set(factory.NAMES)


def test_import_twice_gives_two_workshops(session: Session, sample: Workshop) -> None:
    assert sample.id is not None
    data = export_archive(session, sample.id)
    a = import_archive(session, data, new_code="A00001")
    b = import_archive(session, data, new_code="B00001")
    assert len({sample.id, a.id, b.id}) == 3


def test_import_rejects_other_schema_versions(session: Session) -> None:
    with pytest.raises(ValueError, match="schema_version"):
        import_archive(session, {"schema_version": 2, "workshop": {"title": "x"}}, new_code="X1")


def test_import_rejects_malformed_cards(session: Session, sample: Workshop) -> None:
    assert sample.id is not None
    data = export_archive(session, sample.id)
    data["cards"][0]["kind"] = "<script>"
    with pytest.raises(ValidationError):
        import_archive(session, data, new_code="BAD001")


def test_anonymized_votes_survive_the_round_trip(session: Session, sample: Workshop) -> None:
    assert sample.id is not None
    for v in session.exec(select(Vote)).all():
        v.participant_id = None
    session.commit()
    data = export_archive(session, sample.id)
    assert all(v["voter"] is None for v in data["votes"])
    copy = import_archive(session, data, new_code="ANON01")
    assert copy.id is not None
    first = export_workshop(session, sample.id, "md").content
    assert export_workshop(session, copy.id, "md").content == first
