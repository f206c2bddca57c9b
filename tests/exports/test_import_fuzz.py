"""Fuzzing ``lessons import``: archives generated from the archive schema, a
real export mutated by Hypothesis (records dropped, duplicated and shuffled,
refs pointed anywhere, every field set to values at and past the bounds its
model declares, wrong types, unknown keys, deep nesting), run through the
CLI's own path (``parse_archive``, ``import_archive``, ``describe_error``).

Either the archive is refused with a ValueError that reads as one line and
nothing is written, or it is imported faithfully: exactly the rows the
archive lists (one rating row per counted rating), never more, and the copy
exports again. Any other exception fails."""

from __future__ import annotations

import copy
import itertools
import json
import os
import random
from collections.abc import Iterator
from typing import Any

import annotated_types as at
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from app.config import Settings
from app.db import make_engine
from app.exports import archive as schema
from app.exports.archive import describe_error, export_archive, import_archive, parse_archive
from app.models import Card, Cluster, Event, FocusArea, Participant, Rating, Vote, Workshop
from tests.conftest import fresh_database
from tests.exports import factory

Data = dict[str, Any]
SECTIONS: dict[str, type[BaseModel]] = {
    "participants": schema.ArchiveParticipant,
    "focus_areas": schema.ArchiveFocusArea,
    "clusters": schema.ArchiveCluster,
    "cards": schema.ArchiveCard,
    "votes": schema.ArchiveVote,
    "ratings": schema.ArchiveRating,
    "events": schema.ArchiveEvent,
}
TABLES: dict[str, Any] = {
    "participants": Participant,
    "focus_areas": FocusArea,
    "clusters": Cluster,
    "cards": Card,
    "votes": Vote,
    "events": Event,
}
EXAMPLES = int(os.environ.get("IMPORT_FUZZ_EXAMPLES", "500"))
_codes = itertools.count(1)


# --- the database and the archive mutated -------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    tmp = tmp_path_factory.mktemp("fuzz")
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


# --- values from the schema ----------------------------------------------------

DEEP = "@@deep:{}@@"  # replaced by that many nested lists in the file itself
TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from("\x00\ud800<>\"'\\\n"), max_size=12)
WRONG_TYPES = st.sampled_from(
    [None, True, False, 1.5, -0.0, "3", "", [], {}, [1], {"a": 1}, 2**31, 2**63, -(2**63), 10**30]
)
DEEP_VALUES = st.sampled_from([5, 9, 50, 3000]).map(DEEP.format)


def _bounds(model: type[BaseModel], name: str) -> dict[str, int]:
    """The numeric and length bounds the model declares for a field."""
    out: dict[str, int] = {}
    for m in model.model_fields[name].metadata:
        if isinstance(m, at.BaseMetadata):
            for attr in ("ge", "gt", "le", "lt", "min_length", "max_length"):
                if hasattr(m, attr):
                    out[attr] = getattr(m, attr)
    return out


def field_values(model: type[BaseModel], name: str) -> st.SearchStrategy[Any]:
    """Values for one field: at and just past each bound it declares, refs
    that exist and that do not, text, wrong types, deep nesting."""
    b = _bounds(model, name)
    edges: list[Any] = []
    for key, step in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
        if key in b:
            edges += [b[key], b[key] + step]
    for key in ("min_length", "max_length"):
        if key in b:
            n = b[key]
            edges += ["x" * n, "x" * (n + 1), ["tool"] * n, ["tool"] * (n + 1)]
    return st.one_of(
        st.sampled_from(edges) if edges else st.nothing(),
        st.integers(-2, 12),
        TEXT,
        WRONG_TYPES,
        DEEP_VALUES,
    )


