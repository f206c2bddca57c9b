"""Deleting is total, in every process, whoever deletes and whatever comes next.

Two ``lessons serve`` processes (A and B) share one database (SQLite or
PostgreSQL) and one Redis, as in production with several workers. Two
organizers create workshops through either process; workshops are deleted
from the organizer's page of either process and purged by ``lessons purge``
(a third process), newest and older ones, with new workshops made right
after each (the moment a reused id would bite), and a purged workshop's
archive is imported again. After every step, for every pair of workshops
(dead or alive) nothing of one is honoured for another, through either
process: facilitator and projector links, the cookies those links left in a
browser, participant tokens, sockets (a dead workshop's sockets are closed
at once, in both processes, and no socket ever received another workshop's
text), prepared PDFs and the archive download.

Skipped without PostgreSQL (its variant) unless REQUIRE_POSTGRES=1; Redis is
a private redis-server (skipped without one unless REQUIRE_REDIS=1)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, update
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.models import Workshop, utcnow
from bench._server import (
    PASSWORD,
    PG_URL,
    AppServer,
    create_pg_database,
    drop_pg_database,
    link_key,
    postgres_ok,
)
from tests.exports.readers import pdf_text
from tests.realtime.conftest import RedisServer
from tests.support.live_server import KEEPALIVE, ORGANIZER, ROOT, bin_path

OTHER = "second-organizer"
CLOSE_BOUND = 5.0  # seconds for a dead workshop's sockets to be closed, in every process
LIMITS = {  # this test tries many wrong keys on purpose: the limits are not under test here
    "LESSONS_RATE_FAILED_KEYS_PER_CODE_PER_MINUTE": "100000",
    "LESSONS_RATE_FAILED_JOINS_PER_IP_PER_MINUTE": "100000",
    "LESSONS_RATE_FAILED_JOINS_PER_MINUTE": "100000",
    "LESSONS_RATE_EXPORTS_PER_MINUTE": "100000",
    "LESSONS_RATE_RENDERS_PER_MINUTE": "100000",
    "LESSONS_RATE_JOINS_PER_IP_PER_MINUTE": "100000",
}


# -- sockets, read in a loop of their own ------------------------------------------------


@dataclass(eq=False)
class Sock:
    label: str
    frames: list[str] = field(default_factory=list)
    code: int | None = None  # the close code received; None while open
    closed_at: float | None = None
    ws: ClientConnection | None = None


class Sockets:
    """Websocket clients served by an event loop in a thread, so that the
    scenario can make blocking HTTP calls while every socket keeps reading."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.all: list[Sock] = []

    def open(self, url: str, origin: str, label: str, headers: dict[str, str]) -> Sock:
        sock = Sock(label)
        future: Future[None] = asyncio.run_coroutine_threadsafe(
            self._serve(sock, url, origin, headers), self.loop
        )
        deadline = time.monotonic() + 10
        while not sock.frames:  # the first full board: the socket is attached
            assert sock.code is None, f"{label}: closed at once ({sock.code})"
            if future.done():
                future.result()
            assert time.monotonic() < deadline, f"{label}: no board"
            time.sleep(0.01)
        self.all.append(sock)
        return sock

    def refused(self, url: str, origin: str, headers: dict[str, str]) -> int | None:
        """Open a socket that should be refused: the HTTP status of the refused
        handshake (403), or the close code; None if it was let in."""

        async def attempt() -> int | None:
            try:
                ws = await connect(url, origin=origin, additional_headers=headers, open_timeout=5)  # type: ignore[arg-type]
            except InvalidStatus as exc:
                return exc.response.status_code
            async with ws:
                await ws.send(json.dumps({"type": "hello", "seq": None}))
                try:
                    async with asyncio.timeout(5):
                        while True:
                            await ws.recv()
                except ConnectionClosed as exc:
                    return exc.rcvd.code if exc.rcvd else None
                except TimeoutError:
                    return None  # still open: it was let in

        return asyncio.run_coroutine_threadsafe(attempt(), self.loop).result(15)

    async def _serve(self, sock: Sock, url: str, origin: str, headers: dict[str, str]) -> None:
        ws = await connect(
            url,
            origin=origin,  # type: ignore[arg-type]
            additional_headers=headers,
            open_timeout=5,
            close_timeout=1,
            max_size=None,
        )
        sock.ws = ws
        await ws.send(json.dumps({"type": "hello", "seq": None}))
        try:
            async for frame in ws:
                sock.frames.append(str(frame))
        except ConnectionClosed:
            pass
        sock.code = ws.close_code if ws.close_code is not None else -1
        sock.closed_at = time.monotonic()

    def close(self) -> None:
        async def close_all() -> None:
            for sock in self.all:
                if sock.ws is not None and sock.code is None:
                    await sock.ws.close()

        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# -- one workshop, as everyone who held anything of it -----------------------------------


