from __future__ import annotations

from datetime import date

from sqlmodel import Session

from app.exports.outcome import CHATHAM_HOUSE, build_outcome, fmt_dates
from app.models import Workshop


def test_outcome_title_block(session: Session, sample: Workshop) -> None:
    assert sample.id is not None
    o = build_outcome(session, sample.id)
    assert o.title == "Lessons learned: organized crime"
    assert o.dates == "15-16 October 2007"
    assert o.hosted_by.startswith("OSCE Secretariat")
    assert o.classification == "OSCE internal"
    assert o.notice == CHATHAM_HOUSE and "Chatham House" in o.notice
    assert o.participant_annex is None


def test_outcome_ranks_findings_and_groups_cards_by_kind(
    session: Session, sample: Workshop
) -> None:
    assert sample.id is not None
    fa1 = build_outcome(session, sample.id).focus_areas[0]
    assert [c.title for c in fa1.clusters][:2] == [
        "Joint investigation teams",
        "Training of prosecutors",
    ]
    joint = fa1.clusters[0]
    assert (joint.dots, joint.voters, joint.impact) == (18, 9, 5.0)
    assert [g.kind for g in joint.kinds] == ["tool", "method"]
    training = fa1.clusters[1]
    # The card in the merged-away cluster counts for the cluster it went into.
    assert [c.title for c in training.cards] == ["Prosecutor curriculum", "Use mentoring"]
    assert training.merged_from == ["Old duplicate cluster"]
    curriculum = training.cards[0]
    assert curriculum.merged_from == [("Curriculum duplicate", "Same idea, other words.")]
    assert [c.title for g in fa1.unclustered for c in g.cards] == ["Unclustered idea"]
    assert [p.label for p in fa1.points] == ["1", "2", "3"]


def test_outcome_leaves_out_hidden_and_withdrawn_cards(session: Session, sample: Workshop) -> None:
    assert sample.id is not None
    o = build_outcome(session, sample.id)
    titles = {c.title for c in o.all_cards}
    assert "Hidden card" not in titles and "Withdrawn card" not in titles
    assert "Curriculum duplicate" not in titles
    assert len(o.all_cards) == 13
    assert [c.ref for c in o.all_cards[:3]] == ["1.1", "1.2", "1.3"]


def test_outcome_method_counts_fold_small_groups(session: Session, sample: Workshop) -> None:
    assert sample.id is not None
    o = build_outcome(session, sample.id)
    assert o.participants.rows == [
        ["Field operation", "3"],
        ["OSCE Secretariat", "3"],
        ["Other", "3"],
        ["Total", "9"],
    ]
    assert o.cards.rows[-1] == ["Total", "2", "2", "7", "2", "13"]
    assert o.phases[0] == "Focus area 1: collect, cluster, vote, synthesize, closed"
    assert any("5 dots" in r and "at most 3" in r for r in o.rules)


def test_outcome_recommendations_and_cross_view(session: Session, sample: Workshop) -> None:
    assert sample.id is not None
    o = build_outcome(session, sample.id)
    assert [heading for heading, _recs in o.recommendations] == [o.focus_areas[0].heading]
    recs = [(r.rank, r.source, r.title) for r in o.recommendations[0][1]]
    assert recs[0] == (1, "Finding 3", '=HYPERLINK("http://x","y")')
    recs = [(source, title) for _rank, source, title in recs]
    assert ("Card", "1.10 Unclustered idea") in recs
    assert ("Card", "1.11 Use mentoring") in recs
    unclustered = next(r for r in o.recommendations[0][1] if r.title.endswith("Unclustered idea"))
    assert ("Partners", "INTERPOL") in unclustered.facets
    assert o.dimensions.rows[0][1:] == ["1", "1", "2", "8"]
    assert ["Europol", "1"] in o.partners.rows
    assert o.crime_areas.rows == [["Border security", "1"], ["Trafficking in human beings", "1"]]


def test_outcome_provenance_names_cards_merges_and_moves(
    session: Session, sample: Workshop
) -> None:
    assert sample.id is not None
    prov = {p.heading: p for p in build_outcome(session, sample.id).provenance}
    training = prov["1.2 Training of prosecutors"]
    assert training.sources == "Cards: 1.7, 1.11"
    assert "Finding 'Old duplicate cluster' was merged into this one." in training.notes
    assert "1.7 absorbs the merged card 'Curriculum duplicate'." in training.notes
    assert (
        "1.7 moved from 'Joint investigation teams' to 'Training of prosecutors'." in training.notes
    )


def test_outcome_with_participant_annex(session: Session) -> None:
    from tests.exports.factory import NAMES, sample_workshop

    ws = sample_workshop(session, participant_annex=True)
    assert ws.id is not None
    annex = build_outcome(session, ws.id).participant_annex
    assert annex is not None
    assert sorted(r[0] for r in annex.rows) == sorted(NAMES)
    assert "Facilitator Marchbanks" not in {r[0] for r in annex.rows}


def test_fmt_dates_never_finer_than_the_day() -> None:
    assert fmt_dates(None, None) == ""
    assert fmt_dates(date(2007, 10, 15), None) == "15 October 2007"
    assert fmt_dates(date(2007, 9, 30), date(2007, 10, 1)) == "30 September - 1 October 2007"
    assert fmt_dates(date(2007, 12, 31), date(2008, 1, 1)) == "31 December 2007 - 1 January 2008"
