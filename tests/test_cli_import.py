"""``lessons import``: an imported workshop gets an owner by the rule of
``workshop create``, and a bad archive is refused in one line with exit
code 2, no traceback and nothing written."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlmodel import Session, func, select

from app.config import get_settings
from app.domain import workshops
from app.exports.archive import export_archive
from app.models import Card, Workshop
from tests import factories as f
from tests.conftest import SECRET
from tests.exports import factory

Lessons = Callable[..., Result]
IMPORTED = re.compile(r"^Imported as (\S+): ")


@pytest.fixture
def lessons(database_url: str, tmp_path: Path) -> Iterator[Lessons]:
    """``lessons(*args)``: the CLI on the test database."""
    from app.cli import main

    env = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "LESSONS_DATA_DIR": str(tmp_path),
        "LESSONS_PUBLIC_URL": "http://testserver",
    }

    def run(*args: str) -> Result:
        get_settings.cache_clear()
        return CliRunner().invoke(main, list(args), env=env)

    yield run
    get_settings.cache_clear()


@pytest.fixture
def archive(session: Session) -> dict[str, Any]:
    ws = factory.sample_workshop(session)
    assert ws.id is not None
    data = export_archive(session, ws.id)
    session.rollback()  # SQLite: every transaction here holds the write lock
    return data


def _write(tmp_path: Path, data: Any, name: str = "archive.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return str(path)


def _workshops(session: Session) -> int:
    session.expire_all()
    n = session.exec(select(func.count()).select_from(Workshop)).one()
    session.rollback()
    return int(n)


def _owner_of(session: Session, result: Result) -> Any:
    assert result.exit_code == 0, result.output
    match = IMPORTED.match(result.stdout)
    assert match, result.stdout
    session.expire_all()
    owner = workshops.get_by_code(session, match.group(1)).organizer_id
    session.rollback()
    return owner


def _refused(session: Session, result: Result, before: int) -> str:
    """Exit code 2, one line on stderr that starts with "Error:", no
    traceback, nothing imported."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    assert _workshops(session) == before
    return lines[0]


# --- the owner, as with ``workshop create`` ----------------------------------


def test_import_with_owner_sets_the_owner(
    session: Session, lessons: Lessons, archive: dict[str, Any], tmp_path: Path
) -> None:
    owner = f.organizer(session, "Owner")
    f.organizer(session, "Other")
    result = lessons("import", _write(tmp_path, archive), "--owner", "Owner")
    assert _owner_of(session, result) == owner.id


def test_import_defaults_to_the_only_organizer(
    session: Session, lessons: Lessons, archive: dict[str, Any], tmp_path: Path
) -> None:
    owner = f.organizer(session, "Owner")
    assert _owner_of(session, lessons("import", _write(tmp_path, archive))) == owner.id


def test_import_refuses_to_guess_among_several_organizers(
    session: Session, lessons: Lessons, archive: dict[str, Any], tmp_path: Path
) -> None:
    f.organizer(session, "Owner")
    f.organizer(session, "Other")
    before = _workshops(session)
    result = lessons("import", _write(tmp_path, archive))
    assert result.exit_code != 0
    assert "--owner NAME" in result.stderr and "Other" in result.stderr
    assert _workshops(session) == before


def test_import_with_unknown_owner_fails(
    session: Session, lessons: Lessons, archive: dict[str, Any], tmp_path: Path
) -> None:
    f.organizer(session, "Owner")
    before = _workshops(session)
    result = lessons("import", _write(tmp_path, archive), "--owner", "Nobody")
    assert result.exit_code != 0
    assert "No organizer named 'Nobody'" in result.stderr
    assert _workshops(session) == before


def test_import_without_organizers_warns_and_has_no_owner(
    session: Session, lessons: Lessons, archive: dict[str, Any], tmp_path: Path
) -> None:
    result = lessons("import", _write(tmp_path, archive))
    assert _owner_of(session, result) is None
    assert "any organizer will be able to manage it" in result.stderr


# --- a bad archive: one line, exit code 2 ----------------------------------------


def test_an_unknown_reference_is_named_in_one_line(
    session: Session, lessons: Lessons, archive: dict[str, Any], tmp_path: Path
) -> None:
    f.organizer(session, "Owner")
    archive["votes"][3]["card"] = 999
    before = _workshops(session)
    line = _refused(session, lessons("import", _write(tmp_path, archive)), before)
    assert line == "Error: archive.json: votes[3].card: no card with ref 999"


def test_an_inflated_rating_count_is_refused(
    session: Session, lessons: Lessons, tmp_path: Path
) -> None:
    f.organizer(session, "Owner")
    tiny = (
        '{"schema_version":1,"workshop":{"title":"x"},"focus_areas":[{"ref":1,"title":"f"}],'
        '"cards":[{"ref":1,"focus_area":1,"kind":"tool","title":"t"}],"ratings":[{"card":1,'
        '"count":300000,"impact_sum":300000,"feasibility_sum":300000}]}'
    )
    path = tmp_path / "tiny.json"
    path.write_text(tiny)
    before = _workshops(session)
    line = _refused(session, lessons("import", str(path)), before)
    assert "ratings[0].count" in line
    session.expire_all()
    assert session.exec(select(func.count()).select_from(Card)).one() == 0
    session.rollback()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested more than"),
        (b'{"schema_version": 1, "workshop": {"title": "x"}, "a": ' + b"[" * 5000, "nested"),
        (b"not json", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[]", "an archive is a JSON object"),
        (b'{"schema_version": 2, "workshop": {"title": "x"}}', "schema_version"),
    ],
)
def test_a_file_that_is_no_archive_is_refused(
    session: Session, lessons: Lessons, tmp_path: Path, content: bytes, message: str
) -> None:
    f.organizer(session, "Owner")
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    before = _workshops(session)
    assert message in _refused(session, lessons("import", str(path)), before)


def test_unknown_context_keys_are_refused(
    session: Session, lessons: Lessons, archive: dict[str, Any], tmp_path: Path
) -> None:
    f.organizer(session, "Owner")
    archive["cards"][0]["context"] = {"<script>": "x" * 2_000_000}
    before = _workshops(session)
    line = _refused(session, lessons("import", _write(tmp_path, archive)), before)
    assert "cards[0].context: unknown key '<script>'" in line


def test_a_file_over_the_size_limit_is_refused(
    session: Session,
    lessons: Lessons,
    archive: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.exports import archive as module

    f.organizer(session, "Owner")
    monkeypatch.setattr(module, "MAX_ARCHIVE_BYTES", 1000)
    before = _workshops(session)
    line = _refused(session, lessons("import", _write(tmp_path, archive)), before)
    assert "larger than 1,000 bytes" in line


def test_a_good_archive_still_imports(
    session: Session, lessons: Lessons, archive: dict[str, Any], tmp_path: Path
) -> None:
    f.organizer(session, "Owner")
    result = lessons("import", _write(tmp_path, archive))
    assert result.exit_code == 0, result.output
    assert IMPORTED.match(result.stdout)
    assert result.stdout.endswith(f"{archive['workshop']['title']}\n")
