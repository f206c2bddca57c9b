"""Identities never come back, and nothing secret rests on an id alone.

A deleted workshop's id is never given to another row (SQLite AUTOINCREMENT,
PostgreSQL sequences), nor are the ids of its cards, participants, events...
And even if an id did come back (a database restored from a backup, a
sequence reset by hand: ``restored`` below forces it), nothing of the
deleted workshop is honoured for the new one: its facilitator and projector
links, its cookies, its prepared PDF. The same across processes, with
sockets and ``lessons purge``: test_identities_live.py."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select
from starlette.websockets import WebSocketDisconnect

from app.domain import organizers, votes, workshops
from app.exports.prepared import PreparedExports
from app.models import Organizer, Participant, Workshop, utcnow
from app.realtime.protocol import CLOSE_GONE
from app.web.common import links
from app.web.deps import participant_cookie, projector_cookie
from tests import factories as f
from tests.conftest import SECRET
from tests.exports.readers import pdf_text

from .world import World, leave, seed


def _ids(session: Session) -> dict[str, set[int]]:
    return {
        t.name: set(session.execute(select(t.c.id)).scalars())
        for t in SQLModel.metadata.sorted_tables
        if "id" in t.c
    }


def _populate(session: Session, name: str) -> tuple[World, str]:
    """A workshop with a row in every table: organizer, logins, focus areas,
    participants, cards, clusters, votes, ratings, events."""
    w = seed(session, SECRET)
    org = organizers.add_organizer(session, name=f"Org {name}", password=f.PASSWORD)
    token = organizers.start_session(session, organizer=org)
    participant = session.get(Participant, w.participant_id)
    assert participant is not None
    votes.rate(
        session,
        workshop=w.ws,
        participant=participant,
        card_id=w.vcard.id or 0,
        impact=4,
        feasibility=2,
    )
    session.commit()
    return w, token


def _next_id_comes_back(session: Session, table: str, value: int) -> None:
    """Make the next row of ``table`` get ``value`` again, the way a restored
    backup or a sequence reset by hand would."""
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        known = session.execute(
            text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
        ).first()
        if known:
            session.execute(
                text("UPDATE sqlite_sequence SET seq = :v WHERE name = :t"),
                {"v": value - 1, "t": table},
            )
    else:
        session.execute(
            text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :v, false)"),
            {"t": table, "v": value},
        )
    session.commit()


def test_no_id_is_ever_given_again(session: Session) -> None:
    """Delete the newest workshop (and the newest organizer and logins), make
    another: every new row of every table has an id above all the old ones."""
    w, token = _populate(session, "first")
    before = _ids(session)
    assert all(before.values()), {t: ids for t, ids in before.items() if not ids}
    newest_org = max(before["organizer"])
    workshops.delete_workshop(session, workshop=session.get(Workshop, w.wid))  # type: ignore[arg-type]
    organizers.end_session(session, token=token)
    session.execute(text("DELETE FROM authsession WHERE organizer_id = :o"), {"o": newest_org})
    session.delete(session.get(Organizer, newest_org))
    session.commit()
    left = _ids(session)
    assert left["workshop"] == before["workshop"] - {w.wid}
    _populate(session, "second")
    after = _ids(session)
    for table, ids in after.items():
        new = ids - left[table]
        assert new, f"no new {table} row"
        assert min(new) > max(before[table]), f"{table}: an id came back ({sorted(new)})"


@pytest.mark.parametrize("restored", [False, True], ids=["fresh", "id-restored"])
def test_a_deleted_workshops_links_and_cookies_open_no_other(
    client: TestClient, session: Session, settings: Any, restored: bool
) -> None:
    old = seed(session, SECRET)
    old_links = links(settings, old.ws)
    old_fkey, old_pkey = old.keys["facilitator"], old.keys["projector"]
    assert old_fkey in old_links["facilitator_url"] and old_pkey in old_links["projector_url"]
    old_cookies = {
        participant_cookie(old.ws): old.tokens["facilitator"],
        projector_cookie(old.ws): old_pkey,
    }
    client.cookies.clear()
    r = client.post(
        f"/organizer/w/{old.code}/delete",
        data={"confirm": old.code},
        headers=old.headers("organizer"),
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    session.expire_all()
    if restored:
        _next_id_comes_back(session, "workshop", old.wid)
    new = seed(session, SECRET)  # the next workshop, as any organizer makes it
    if restored:
        assert new.wid == old.wid
    client.cookies.clear()
    api = f"/api/v1/workshops/{new.code}"
    # The old facilitator link neither seats a facilitator nor opens the console.
    r = client.post(
        f"{api}/participants", json={"display_name": "Ghost", "facilitator_key": old_fkey}
    )
    assert r.status_code == 403, r.text
    r = client.get(f"/w/{new.code}/facilitate", params={"key": old_fkey}, follow_redirects=False)
    assert r.status_code == 403
    # The old projector link, by URL or by the cookie it left.
    assert client.get(f"/w/{new.code}/projector", params={"key": old_pkey}).status_code == 403
    for name, value in old_cookies.items():
        client.cookies.clear()
        client.cookies.set(name, value)
        assert client.get(f"/w/{new.code}/projector").status_code == 403
        assert client.get(f"{api}/me").status_code in (401, 403)
        assert client.get(f"{api}/cards").status_code in (401, 403)
        assert client.get(f"/w/{new.code}/export/json").status_code in (401, 403)
    client.cookies.clear()
    # The new workshop's own credentials are other ones, cookie names included.
    new_links = links(settings, new.ws)
    assert old_fkey not in new_links["facilitator_url"]
    assert old_pkey not in new_links["projector_url"]
    assert participant_cookie(new.ws) not in old_cookies
    assert projector_cookie(new.ws) not in old_cookies


def _closed(session: Session, secret: str) -> Workshop:
    """Always the same steps, so two such workshops reach the same content seq."""
    ws = f.workshop(session, private_writing=False)
    ws.title = f"Outcome {secret}"
    session.add(ws)
    session.commit()
    p, _ = f.join(session, ws, "Pat")
    fa = f.set_phase(session, ws, 0, "collect")
    f.card(session, ws, p, fa.id, title=f"Card {secret}")
    workshops.close_workshop(session, workshop=ws)
    session.commit()
    return ws


@pytest.mark.parametrize("restored", [False, True], ids=["fresh", "id-restored"])
def test_a_purged_workshops_prepared_pdf_is_served_for_no_other(
    engine: Engine, session: Session, restored: bool
) -> None:
    """Finding 2: the serving process is never told of a purge made by another
    process; the next workshop (same content seq) must get its own PDF."""
    cache = PreparedExports(engine)
    try:
        first = _closed(session, "Confidential-1f4e")
        assert first.id is not None
        first_id, first_code, seq = first.id, first.code, first.last_seq
        made = cache.export(session, first_id, "pdf")
        session.commit()  # ends the read (on SQLite the purge below needs the write lock)
        assert "Confidential-1f4e" in pdf_text(made.content)
        # ``lessons purge``, in another process: nothing tells ``cache``.
        with Session(engine) as other:
            other.execute(
                update(Workshop)
                .where(col(Workshop.id) == first_id)
                .values(closed_at=utcnow() - timedelta(days=3))
            )
            assert workshops.purge_closed(other, older_than_days=1) == [first_code]
            other.commit()
        session.expunge_all()
        with pytest.raises(LookupError):
            cache.export(session, first_id, "pdf")
        session.commit()
        if restored:
            _next_id_comes_back(session, "workshop", first_id)
        second = _closed(session, "Another-organizer-9c2d")
        assert second.last_seq == seq
        if restored:
            assert second.id == first_id
        assert second.id is not None
        served = cache.export(session, second.id, "pdf")
        session.commit()
        shown = pdf_text(served.content)
        assert "Confidential-1f4e" not in shown
        assert "Another-organizer-9c2d" in shown
    finally:
        cache.close()


def test_the_schema_says_autoincrement_on_sqlite(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL sequences never go back")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all()
    tables = {name: sql for name, sql in rows}
    for table in SQLModel.metadata.sorted_tables:
        if "id" in table.c:
            assert "AUTOINCREMENT" in tables[table.name], table.name
    # And the foreign keys still point at the tables they did.
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
        refs = conn.execute(text("PRAGMA foreign_key_list(card)")).all()
    assert {r[2] for r in refs} == {"workshop", "focus_area", "participant", "cluster"}


# -- one process, no Redis: its sockets ---------------------------------------------------

ORIGIN = {"Origin": "http://testserver"}
HELLO = '{"type": "hello", "seq": null}'


def _sockets(client: TestClient) -> int:
    hub = client.app.state.realtime.hub  # type: ignore[attr-defined]
    return sum(hub.stats()["sockets"].values())


def _until_closed(client: TestClient, sock: Any, timeout: float = 5) -> int:
    """The close code the hub sent, once it let the socket go (never blocks on an
    open socket: that is what a failure looks like here)."""
    deadline = time.monotonic() + timeout
    while _sockets(client):
        assert time.monotonic() < deadline, "the workshop's socket is still open"
        time.sleep(0.01)
    with pytest.raises(WebSocketDisconnect) as closed:
        for _ in range(50):  # frames queued before the close come first
            sock.receive_text()
    return closed.value.code


def _connect(client: TestClient, w: World, role: str) -> Any:
    url = f"/ws/workshops/{w.code}"
    if role == "projector":
        return client.websocket_connect(f"{url}?key={w.keys['projector']}", headers=ORIGIN)
    return client.websocket_connect(url, headers={**w.headers(role), **ORIGIN})


def _board(sock: Any) -> None:
    sock.send_text(HELLO)
    assert "hx-swap-oob" in sock.receive_text()


@pytest.mark.parametrize("role", ["participant", "facilitator", "projector"])
def test_deleting_closes_the_workshops_sockets(
    client: TestClient, session: Session, role: str
) -> None:
    w = seed(session, SECRET)
    other = seed(session, SECRET)
    with _connect(client, w, role) as sock, _connect(client, other, role) as kept:
        _board(sock)
        _board(kept)
        client.cookies.clear()
        r = client.post(
            f"/organizer/w/{w.code}/delete",
            data={"confirm": w.code},
            headers=w.headers("organizer"),
            follow_redirects=False,
        )
        assert r.status_code == 303
        deadline = time.monotonic() + 5
        while _sockets(client) > 1:
            assert time.monotonic() < deadline, "the deleted workshop's socket is still open"
            time.sleep(0.01)
        with pytest.raises(WebSocketDisconnect) as closed:
            for _ in range(50):
                sock.receive_text()
        assert closed.value.code == CLOSE_GONE
        assert _sockets(client) == 1  # the other workshop's socket stays
        leave(kept, client.app)


@pytest.mark.parametrize("how", ["render", "sweep"])
def test_a_workshop_deleted_by_another_process_closes_its_sockets_here(
    client: TestClient, session: Session, engine: Engine, how: str
) -> None:
    """``lessons purge`` without Redis (or a "gone" that Redis lost): nothing
    tells this process. The next render finds the workshop gone (here: a
    change notice arriving late; also after a Redis outage, when every board
    is rendered afresh), and so does the sweep, every ``sweep_interval`` s."""
    w = seed(session, SECRET)
    with _connect(client, w, "participant") as sock:
        _board(sock)
        with Session(engine) as elsewhere:
            ws = elsewhere.get(Workshop, w.wid)
            assert ws is not None
            workshops.delete_workshop(elsewhere, workshop=ws)
            elsewhere.commit()
        realtime = client.app.state.realtime  # type: ignore[attr-defined]
        if how == "render":
            client.portal.call(realtime.hub.notify, w.uid, 10_000)  # type: ignore[union-attr]
        else:
            assert client.portal.call(realtime.sweep) == 1  # type: ignore[union-attr]
        assert _until_closed(client, sock) == CLOSE_GONE


def test_deleting_forgets_the_card_texts_kept_for_suggestions(
    client: TestClient, session: Session
) -> None:
    import numpy as np

    from app.suggest import embedding

    w = seed(session, SECRET)
    with embedding._cache_lock:
        embedding._cache["joint investigation teams"] = np.zeros(embedding.DIM, np.float32)
    client.cookies.clear()
    r = client.post(
        f"/organizer/w/{w.code}/delete",
        data={"confirm": w.code},
        headers=w.headers("organizer"),
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "joint investigation teams" not in embedding._cache