@dataclass(eq=False)
class Held:
    """A workshop and everything anyone was given for it."""

    name: str
    code: str
    secret: str  # text only this workshop's cards hold
    own: set[str]  # secrets its content may show (an imported archive shows another's)
    fkey: str = ""
    pkey: str = ""
    tokens: dict[str, str] = field(default_factory=dict)  # participant, facilitator
    cookies: dict[str, str] = field(default_factory=dict)  # what its links left in a browser
    sockets: list[Sock] = field(default_factory=list)
    archive: bytes = b""
    dead_at: float | None = None


class Http:
    """Plain requests to one process; no cookie ever kept between them."""

    def __init__(self, server: AppServer) -> None:
        self.server = server
        self.client = httpx.Client(base_url=server.url, timeout=120, limits=KEEPALIVE)

    def __call__(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        cookies: dict[str, str] | None = None,
        **kw: Any,
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        try:
            return self.client.request(method, path, headers=headers, follow_redirects=False, **kw)
        finally:
            self.client.cookies.clear()

    def login(self, name: str) -> str:
        r = self("POST", "/api/v1/login", json={"name": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])


class Scenario:
    def __init__(self, a: AppServer, b: AppServer, database_url: str, tmp: Path) -> None:
        self.servers = {"A": a, "B": b}
        self.http = {"A": Http(a), "B": Http(b)}
        self.database_url = database_url
        self.tmp = tmp
        self.orgs = {
            ORGANIZER: self.http["A"].login(ORGANIZER),
            OTHER: self.http["B"].login(OTHER),
        }
        self.sockets = Sockets()
        self.alive: list[Held] = []
        self.dead: list[Held] = []
        self.revoked: list[Held] = []  # what a workshop gave before its links were rotated
        self.count = 0

    # -- what organizers, facilitators and participants do --------------------------

    def create(self, via: str, organizer: str) -> Held:
        """Always the same steps, so every workshop reaches the same content seq
        (the state a prepared file is kept for) by the time its PDF is made."""
        self.count += 1
        http, org = self.http[via], self.orgs[organizer]
        secret = f"Secret{self.count}-{organizer[:3]}-Zq{self.count * 7919}"
        body = {
            "title": f"Workshop {secret}",
            "focus_areas": [{"title": "Area"}],
            "settings": {"private_writing": False, "blind_voting": False},
        }
        r = http("POST", "/api/v1/workshops", token=org, json=body)
        assert r.status_code == 201, r.text
        made = r.json()
        w = Held(f"W{self.count}", made["code"], secret, {secret})
        w.fkey, w.pkey = link_key(made["facilitator_url"]), link_key(made["projector_url"])
        fa = made["focus_areas"][0]["id"]
        api = f"/api/v1/workshops/{w.code}"
        r = http(
            "POST", f"{api}/participants", json={"display_name": "F", "facilitator_key": w.fkey}
        )
        assert r.status_code == 201, r.text
        w.tokens["facilitator"] = r.json()["token"]
        r = http("POST", f"{api}/participants", json={"display_name": "P", "affiliation": "ODIHR"})
        assert r.status_code == 201, r.text
        w.tokens["participant"] = r.json()["token"]
        r = http(
            "PUT",
            f"{api}/focus-areas/{fa}/phase",
            token=w.tokens["facilitator"],
            json={"phase": "collect"},
        )
        assert r.status_code == 200, r.text
        card = {"focus_area_id": fa, "kind": "lesson", "title": f"Card {secret}"}
        r = http("POST", f"{api}/cards", token=w.tokens["participant"], json=card)
        assert r.status_code == 201, r.text
        # The links in a browser: the cookies they leave, whatever their names.
        r = http("GET", f"/w/{w.code}/facilitate", params={"key": w.fkey})
        assert r.status_code == 303, r.text
        w.cookies.update(r.cookies.items())
        r = http("GET", f"/w/{w.code}/projector", params={"key": w.pkey})
        assert r.status_code == 200, r.text
        w.cookies.update((k, v) for k, v in r.cookies.items() if k != "lw_csrf")
        assert len(w.cookies) == 2, w.cookies
        for name, server in self.servers.items():
            url = f"{server.ws_url}/ws/workshops/{w.code}"
            for role in ("participant", "facilitator"):
                auth = {"Authorization": f"Bearer {w.tokens[role]}"}
                w.sockets.append(
                    self.sockets.open(url, server.url, f"{w.name}/{role}@{name}", auth)
                )
            w.sockets.append(
                self.sockets.open(
                    f"{url}?key={w.pkey}", server.url, f"{w.name}/projector@{name}", {}
                )
            )
            w.sockets.append(
                self.sockets.open(
                    url, server.url, f"{w.name}/cookies@{name}", self._cookie(w.cookies)
                )
            )
        r = http("POST", f"/organizer/w/{w.code}/close", token=org, data={"confirm_close": "yes"})
        assert r.status_code == 303, r.text
        for name in self.servers:  # each process makes (and keeps) its own
            r = self.http[name]("GET", f"/w/{w.code}/export/pdf", token=org)
            assert r.status_code == 200, r.text
            self._only_own(w, pdf_text(r.content), f"{w.name} PDF from {name}")
        r = http("GET", f"/w/{w.code}/export/json", token=org)
        assert r.status_code == 200
        w.archive = r.content
        w.tokens["organizer"] = org
        self.alive.append(w)
        return w

    def delete(self, w: Held, via: str) -> None:
        r = self.http[via](
            "POST",
            f"/organizer/w/{w.code}/delete",
            token=w.tokens["organizer"],
            data={"confirm": w.code},
        )
        assert r.status_code == 303, r.text
        self._died(w)

    def purge(self, *doomed: Held) -> None:
        """``lessons purge`` in a process of its own, with the servers' settings."""
        engine = create_engine(self.database_url)
        with engine.begin() as conn:
            for w in doomed:
                conn.execute(
                    update(Workshop)
                    .where(Workshop.code == w.code)  # type: ignore[arg-type]
                    .values(closed_at=utcnow() - timedelta(days=3))
                )
        engine.dispose()
        out = self.cli("purge", "--days", "1")
        assert f"Purged {len(doomed)} workshop(s)." in out, out
        for w in doomed:
            self._died(w)

    def restore(self, w: Held) -> Held:
        """``lessons import`` of a dead workshop's archive: a new workshop with its content."""
        path = self.tmp / f"{w.name}.json"
        path.write_bytes(w.archive)
        out = self.cli("import", str(path), "--owner", ORGANIZER)
        code = out.split("Imported as ", 1)[1].split(":", 1)[0].strip()
        self.count += 1
        back = Held(f"W{self.count}(archive of {w.name})", code, f"<none {self.count}>", {w.secret})
        back.tokens["organizer"] = self.orgs[ORGANIZER]
        self.alive.append(back)
        return back

    def rotate(self, w: Held, via: str) -> Held:
        """New facilitator and projector links for ``w``, made through one process:
        every socket of ``w`` is closed (1012, to reconnect) in both, and what the
        old links gave (keys, the cookies they left, the facilitator's seat) is
        honoured nowhere, ``w`` included."""
        org = w.tokens["organizer"]
        r = self.http[via](
            "POST", f"/organizer/w/{w.code}/rotate", token=org, data={"what": "keys"}
        )
        assert r.status_code == 303, r.text
        old = Held(f"{w.name} before rotation", w.code, w.secret, set(w.own))
        old.fkey, old.pkey, old.cookies = w.fkey, w.pkey, dict(w.cookies)
        old.tokens = {"facilitator": w.tokens.pop("facilitator")}
        old.sockets, w.sockets = w.sockets, []
        old.dead_at = time.monotonic()
        page = self.http[via]("GET", f"/organizer/w/{w.code}", token=org).text
        w.fkey = link_key(re.search(r'href="([^"]*/facilitate\?key=[^"]+)"', page)[1])  # type: ignore[index]
        w.pkey = link_key(re.search(r'href="([^"]*/projector\?key=[^"]+)"', page)[1])  # type: ignore[index]
        assert (w.fkey, w.pkey) != (old.fkey, old.pkey)
        w.cookies = {}
        self.revoked.append(old)
        return old

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [bin_path("lessons"), *args],
            env=self.servers["A"].env,
            cwd=ROOT,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        return done.stdout.decode()

    def _died(self, w: Held) -> None:
        w.dead_at = time.monotonic()
        self.alive.remove(w)
        self.dead.append(w)

    @staticmethod
    def _cookie(jar: dict[str, str]) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}

    def _only_own(self, w: Held, text: str, what: str) -> None:
        everyone = self.alive + self.dead + ([w] if w not in self.alive else [])
        foreign = {x.secret for x in everyone} - w.own
        leaked = sorted(s for s in foreign if s in text)
        assert not leaked, f"{what} shows {leaked}"

    # -- what must hold after every step ----------------------------------------------

    def check(self, step: str) -> None:
        everyone = self.alive + self.dead + self.revoked
        for w, code in [(w, 4404) for w in self.dead] + [(w, 1012) for w in self.revoked]:
            for sock in w.sockets:
                deadline = (w.dead_at or 0) + CLOSE_BOUND
                while sock.code is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert sock.code is not None, f"{step}: {sock.label} still open"
                assert sock.code == code, f"{step}: {sock.label} closed with {sock.code}"
        for w in everyone:
            for sock in w.sockets:
                leaked = sorted(
                    x.secret
                    for x in everyone
                    if x.secret not in w.own and any(x.secret in frame for frame in sock.frames)
                )
                assert not leaked, f"{step}: {sock.label} received {leaked}"
        for w in self.alive:
            for sock in w.sockets:
                assert sock.code is None, f"{step}: {sock.label} closed ({sock.code})"
            for name, http in self.http.items():
                for other in everyone:
                    if other is not w:
                        self._refused(step, http, name, other, w)
                r = http("GET", f"/w/{w.code}/export/pdf", token=w.tokens["organizer"])
                assert r.status_code == 200, f"{step}: {r.text}"
                self._only_own(w, pdf_text(r.content), f"{step}: {w.name} PDF from {name}")
                r = http("GET", f"/w/{w.code}/export/md", token=w.tokens["organizer"])
                assert r.status_code == 200
                self._only_own(w, r.text, f"{step}: {w.name} Markdown from {name}")

    def _refused(self, step: str, http: Http, via: str, other: Held, w: Held) -> None:
        """Nothing ``other`` gave anyone opens ``w``."""
        say = f"{step}: {other.name}'s {{}} on {w.name} via {via}"
        api = f"/api/v1/workshops/{w.code}"
        if other.fkey:
            r = http(
                "POST",
                f"{api}/participants",
                json={"display_name": "G", "facilitator_key": other.fkey},
            )
            assert r.status_code == 403, say.format("facilitator key") + f": {r.status_code}"
            r = http("GET", f"/w/{w.code}/facilitate", params={"key": other.fkey})
            assert r.status_code == 403, say.format("facilitator link") + f": {r.status_code}"
            r = http("GET", f"/w/{w.code}/projector", params={"key": other.pkey})
            assert r.status_code == 403, say.format("projector link") + f": {r.status_code}"
        if other.cookies:
            jar = other.cookies
            assert http("GET", f"/w/{w.code}/projector", cookies=jar).status_code == 403, (
                say.format("projector cookie")
            )
            assert http("GET", f"/w/{w.code}/console", cookies=jar).status_code == 403, say.format(
                "facilitator cookie"
            )
            r = http("GET", f"{api}/me", cookies=jar)
            assert r.status_code in (401, 403), say.format("cookies") + f": {r.status_code}"
            r = http("GET", f"/w/{w.code}/export/json", cookies=jar)
            assert r.status_code in (401, 403), (
                say.format("cookies (archive)") + f": {r.status_code}"
            )
        for role in ("participant", "facilitator"):
            if role in other.tokens:
                token = other.tokens[role]
                r = http("GET", f"{api}/me", token=token)
                assert r.status_code in (401, 403), say.format(role + " token")
                r = http("GET", f"/w/{w.code}/export/json", token=token)
                assert r.status_code in (401, 403), say.format(role + " token (archive)")
        if other.fkey and via == "A":  # sockets: one process is enough per pair and step
            server = http.server
            url = f"{server.ws_url}/ws/workshops/{w.code}"
            attempts = [
                {"Authorization": f"Bearer {t}"}
                for role, t in other.tokens.items()
                if role in ("participant", "facilitator")
            ]
            attempts += [self._cookie(other.cookies)] if other.cookies else []
            for headers in attempts:
                code = self.sockets.refused(url, server.url, headers)
                assert code in (403, 4401), say.format("socket credentials") + f": {code}"
            code = self.sockets.refused(f"{url}?key={other.pkey}", server.url, {})
            assert code in (403, 4401), say.format("socket projector key") + f": {code}"


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def private_redis() -> Iterator[str]:
    server = RedisServer()
    yield server.url
    server.kill()


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    if not postgres_ok(PG_URL):
        import os

        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(
                f"PostgreSQL is required (REQUIRE_POSTGRES=1) but not reachable at {PG_URL}"
            )
        pytest.skip("PostgreSQL not reachable")
    url = create_pg_database(PG_URL)
    yield url
    drop_pg_database(url, PG_URL)


