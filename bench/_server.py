"""What the load generators and the live-app tests share about the app itself:
``lessons serve`` in a subprocess with a random secret (tests/support/live_server.py
starts it), a small JSON API client, a workshop built for load, throwaway
PostgreSQL databases, and reads of the app's database (its truth, to compare the
frames with). Reading frames is in bench/_frames.py, the websocket client pool in
bench/_pool.py, the figures in bench/_measure.py."""

from __future__ import annotations

import os
import re
import secrets
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.support.live_server import KEEPALIVE, ORGANIZER, ServerProcess

# New per run: the rate-limit budgets in a shared Redis are per deployment secret.
SECRET = "bench-secret-" + secrets.token_hex(24)
PASSWORD = "bench organizer password, long enough"
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class AppServer(ServerProcess):
    """``lessons serve`` (one worker) on a port of its own, with its own data
    directory; SQLite unless a database URL is given. It can be stopped
    (SIGTERM) and started again on the same port and data."""

    organizer_timeout = 60.0

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        database_url: str | None = None,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            data_dir,
            secret=SECRET,
            password=PASSWORD,
            port=port,
            database_url=database_url,
            redis_url=redis_url,
            env=env,
        )
        self.log_path = self.data_dir / f"server-{self.port}.log"

    def errors(self) -> list[str]:
        """Tracebacks and ERROR lines from the server log."""
        lines = self.log_text().splitlines()
        return [ln for ln in lines if "Traceback" in ln or ln.startswith("ERROR")]

    def exceptions(self) -> dict[str, int]:
        """The exceptions in the server log's tracebacks, counted (first 100 characters)."""
        found = re.findall(
            r"^([A-Za-z_][\w.]*(?:Error|Exception|Timeout)\b[^\n]{0,80})", self.log_text(), re.M
        )
        return dict(Counter(found).most_common(3))


class ApiError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
        self.response = response


class Api:
    """The JSON API v1, synchronous; every call raises ApiError on 4xx/5xx."""

    def __init__(self, base: str, timeout: float = 30) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=timeout, limits=KEEPALIVE)

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self.http.request(method, "/api/v1" + path, headers=headers, **kw)
        if r.status_code >= 400:
            raise ApiError(r)
        return r.json() if r.content else None

    def login(self) -> str:
        return str(
            self.call("POST", "/login", json={"name": ORGANIZER, "password": PASSWORD})["token"]
        )

    def create_workshop(
        self, token: str, title: str, areas: list[str], **settings: Any
    ) -> dict[str, Any]:
        body = {
            "title": title,
            "focus_areas": [{"title": a} for a in areas],
            "settings": settings,
        }
        created: dict[str, Any] = self.call("POST", "/workshops", token, json=body)
        created["facilitator_key"] = link_key(created["facilitator_url"])
        created["projector_key"] = link_key(created["projector_url"])
        created["affiliations"] = self.call("GET", f"/workshops/{created['code']}")["affiliations"]
        return created

    def join(
        self, code: str, name: str, affiliation: str = "", facilitator_key: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"display_name": name, "affiliation": affiliation}
        if facilitator_key:
            body["facilitator_key"] = facilitator_key
        joined: dict[str, Any] = self.call("POST", f"/workshops/{code}/participants", json=body)
        return joined

    def card(
        self,
        code: str,
        token: str,
        fa_id: int,
        title: str,
        body: str = "",
        client_id: str | None = None,
        kind: str = "lesson",
    ) -> dict[str, Any]:
        data = {"focus_area_id": fa_id, "kind": kind, "title": title, "body": body}
        if client_id:
            data["client_id"] = client_id
        card: dict[str, Any] = self.call("POST", f"/workshops/{code}/cards", token, json=data)
        return card

    def phase(self, code: str, token: str, fa_id: int, phase: str) -> Any:
        return self.call(
            "PUT", f"/workshops/{code}/focus-areas/{fa_id}/phase", token, json={"phase": phase}
        )

    def vote(self, code: str, token: str, card_id: int) -> Any:
        return self.call("POST", f"/workshops/{code}/cards/{card_id}/votes", token)

    def reveal(self, code: str, token: str, fa_id: int) -> Any:
        return self.call("POST", f"/workshops/{code}/focus-areas/{fa_id}/reveal", token)

    def close(self) -> None:
        self.http.close()