@st.composite
def mutation(draw: st.DrawFn, base: Data) -> tuple[str, Any]:
    """One change to an archive, described for the failure report."""
    section = draw(st.sampled_from(sorted(SECTIONS)))
    records = base[section]
    index = draw(st.integers(0, max(len(records) - 1, 0)))
    model = SECTIONS[section]
    kind = draw(
        st.sampled_from(
            [
                "set",
                "set",
                "set",
                "drop",
                "duplicate",
                "shuffle",
                "delete",
                "unknown",
                "context",
                "payload",
                "workshop",
                "settings",
                "top",
                "copies",
                "shuffle",
                "retitle",
                "retitle",
                "leave out",
                "leave out",
            ]
        )
    )
    if kind == "retitle":  # still valid: text within the bounds
        section = draw(st.sampled_from(["cards", "clusters", "focus_areas"]))
        text = draw(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60))
        return "set", (section, index, "title", text.replace("\x00", "") or "t")
    if kind == "leave out":  # still valid: nothing refers to these
        return "drop", (draw(st.sampled_from(["votes", "ratings", "events"])), index)
    if kind == "set":
        name = draw(st.sampled_from(sorted(model.model_fields)))
        return kind, (section, index, name, draw(field_values(model, name)))
    if kind in ("drop", "duplicate"):
        return kind, (section, index)
    if kind == "shuffle":
        return kind, (section, draw(st.floats(0, 1)))
    if kind == "delete":
        return kind, (section, index, draw(st.sampled_from(sorted(model.model_fields))))
    if kind == "unknown":
        return kind, (section, index, draw(TEXT | st.just("author")), draw(WRONG_TYPES))
    if kind == "context":
        names = sorted(schema.CardContext.model_fields)
        key = draw(st.sampled_from(names) | TEXT | st.just("<script>"))
        value = draw(
            WRONG_TYPES
            | TEXT
            | DEEP_VALUES
            | st.lists(TEXT, max_size=25)
            | st.sampled_from([["human"], ["UNODC", "UNODC"], "x" * 201, "x" * 5000])
        )
        return kind, (index, key, value)
    if kind == "payload":
        key = draw(
            st.sampled_from(sorted({k for refs in schema.EVENT_REFS.values() for k in refs}))
            | st.sampled_from(["phase", "previous", "author_id"])
        )
        return kind, (index, key, draw(st.integers(-1, 12) | WRONG_TYPES | TEXT))
    if kind == "workshop":
        name = draw(st.sampled_from(sorted(schema.ArchiveWorkshop.model_fields)))
        return kind, (name, draw(field_values(schema.ArchiveWorkshop, name)))
    if kind == "settings":
        name = draw(st.sampled_from(sorted(schema.WorkshopSettings.model_fields)))
        return kind, (name, draw(field_values(schema.WorkshopSettings, name)))
    if kind == "top":
        key = draw(st.sampled_from([*SECTIONS, "schema_version", "workshop", "extra"]))
        return kind, (key, draw(WRONG_TYPES | DEEP_VALUES))
    return kind, (section, draw(st.integers(2, 50)))


def _pick(data: Data, section: str, index: int) -> dict[str, Any] | None:
    """The record a change aims at, unless an earlier change left none."""
    records = data.get(section)
    if not isinstance(records, list) or not records:
        return None
    rec = records[index % len(records)]
    return rec if isinstance(rec, dict) else None


