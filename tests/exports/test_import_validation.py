"""``import_archive`` takes its file like any other input: bounded, typed,
every reference resolved, and all or nothing. Each test is one attack on
the import (from a black-box run against main) or one bound of the schema;
a refused archive must raise a ValueError that names what is wrong and
write nothing."""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from app.config import Settings
from app.db import make_engine
from app.domain.workshops import MAX_FOCUS_AREAS
from app.exports.archive import export_archive, import_archive
from app.models import Card, Cluster, Event, FocusArea, Participant, Rating, Vote, Workshop
from tests.conftest import fresh_database
from tests.exports import factory

Data = dict[str, Any]
_codes = itertools.count(1)
TABLES: list[type[Any]] = [Workshop, Participant, FocusArea, Cluster, Card, Vote, Rating, Event]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One migrated database for the module (a database of its own on
    PostgreSQL): refused imports leave it as it was, so tests can share it."""
    tmp = tmp_path_factory.mktemp("import")
    with fresh_database(tmp) as url:
        eng = make_engine(Settings(database_url=url, data_dir=tmp))
        yield eng
        eng.dispose()


@pytest.fixture(scope="module")
def exported(engine: Engine) -> Data:
    with Session(engine, expire_on_commit=False) as s:
        ws = factory.sample_workshop(s)
        assert ws.id is not None
        return export_archive(s, ws.id)


@pytest.fixture
def data(exported: Data) -> Data:
    return copy.deepcopy(exported)


def _code() -> str:
    return f"IMP{next(_codes):05d}"


def _rows(session: Session) -> dict[str, int]:
    return {t.__name__: session.exec(select(func.count()).select_from(t)).one() for t in TABLES}


def _problem(exc: BaseException) -> str:
    from app.exports.archive import describe_error

    assert isinstance(exc, ValueError)
    return describe_error(exc)


def refused(session: Session, data: Any, match: str | None = None) -> str:
    """Import ``data``, expect a clean refusal naming the problem, and check
    that nothing at all was written. Returns the one-line message."""
    before = _rows(session)
    with pytest.raises(ValueError) as info:
        import_archive(session, data, new_code=_code())
    session.rollback()
    assert _rows(session) == before
    message = _problem(info.value)
    assert message and "\n" not in message and len(message) <= 400, message
    if match is not None:
        assert match in message, message
    return message


def imported(session: Session, data: Data) -> Workshop:
    ws = import_archive(session, data, new_code=_code())
    assert ws.id is not None
    return ws


def _count(session: Session, table: Any, ws: Workshop) -> int:
    if table in (Vote, Rating):
        fas = select(FocusArea.id).where(FocusArea.workshop_id == ws.id)
        query = select(func.count()).select_from(table).where(col(table.focus_area_id).in_(fas))
    else:
        query = select(func.count()).select_from(table).where(table.workshop_id == ws.id)
    return int(session.exec(query).one())


def _index(records: list[Data], **where: Any) -> int:
    return next(i for i, r in enumerate(records) if all(r.get(k) == v for k, v in where.items()))


# --- finding 1: counts and sums ----------------------------------------------


def test_a_tiny_file_cannot_make_a_huge_workshop(session: Session) -> None:
    tiny = {
        "schema_version": 1,
        "workshop": {"title": "x"},
        "focus_areas": [{"ref": 1, "title": "f"}],
        "cards": [{"ref": 1, "focus_area": 1, "kind": "tool", "title": "t"}],
        "ratings": [{"card": 1, "count": 300000, "impact_sum": 900000, "feasibility_sum": 1}],
    }
    assert len(json.dumps(tiny)) < 300
    refused(session, tiny, "ratings[0].count")


def test_a_rating_count_is_at_most_the_participants(session: Session, data: Data) -> None:
    n = len(data["participants"])
    data["ratings"][0].update(count=n + 1, impact_sum=n + 1, feasibility_sum=n + 1)
    refused(session, data, f"ratings[0].count: {n + 1} ratings but {n} participants")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("impact_sum", lambda n: 5 * n + 1),
        ("impact_sum", lambda n: n - 1),
        ("feasibility_sum", lambda n: 5 * n + 1),
        ("feasibility_sum", lambda n: 0),
        ("feasibility_sum", lambda n: -1000),
        ("impact_sum", lambda n: 10**9),
    ],
)
def test_rating_sums_stay_within_one_to_five(
    session: Session, data: Data, field: str, value: Callable[[int], int]
) -> None:
    rating = data["ratings"][0]
    rating[field] = value(rating["count"])
    refused(session, data, f"ratings[0].{field}")


def test_rating_sums_at_the_bounds_import_as_scores_one_to_five(
    session: Session, data: Data
) -> None:
    first, second = data["ratings"][0], data["ratings"][1]
    first.update(impact_sum=first["count"] * 5, feasibility_sum=first["count"])
    second.update(impact_sum=second["count"] * 3 + 1, feasibility_sum=second["count"] * 2 - 1)
    ws = imported(session, data)
    assert _count(session, Rating, ws) == sum(r["count"] for r in data["ratings"])
    fas = select(FocusArea.id).where(FocusArea.workshop_id == ws.id)
    scores = session.exec(
        select(Rating.impact, Rating.feasibility).where(col(Rating.focus_area_id).in_(fas))
    ).all()
    assert {s for pair in scores for s in pair} <= {1, 2, 3, 4, 5}


def test_votes_stay_within_the_largest_possible_cap(session: Session, data: Data) -> None:
    data["votes"][2]["dots"] = 51
    refused(session, data, "votes[2].dots")


def test_dots_above_a_cap_lowered_after_voting_still_import(session: Session, data: Data) -> None:
    """An organizer may lower the cap after votes were cast: an honest
    export of that workshop imports."""
    data["workshop"]["settings"]["vote_cap"] = 1
    data["votes"][2]["dots"] = 3
    import_archive(session, data, new_code="LOWERCAP")


def test_total_rating_rows_are_bounded(session: Session) -> None:
    from app.exports.archive import MAX_PARTICIPANTS, MAX_RATINGS

    cards = MAX_RATINGS // MAX_PARTICIPANTS + 1
    big: Data = {
        "schema_version": 1,
        "workshop": {"title": "x"},
        "participants": [{"ref": i} for i in range(1, MAX_PARTICIPANTS + 1)],
        "focus_areas": [{"ref": 1, "title": "f"}],
        "cards": [
            {"ref": i, "focus_area": 1, "kind": "tool", "title": "t"} for i in range(1, cards + 1)
        ],
        "ratings": [
            {"card": i, "count": MAX_PARTICIPANTS, "impact_sum": MAX_PARTICIPANTS * 3}
            | {"feasibility_sum": MAX_PARTICIPANTS * 3}
            for i in range(1, cards + 1)
        ],
    }
    refused(session, big, "ratings: ")


def test_list_lengths_are_bounded(session: Session, data: Data) -> None:
    area = data["focus_areas"][0]
    data["focus_areas"] = [
        {**area, "ref": i, "position": i - 1} for i in range(1, MAX_FOCUS_AREAS + 2)
    ]
    refused(session, data, "focus_areas")


def test_too_many_cards_are_refused(session: Session, data: Data) -> None:
    from app.exports.archive import MAX_CARDS

    card = {"focus_area": 1, "kind": "tool", "title": "t"}
    data["cards"] = [{**card, "ref": i} for i in range(1, MAX_CARDS + 2)]
    refused(session, data, "cards")


# --- finding 2: references, duplicates, huge numbers, nesting ----------------


def _set(path: str, value: Any) -> Callable[[Data], None]:
    """A mutation that sets ``path`` (``votes.3.card``) to ``value``."""

    def apply(data: Data) -> None:
        *head, last = path.split(".")
        node: Any = data
        for key in head:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value

    return apply


def _where(path: str) -> str:
    """``votes.3.card`` as the error names it: ``votes[3].card``."""
    return re.sub(r"\.(\d+)", r"[\1]", path)


UNKNOWN_REFS = [
    ("votes.3.card", 999, "votes[3].card: no card with ref 999"),
    ("cards.0.focus_area", 7, "cards[0].focus_area: no focus area with ref 7"),
    ("cards.0.cluster", 99, "cards[0].cluster: no cluster with ref 99"),
    ("clusters.0.focus_area", 7, "clusters[0].focus_area: no focus area with ref 7"),
    ("clusters.1.merged_into", 99, "clusters[1].merged_into: no cluster with ref 99"),
    ("ratings.0.card", 999, "ratings[0].card: no card with ref 999"),
]


@pytest.mark.parametrize(("path", "value", "message"), UNKNOWN_REFS)
def test_unknown_references_are_refused(
    session: Session, data: Data, path: str, value: Any, message: str
) -> None:
    _set(path, value)(data)
    assert refused(session, data, message).endswith(message)


def test_an_unknown_merge_target_is_refused(session: Session, data: Data) -> None:
    i = _index(data["cards"], status="merged")
    data["cards"][i]["merged_into"] = 999
    refused(session, data, f"cards[{i}].merged_into: no card with ref 999")


@pytest.mark.parametrize(
    ("kind", "key", "table"),
    [
        ("card.moved", "card_id", "card"),
        ("card.moved", "to_cluster_id", "cluster"),
        ("card.merged", "into_card_id", "card"),
        ("cluster.merged", "into_cluster_id", "cluster"),
        ("focus_area.phase", "focus_area_id", "focus area"),
    ],
)
def test_unknown_event_references_are_refused(
    session: Session, data: Data, kind: str, key: str, table: str
) -> None:
    i = _index(data["events"], kind=kind)
    data["events"][i]["payload"][key] = 999
    refused(session, data, f"events[{i}].payload.{key}: no {table} with ref 999")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("participants", "participants[1].ref: duplicate ref"),
        ("focus_areas", "focus_areas[1].ref: duplicate ref"),
        ("clusters", "clusters[1].ref: duplicate ref"),
        ("cards", "cards[1].ref: duplicate ref"),
    ],
)
def test_duplicate_refs_are_refused(
    session: Session, data: Data, section: str, message: str
) -> None:
    data[section][1]["ref"] = data[section][0]["ref"]
    refused(session, data, message)


def test_a_card_is_rated_once(session: Session, data: Data) -> None:
    data["ratings"].append(dict(data["ratings"][0]))
    n = len(data["ratings"]) - 1
    refused(session, data, f"ratings[{n}].card: card {data['ratings'][0]['card']} is rated twice")


def test_a_voter_votes_once_per_card(session: Session, data: Data) -> None:
    data["votes"].append(dict(data["votes"][0]))
    refused(session, data, f"votes[{len(data['votes']) - 1}]: voter")


def test_duplicate_event_seqs_are_refused(session: Session, data: Data) -> None:
    data["events"][1]["seq"] = data["events"][0]["seq"]
    refused(session, data, "events[1].seq: duplicate seq 1")


def test_duplicate_focus_area_positions_are_refused(session: Session, data: Data) -> None:
    data["focus_areas"][1]["position"] = data["focus_areas"][0]["position"]
    refused(session, data, "focus_areas[1].position")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("focus_areas.0.position", 10**12),
        ("focus_areas.0.position", -1),
        ("clusters.0.position", 2**63),
        ("events.0.seq", 2**63),
        ("events.0.seq", 0),
        ("votes.0.dots", 10**6),
        ("votes.0.voter", 10**40),
        ("ratings.0.count", 10**18),
        ("cards.0.ref", 10**30),
        ("participants.0.ref", -5),
        ("workshop.settings.vote_cap", 10**9),
    ],
)
def test_huge_numbers_are_refused(session: Session, data: Data, path: str, value: int) -> None:
    _set(path, value)(data)
    refused(session, data, _where(path))


def test_a_card_cannot_merge_into_itself(session: Session, data: Data) -> None:
    i = _index(data["cards"], status="merged")
    data["cards"][i]["merged_into"] = data["cards"][i]["ref"]
    refused(session, data, f"cards[{i}].merged_into: a card cannot be merged into itself")


def test_merge_cycles_are_refused(session: Session, data: Data) -> None:
    merged = _index(data["clusters"], status="merged")
    target = data["clusters"][merged]["merged_into"]
    t = _index(data["clusters"], ref=target)
    data["clusters"][t].update(status="merged", merged_into=data["clusters"][merged]["ref"])
    refused(session, data, "merged_into: the merges")


def test_a_card_stays_in_its_focus_area(session: Session, data: Data) -> None:
    i = _index(data["cards"], focus_area=2)
    data["cards"][i]["cluster"] = data["clusters"][0]["ref"]
    refused(session, data, f"cards[{i}].cluster: cluster")


def test_deep_nesting_in_a_dict_is_refused(session: Session, data: Data) -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    data["cards"][0]["context"] = {"where": deep}
    refused(session, data, "nested")


def test_deep_nesting_in_a_file_is_refused() -> None:
    from app.exports.archive import ArchiveError, parse_archive

    raw = b'{"schema_version": 1, "workshop": {"title": "x"}, "events": ['
    raw += b"[" * 100_000 + b"]" * 100_000 + b"]}"
    with pytest.raises(ArchiveError, match="nested"):
        parse_archive(raw)


def test_moderate_nesting_is_refused_after_parsing(session: Session, data: Data) -> None:
    from app.exports.archive import MAX_DEPTH

    raw = json.dumps(data).replace('"context": {}', '"context": ' + "[" * 50 + "]" * 50, 1)
    from app.exports.archive import parse_archive

    parsed = parse_archive(raw.encode())
    assert MAX_DEPTH < 50
    refused(session, parsed, "nested")


# --- finding 3: card context ---------------------------------------------------


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"<script>alert(1)</script>": 1}, "cards[0].context: unknown key '<script>alert(1)<"),
        ({"blob": "x" * 2_000_000}, "cards[0].context: unknown key 'blob'"),
        ({"where": "x" * 2_000_000}, "cards[0].context.where"),
        ({"dimensions": ["bogus"]}, "cards[0].context.dimensions"),
        ({"partners": ["p"] * 21}, "cards[0].context.partners"),
        ({"evidence": 5}, "cards[0].context.evidence"),
        ("not a dict", "cards[0].context"),
    ],
)
def test_card_context_is_validated_like_the_api(
    session: Session, data: Data, context: Any, message: str
) -> None:
    data["cards"][0]["context"] = context
    refused(session, data, message)


def test_card_context_is_stored_as_the_api_stores_it(session: Session, data: Data) -> None:
    data["cards"][0]["context"] = {"where": "", "partners": [" UNODC ", "UNODC"], "evidence": None}
    ws = imported(session, data)
    title = data["cards"][0]["title"]
    row = session.exec(select(Card).where(Card.workshop_id == ws.id, Card.title == title)).one()
    assert row.context == {"partners": ["UNODC"]}


# --- types, text, shape --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("cards.0.title", 5),
        ("votes.0.dots", "3"),
        ("votes.0.dots", True),
        ("ratings.0.count", 2.5),
        ("focus_areas.0.kinds", "tool"),
        ("focus_areas.0.kinds", ["tool", "bogus"]),
        ("focus_areas.0.kinds", ["tool", "tool"]),
        ("focus_areas.0.ratings_enabled", "yes"),
        ("participants", {}),
        ("workshop", []),
        ("workshop.affiliations", ["x" * 201]),
        ("events.0.kind", "vote.changed"),
        ("events.0.day", "yesterday"),
        ("events.0.payload", []),
    ],
)
def test_wrong_types_are_refused(session: Session, data: Data, path: str, value: Any) -> None:
    _set(path, value)(data)
    refused(session, data, _where(path))


@pytest.mark.parametrize("top", [[], "archive", 1, None, {"schema_version": 1}])
def test_an_archive_is_an_object_with_a_workshop(session: Session, top: Any) -> None:
    refused(session, top)


def test_unknown_keys_are_refused(session: Session, data: Data) -> None:
    data["cards"][0]["author"] = "Zebulon Quixworth"
    refused(session, data, "cards[0]: unknown key 'author'")


def test_unknown_event_payload_keys_are_refused(session: Session, data: Data) -> None:
    i = _index(data["events"], kind="card.merged")
    data["events"][i]["payload"]["author_id"] = 3
    refused(session, data, f"events[{i}].payload")


def test_an_event_phase_is_a_phase(session: Session, data: Data) -> None:
    i = _index(data["events"], kind="focus_area.phase")
    data["events"][i]["payload"]["phase"] = "<script>"
    refused(session, data, f"events[{i}].payload.phase")


@pytest.mark.parametrize("text", ["a\x00b", "a\ud800b"])
def test_text_that_no_database_stores_is_refused(session: Session, data: Data, text: str) -> None:
    data["cards"][3]["title"] = text
    refused(session, data, "cards[3].title")


def test_a_bad_last_record_writes_nothing(session: Session, data: Data) -> None:
    data["events"][-1]["payload"] = {k: 999 for k in data["events"][-1]["payload"]}
    refused(session, data, f"events[{len(data['events']) - 1}].payload")


def test_other_schema_versions_are_refused(session: Session, data: Data) -> None:
    data["schema_version"] = "1" * 5000
    message = refused(session, data, "schema_version")
    assert len(message) < 200


# --- the file ------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path, data: Data) -> None:
    from app.exports.archive import MAX_ARCHIVE_BYTES, ArchiveError, parse_archive, read_archive

    assert MAX_ARCHIVE_BYTES >= 16 * 1024 * 1024
    path = tmp_path / "big.json"
    path.write_bytes(json.dumps(data).encode() + b" " * 200)
    with pytest.raises(ArchiveError, match="larger than 100 bytes"):
        read_archive(path, max_bytes=100)
    with pytest.raises(ArchiveError, match="larger than"):
        parse_archive(b" " * (MAX_ARCHIVE_BYTES + 1))
    assert read_archive(path) == data


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "not valid JSON"),
        (b'{"schema_version": NaN}', "not valid JSON"),
        (b'{"schema_version": Infinity}', "not valid JSON"),
        (b'{"schema_version": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b'{"title": "\xff"}', "not UTF-8"),
        (b"", "not valid JSON"),
    ],
)
def test_a_file_that_is_not_json_is_refused(raw: bytes, message: str) -> None:
    from app.exports.archive import ArchiveError, parse_archive

    with pytest.raises(ArchiveError, match=message) as info:
        parse_archive(raw)
    assert "\n" not in str(info.value)


def test_schema_errors_read_as_one_line(session: Session, data: Data) -> None:
    data["cards"][0]["kind"] = "<script>"
    data["cards"][1]["title"] = ""
    data["cards"][2]["bad\nkey"] = 1
    message = refused(session, data)
    assert message.startswith("cards[0].kind: ") and "(and 2 more problems)" in message


# --- a faithful import ------------------------------------------------------------


def test_a_valid_archive_imports_row_for_row(session: Session, data: Data) -> None:
    ws = imported(session, data)
    assert ws.closed
    expected = {
        Participant: len(data["participants"]),
        FocusArea: len(data["focus_areas"]),
        Cluster: len(data["clusters"]),
        Card: len(data["cards"]),
        Vote: len(data["votes"]),
        Rating: sum(r["count"] for r in data["ratings"]),
        Event: len(data["events"]),
    }
    assert {t: _count(session, t, ws) for t in expected} == expected
    assert ws.last_seq == max(e["seq"] for e in data["events"])


def test_the_readme_states_the_limits() -> None:
    from app.exports import archive as a

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("- `lessons import FILE") :]
    section = " ".join(section[: section.index("\n- `")].split())
    assert f"{a.MAX_ARCHIVE_BYTES // 2**20} MiB" in section
    assert f"nested at most {a.MAX_DEPTH} deep" in section
    for n in (a.MAX_PARTICIPANTS, MAX_FOCUS_AREAS, a.MAX_CARDS, a.MAX_VOTES, a.MAX_RATINGS):
        assert f"{n:,}" in section
    assert a.MAX_CLUSTERS == a.MAX_CARDS and a.MAX_EVENTS == a.MAX_VOTES == a.MAX_RATINGS