def link_key(url: str) -> str:
    return parse_qs(urlsplit(url).query)["key"][0]


BODY = (
    "What worked: joint training of police and prosecutors, with a shared case file "
    "and a mentor on each side."
)


def make_workshop(
    api: Api,
    *,
    collect_areas: int,
    vote_cards: int,
    participants: int,
    prefill: int = 0,
    **settings: Any,
) -> dict[str, Any]:
    """A workshop for load tests: `collect_areas` focus areas in `collect`, then (with
    vote_cards) one in `vote` holding that many cards; private writing and blind voting
    off, 50 dots per person. Returns the API's answer plus the people and ids."""
    token = api.login()
    titles = [f"Collect {i + 1}" for i in range(collect_areas)]
    titles += ["Vote"] if vote_cards else []
    options = {
        "private_writing": False,
        "blind_voting": False,
        "vote_budget": 50,
        "vote_cap": 50,
        **settings,
    }
    w = api.create_workshop(token, "Load test", titles, **options)
    code = w["code"]
    fac = api.join(code, "Facilitator", facilitator_key=w["facilitator_key"])
    aff = w["affiliations"][0] if w["affiliations"] else ""
    people = [api.join(code, f"Participant {i}", aff) for i in range(participants)]
    ids = [fa["id"] for fa in w["focus_areas"]]
    collect, vote_fa = ids[:collect_areas], (ids[collect_areas] if vote_cards else None)
    for fa in collect:
        api.phase(code, fac["token"], fa, "collect")
    for i in range(prefill):
        p = people[i % len(people)]
        api.card(code, p["token"], collect[i % len(collect)], f"prefill {i}", BODY)
    card_ids: list[int] = []
    if vote_fa is not None:
        api.phase(code, fac["token"], vote_fa, "collect")
        for i in range(vote_cards):
            p = people[i % len(people)]
            card_ids.append(api.card(code, p["token"], vote_fa, f"vote card {i}", BODY)["id"])
        api.phase(code, fac["token"], vote_fa, "vote")
    return {
        **w,
        "fac": fac,
        "people": people,
        "affiliation": aff,
        "fa_ids": ids,
        "collect": collect,
        "vote_fa": vote_fa,
        "vote_cards": card_ids,
        "board_ids": [f"fa-board-{i}" for i in ids],
    }


# -- databases ------------------------------------------------------------------------


def postgres_ok(url: str = PG_URL) -> bool:
    from sqlalchemy import create_engine

    try:
        eng = create_engine(url, connect_args={"connect_timeout": 2})
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:
        return False


def redis_ok(url: str = REDIS_URL) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def create_pg_database(base_url: str = PG_URL) -> str:
    """A new, empty PostgreSQL database next to base_url's; returns its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(base_url)
    name = f"b_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str, base_url: str = PG_URL) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    admin = create_engine(make_url(base_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def db_query(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Read straight from the app's database (what the server holds as truth)."""
    from sqlalchemy import create_engine, text

    eng = create_engine(database_url)
    try:
        with eng.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
    finally:
        eng.dispose()


def last_seq(database_url: str, code: str) -> int:
    rows = db_query(database_url, "SELECT last_seq FROM workshop WHERE code = :c", c=code)
    return int(rows[0][0])


def settled_seq(database_url: str, code: str, quiet: float = 1.0, timeout: float = 60) -> int:
    """The workshop's seq once it has stopped moving for `quiet` seconds (requests a
    load generator gave up on may still be committing), or after `timeout`."""
    deadline = time.monotonic() + timeout
    seq, since = last_seq(database_url, code), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.2)
        now = last_seq(database_url, code)
        if now != seq:
            seq, since = now, time.monotonic()
    return seq