def _inner(rec: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    value = rec.get(key) if rec is not None else None
    return value if isinstance(value, dict) else None


def apply(data: Data, change: tuple[str, Any]) -> None:
    """Make one change, where earlier changes left something to change."""
    kind, args = change
    if kind == "workshop" and isinstance(data.get("workshop"), dict):
        data["workshop"][args[0]] = args[1]
    elif kind == "settings" and (ws := _inner(data, "workshop")) is not None:
        target = ws.setdefault("settings", {})
        if isinstance(target, dict):
            target[args[0]] = args[1]
    elif kind == "top":
        data[args[0]] = args[1]
    elif kind == "context" and (ctx := _inner(_pick(data, "cards", args[0]), "context")):
        ctx[args[1]] = args[2]
    elif kind == "payload" and (payload := _inner(_pick(data, "events", args[0]), "payload")):
        payload[args[1]] = args[2]
    elif kind in ("shuffle", "copies") and isinstance(data.get(args[0]), list):
        section, arg = args
        if kind == "shuffle":
            random.Random(arg).shuffle(data[section])
        else:
            data[section] = [copy.deepcopy(r) for r in data[section] for _ in range(arg)]
    elif kind in ("set", "drop", "duplicate", "delete", "unknown"):
        section, index, *rest = args
        rec = _pick(data, section, index)
        if rec is None:
            return
        if kind in ("set", "unknown"):
            rec[rest[0]] = rest[1]
        elif kind == "drop":
            data[section].remove(rec)
        elif kind == "duplicate":
            data[section].append(copy.deepcopy(rec))
        else:
            rec.pop(rest[0], None)


def encode(data: Data) -> bytes:
    """The archive file: JSON, with the deep-nesting markers spelled out."""
    text = json.dumps(data)  # ASCII: a lone surrogate travels as an escape, as JSON allows
    for depth in (5, 9, 50, 3000):
        text = text.replace(json.dumps(DEEP.format(depth)), "[" * depth + "]" * depth)
    return text.encode("ascii")


# --- the property ------------------------------------------------------------------


def _counts(session: Session) -> dict[str, int]:
    tables = [Workshop, *TABLES.values(), Rating]
    return {t.__name__: session.exec(select(func.count()).select_from(t)).one() for t in tables}


def _rows_of(session: Session, ws: Workshop) -> dict[str, int]:
    fas = select(FocusArea.id).where(FocusArea.workshop_id == ws.id)
    out = {}
    for section, table in TABLES.items():
        if table is Vote:
            q = select(func.count()).select_from(Vote).where(col(Vote.focus_area_id).in_(fas))
        else:
            q = select(func.count()).select_from(table).where(table.workshop_id == ws.id)
        out[section] = int(session.exec(q).one())
    q = select(func.count()).select_from(Rating).where(col(Rating.focus_area_id).in_(fas))
    out["ratings"] = int(session.exec(q).one())
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ in the shared working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(draw=st.data())
def test_an_import_is_refused_cleanly_or_faithful(
    engine: Engine, exported: Data, draw: st.DataObject
) -> None:
    changes = draw.draw(st.lists(mutation(exported), max_size=4), label="changes")
    data = copy.deepcopy(exported)
    for change in changes:
        apply(data, change)
    raw = encode(data)
    with Session(engine, expire_on_commit=False) as session:
        before = _counts(session)
        session.rollback()
        try:
            parsed = parse_archive(raw)
            ws = import_archive(session, parsed, new_code=f"FZ{next(_codes):06d}")
        except ValueError as exc:
            message = describe_error(exc)
            note(f"refused: {message}")
            event("refused: " + message.split(":")[0].split("[")[0])
            assert message and "\n" not in message and len(message) <= 300
            session.rollback()
            assert _counts(session) == before
            session.rollback()
            return
        event("imported")
        assert ws.id is not None and ws.closed
        expected = {s: len(parsed.get(s, [])) for s in TABLES}
        expected["ratings"] = sum(r["count"] for r in parsed.get("ratings", []))
        assert _rows_of(session, ws) == expected
        assert ws.last_seq == max((e["seq"] for e in parsed.get("events", [])), default=0)
        fas = select(FocusArea.id).where(FocusArea.workshop_id == ws.id)
        scores = session.exec(
            select(Rating.impact, Rating.feasibility).where(col(Rating.focus_area_id).in_(fas))
        ).all()
        assert all(1 <= i <= 5 and 1 <= f <= 5 for i, f in scores)
        again = export_archive(session, ws.id)  # the copy exports, and says the same
        for section in ("participants", "focus_areas", "clusters", "cards", "votes"):
            assert len(again[section]) == expected[section], section
        assert sum(r["count"] for r in again["ratings"]) == expected["ratings"]
        session.rollback()


def _short(value: Any) -> Any:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def test_the_fuzzer_reaches_both_outcomes(engine: Engine, exported: Data) -> None:
    """The mutations are not all fatal: an archive shuffled and retitled
    still imports, so the faithful branch above is exercised too."""
    data = copy.deepcopy(exported)
    for change in [
        ("shuffle", ("cards", 0.5)),
        ("shuffle", ("votes", 0.25)),
        ("set", ("cards", 0, "title", "x" * 140)),
        ("drop", ("ratings", 0)),
        ("context", (1, "where", "")),
    ]:
        apply(data, change)
    with Session(engine, expire_on_commit=False) as session:
        ws = import_archive(session, parse_archive(encode(data)), new_code="FZOK0001")
        assert _rows_of(session, ws)["cards"] == len(data["cards"])
    data["cards"][0]["title"] = "x" * 141
    with pytest.raises(ValueError), Session(engine) as session:
        import_archive(session, parse_archive(encode(data)), new_code="FZNO0001")


def test_schema_bounds_are_read() -> None:
    """``field_values`` sees the bounds the archive models declare."""
    assert _bounds(schema.ArchiveRating, "count") == {"ge": 1, "le": schema.MAX_PARTICIPANTS}
    assert _bounds(schema.ArchiveCard, "title")["max_length"] == schema.TITLE_MAX