def test_nothing_of_one_workshop_is_ever_honoured_for_another(
    shared_database: str, private_redis: str, tmp_path: Path
) -> None:
    a = AppServer(tmp_path / "a", database_url=shared_database, redis_url=private_redis, env=LIMITS)
    b = AppServer(tmp_path / "b", database_url=shared_database, redis_url=private_redis, env=LIMITS)
    a.prepare()
    a._lessons("organizer", "add", OTHER, timeout=120, stdin=PASSWORD.encode())
    a.start()
    b.start()
    s: Scenario | None = None
    try:
        s = Scenario(a, b, shared_database, tmp_path)
        w1 = s.create("A", ORGANIZER)
        s.check("W1 made on A")
        w2 = s.create("B", OTHER)
        s.check("W2 made on B")
        s.delete(w2, "A")  # the newest, deleted through the other process
        s.check("W2 deleted on A")
        w3 = s.create("B", ORGANIZER)  # right after: where a reused id would land
        s.check("W3 made on B after W2's deletion")
        s.purge(w1)  # an older one, by another process
        s.check("W1 purged")
        w4 = s.create("A", OTHER)
        s.check("W4 made on A after W1's purge")
        s.purge(w4)  # the newest, by another process: A and B hold its PDF
        s.check("W4 purged")
        w5 = s.create("B", ORGANIZER)  # same content seq as W4 when its PDF was made
        s.check("W5 made on B after W4's purge")
        s.restore(w4)  # W4's archive comes back as a new workshop
        s.check("W4's archive imported")
        s.delete(w3, "B")  # an older one, through the process that made it
        s.check("W3 deleted on B")
        w6 = s.create("A", OTHER)
        s.check("W6 made on A")
        s.delete(w6, "B")  # the newest, made on A, deleted on B
        s.check("W6 deleted on B")
        w7 = s.create("A", ORGANIZER)
        s.check("W7 made on A after W6's deletion")
        s.delete(w5, "A")
        s.check("W5 deleted on A")
        s.rotate(w7, "B")  # W7's sockets are on A and B; its links change through B
        s.check("W7's links rotated on B")
    finally:
        if s is not None:
            s.sockets.close()
        a.stop()
        b.stop()
    assert not a.errors() and not b.errors(), a.log_tail() + b.log_tail()
