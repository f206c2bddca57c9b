"""The ``lessons`` command: serve, migrate, manage organizers and workshops,
export, import and purge. Every command is documented in the README (a test
checks that)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from sqlmodel import Session

from app.config import get_settings
from app.db import make_engine


def _engine():  # type: ignore[no-untyped-def]
    return make_engine(get_settings())


@click.group(help="Live lessons-learned workshops.")
def main() -> None:
    pass


@main.command(help="Serve the app (uvicorn).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
def serve(host: str, port: int, workers: int) -> None:
    import os

    import uvicorn

    # Links printed and shown to organizers use the address actually served.
    os.environ.setdefault("LESSONS_PUBLIC_URL", f"http://{host}:{port}")
    get_settings.cache_clear()
    settings = get_settings()
    uvicorn.run(
        "app.asgi:app",
        host=host,
        port=port,
        workers=workers,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval,
        ws_max_size=settings.ws_max_frame_bytes,
        access_log=False,  # URLs can carry link keys; see app/asgi.py for our own log
        log_level=settings.log_level,
        proxy_headers=True,
    )


@main.group(help="Database schema.")
def db() -> None:
    pass


@db.command("upgrade", help="Apply the Alembic migrations up to the newest.")
def db_upgrade() -> None:
    from app.migrate import upgrade

    settings = get_settings()
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.sqlalchemy_url)
    click.echo("Database is up to date.")


@main.group(help="Organizer accounts.")
def organizer() -> None:
    pass


@organizer.command("add", help="Add an organizer; the password is read from a prompt or stdin.")
@click.argument("name")
def organizer_add(name: str) -> None:
    from app.domain import organizers
    from app.domain.errors import DomainError

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    with Session(_engine()) as session:
        try:
            organizers.add_organizer(session, name=name, password=password)
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
        session.commit()
    click.echo(f"Organizer {name!r} added.")


@main.command(help="List the built-in workshop templates.")
def templates() -> None:
    from app.domain.templates import all_templates

    for t in all_templates().values():
        click.echo(f"{t.name}\t{t.title} ({len(t.focus_areas)} focus areas)")


@main.group(help="Workshops.")
def workshop() -> None:
    pass


@workshop.command("create", help="Create a workshop; prints its code and links as JSON.")
@click.option(
    "--template", "template", default=None, help="Template name (see `lessons templates`)."
)
@click.option("--title", required=True)
@click.option(
    "--owner",
    default=None,
    metavar="NAME",
    help="The organizer who manages it (login name); needed when there are several.",
)
def workshop_create(template: str | None, title: str, owner: str | None) -> None:
    from app.domain import workshops
    from app.domain.errors import DomainError
    from app.models import WorkshopCreate
    from app.web.common import links

    settings = get_settings()
    with Session(_engine()) as session:
        organizer_id = _owner_id(session, owner)
        try:
            ws = workshops.create_workshop(
                session,
                data=WorkshopCreate(title=title, template=template),
                organizer_id=organizer_id,
            )
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
        session.commit()
        click.echo(
            json.dumps({"code": ws.code, "title": ws.title, **links(settings, ws)}, indent=2)
        )


def _owner_id(session: Session, name: str | None) -> int | None:
    """The owner's id: the organizer named, else the only one. A workshop
    without an owner can be managed by every organizer (see
    ``owned_workshop``), so that is allowed only while there is nobody to own it."""
    from sqlmodel import select

    from app.domain.organizers import by_name
    from app.models import Organizer

    if name is not None:
        org = by_name(session, name)
        if org is None:
            raise click.ClickException(
                f"No organizer named {name!r}; add one with `lessons organizer add`."
            )
        return org.id
    rows = session.exec(select(Organizer.id, Organizer.name).order_by(Organizer.name).limit(11))
    found = rows.all()
    if len(found) == 1:
        return found[0][0]
    if found:
        listed = ", ".join(n for _, n in found[:10]) + (", ..." if len(found) > 10 else "")
        raise click.ClickException(
            f"There are several organizers ({listed}): choose the owner with --owner NAME."
        )
    click.echo(
        "Warning: there is no organizer yet, so the workshop has no owner and any "
        "organizer will be able to manage it. To avoid that, add an organizer first "
        "(`lessons organizer add`).",
        err=True,
    )
    return None


@workshop.command("assign", help="Give a workshop to an organizer, who alone then manages it.")
@click.argument("code")
@click.option("--owner", required=True, metavar="NAME", help="The organizer's login name.")
def workshop_assign(code: str, owner: str) -> None:
    from app.domain import workshops
    from app.domain.errors import DomainError

    with Session(_engine()) as session:
        organizer_id = _owner_id(session, owner)
        assert organizer_id is not None  # a name was given: found, or an error
        try:
            ws = workshops.get_by_code(session, code)
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
        workshops.set_owner(session, workshop=ws, organizer_id=organizer_id)
        session.commit()
        click.echo(f"{ws.code} now belongs to {owner.strip()}.")


@workshop.command("list", help="List workshops, with their owners.")
def workshop_list() -> None:
    from sqlmodel import select

    from app.domain import workshops
    from app.models import Organizer

    with Session(_engine()) as session:
        names = dict(session.exec(select(Organizer.id, Organizer.name)).all())
        for w in workshops.workshops_of(session, None):
            state = "closed" if w.closed else "open"
            owner = names.get(w.organizer_id, "(no owner: any organizer)")
            click.echo(f"{w.code}\t{w.date or '-'}\t{state}\t{owner}\t{w.title}")


@main.command("export", help="Export a workshop's outcome document.")
@click.argument("code")
@click.option("--format", "fmt", default="docx", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
def export(code: str, fmt: str, output: Path | None) -> None:
    from app import exports
    from app.domain import workshops
    from app.domain.errors import DomainError

    if fmt not in exports.FORMATS:
        raise click.ClickException(f"Unknown format {fmt!r}: {', '.join(exports.FORMATS)}")
    with Session(_engine()) as session:
        try:
            ws = workshops.get_by_code(session, code)
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
        assert ws.id is not None
        file = exports.export_workshop(session, ws.id, fmt)
    target = output or Path(file.filename)
    target.write_bytes(file.content)
    click.echo(f"Wrote {target} ({len(file.content)} bytes).")


class BadArchive(click.ClickException):
    """An archive that ``lessons import`` refuses: one line, exit code 2."""

    exit_code = 2


@main.command("import", help="Restore a JSON archive as a new, closed workshop.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--owner",
    default=None,
    metavar="NAME",
    help="The organizer who manages it (login name); needed when there are several.",
)
def import_(file: Path, owner: str | None) -> None:
    from app.domain import workshops
    from app.exports.archive import describe_error, import_archive, read_archive, validate_archive

    name = file.name if file.name.isprintable() else repr(file.name)  # one line, whatever it is
    # Checked whole before the database is touched; import_archive checks
    # again and writes all of it in one transaction, or nothing.
    try:
        data = read_archive(file)
        validate_archive(data)
    except ValueError as exc:
        raise BadArchive(f"{name}: {describe_error(exc)}") from None
    except OSError as exc:
        raise click.ClickException(f"Cannot read {file}: {exc.strerror or exc}") from None
    with Session(_engine()) as session:
        organizer_id = _owner_id(session, owner)
        try:
            ws = import_archive(
                session, data, new_code=workshops._unique_code(session), organizer_id=organizer_id
            )
        except ValueError as exc:
            raise BadArchive(f"{name}: {describe_error(exc)}") from None
        click.echo(f"Imported as {ws.code}: {ws.title}")


@main.command(help="Delete workshops closed more than N days ago (default: the retention setting).")
@click.option("--days", type=int, default=None)
def purge(days: int | None) -> None:
    from app.domain import workshops

    settings = get_settings()
    days = days if days is not None else settings.retention_days
    if not days:
        raise click.ClickException("Retention is off: set LESSONS_RETENTION_DAYS or pass --days.")
    engine = _engine()
    with Session(engine) as session:
        codes = workshops.purge_closed(session, older_than_days=days)
        gone = session.info.pop("deleted", set())
        session.commit()
    if settings.is_sqlite:
        from app.db import checkpoint_sqlite

        checkpoint_sqlite(engine)
    # Serving processes close the purged workshops' sockets and drop their
    # prepared files at once when told (REDIS_URL); without Redis, their sweep
    # finds out from the database, and they never serve a purged one's file.
    from app.realtime.service import announce_gone

    if gone and settings.redis_url and not announce_gone(settings, gone):
        click.echo("Warning: Redis did not answer; servers notice within 30 seconds.", err=True)
    click.echo(f"Purged {len(codes)} workshop(s).")


if __name__ == "__main__":
    main()
