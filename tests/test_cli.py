"""The ``lessons`` command, run in-process with click's CliRunner against the
test database: ``workshop create`` gives the workshop an owner."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.config import get_settings
from app.domain import workshops
from tests import factories as f
from tests.conftest import SECRET

Lessons = Callable[..., Result]


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


def _create(lessons: Lessons, *extra: str) -> Result:
    return lessons(
        "workshop", "create", "--template", "osce-organized-crime-2007", "--title", "CLI", *extra
    )


def _owner_of(session: Session, result: Result) -> Any:
    assert result.exit_code == 0, result.output
    code = json.loads(result.stdout)["code"]
    session.expire_all()
    owner = workshops.get_by_code(session, code).organizer_id
    session.rollback()  # SQLite: every transaction here holds the write lock
    return owner


def test_workshop_create_with_owner_sets_the_owner(session: Session, lessons: Lessons) -> None:
    owner = f.organizer(session, "Owner")
    f.organizer(session, "Other")
    assert _owner_of(session, _create(lessons, "--owner", "Owner")) == owner.id


def test_workshop_create_with_unknown_owner_fails(session: Session, lessons: Lessons) -> None:
    f.organizer(session, "Owner")
    result = _create(lessons, "--owner", "Nobody")
    assert result.exit_code != 0
    assert "No organizer named 'Nobody'" in result.stderr
    assert workshops.workshops_of(session, None) == []


def test_workshop_create_defaults_to_the_only_organizer(session: Session, lessons: Lessons) -> None:
    owner = f.organizer(session, "Owner")
    assert _owner_of(session, _create(lessons)) == owner.id


def test_workshop_create_refuses_to_guess_among_several_organizers(
    session: Session, lessons: Lessons
) -> None:
    f.organizer(session, "Owner")
    f.organizer(session, "Other")
    result = _create(lessons)
    assert result.exit_code != 0
    assert "--owner NAME" in result.stderr and "Other" in result.stderr
    assert workshops.workshops_of(session, None) == []


def test_workshop_create_without_organizers_warns_and_has_no_owner(
    session: Session, lessons: Lessons
) -> None:
    result = _create(lessons)
    assert _owner_of(session, result) is None
    assert "any organizer will be able to manage it" in result.stderr
    json.loads(result.stdout)  # the warning stays out of the JSON


def test_another_organizer_cannot_manage_a_cli_workshop(
    client: TestClient, session: Session, lessons: Lessons
) -> None:
    f.organizer(session, "Owner")
    f.organizer(session, "Other")
    result = _create(lessons, "--owner", "Owner")
    assert result.exit_code == 0, result.output
    code = json.loads(result.stdout)["code"]
    fa_id = client.get(f"/api/v1/workshops/{code}").json()["focus_areas"][0]["id"]

    def token(name: str) -> dict[str, str]:
        r = client.post("/api/v1/login", json={"name": name, "password": f.PASSWORD})
        return f.bearer(r.json()["token"])

    owner, other = token("Owner"), token("Other")
    assert client.get(f"/organizer/w/{code}", headers=other).status_code == 403
    phase = f"/api/v1/workshops/{code}/focus-areas/{fa_id}/phase"
    assert client.put(phase, json={"phase": "collect"}, headers=other).status_code == 403
    assert client.get(f"/organizer/w/{code}", headers=owner).status_code == 200
    assert client.put(phase, json={"phase": "collect"}, headers=owner).status_code == 200


def test_an_ownerless_workshop_can_be_assigned_an_owner_later(
    client: TestClient, session: Session, lessons: Lessons
) -> None:
    result = _create(lessons)  # no organizer yet: no owner
    assert _owner_of(session, result) is None
    code = json.loads(result.stdout)["code"]
    f.organizer(session, "Owner")
    f.organizer(session, "Other")
    session.commit()
    listed = lessons("workshop", "list")
    assert "(no owner: any organizer)" in listed.output

    assert lessons("workshop", "assign", code, "--owner", "Nobody").exit_code != 0
    done = lessons("workshop", "assign", code.lower(), "--owner", "Owner")
    assert done.exit_code == 0, done.output
    assert f"{code} now belongs to Owner." in done.output
    assert f"{code}\t-\topen\tOwner\tCLI" in lessons("workshop", "list").output

    other = client.post("/api/v1/login", json={"name": "Other", "password": f.PASSWORD})
    assert (
        client.get(f"/organizer/w/{code}", headers=f.bearer(other.json()["token"])).status_code
        == 403
    )
    owner = client.post("/api/v1/login", json={"name": "Owner", "password": f.PASSWORD})
    page = client.get(f"/organizer/w/{code}", headers=f.bearer(owner.json()["token"]))
    assert page.status_code == 200 and "workshop.owner_changed" in page.text  # in the audit log
