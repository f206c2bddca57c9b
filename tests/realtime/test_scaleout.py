"""Several app processes: two ``lessons serve`` processes on one PostgreSQL database
and one Redis pass changes to each other's sockets; when Redis goes away the sockets
are told to resync (close 1012) while HTTP keeps working, and pushes resume once
Redis is back. Skipped without PostgreSQL/Redis unless REQUIRE_POSTGRES=1 /
REQUIRE_REDIS=1, which turn the skip into a failure."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench._server import (
    PG_URL,
    REDIS_URL,
    Api,
    AppServer,
    create_pg_database,
    drop_pg_database,
    make_workshop,
    postgres_ok,
    redis_ok,
)
from tests.realtime.conftest import RedisServer

PUSH_BOUND = 3.0


def unavailable(what: str, flag: str) -> None:
    if os.environ.get(flag) == "1":
        pytest.fail(f"{what} is required ({flag}=1) but not reachable")
    pytest.skip(f"{what} not reachable")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database; the app servers migrate it themselves."""
    if not postgres_ok(PG_URL):
        unavailable(f"PostgreSQL at {PG_URL}", "REQUIRE_POSTGRES")
    url = create_pg_database(PG_URL)
    yield url
    drop_pg_database(url, PG_URL)


@pytest.fixture
def shared_redis() -> str:
    if not redis_ok(REDIS_URL):
        unavailable(f"Redis at {REDIS_URL}", "REQUIRE_REDIS")
    return REDIS_URL


async def open_socket(server: AppServer, code: str, token: str) -> ClientConnection:
    ws = await connect(
        f"{server.ws_url}/ws/workshops/{code}",
        origin=server.url,  # type: ignore[arg-type]
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
        open_timeout=5,
        close_timeout=1,
    )
    await ws.send(json.dumps({"type": "hello", "seq": None}))
    await recv(ws, PUSH_BOUND)  # the full board
    return ws


async def recv(ws: ClientConnection, timeout: float) -> str:
    async with asyncio.timeout(timeout):
        data = await ws.recv()
    assert isinstance(data, str)
    return data


async def wait_for_text(ws: ClientConnection, needle: str, timeout: float = PUSH_BOUND) -> float:
    t0 = time.monotonic()
    async with asyncio.timeout(timeout):
        while needle not in await recv(ws, timeout):
            pass
    return time.monotonic() - t0


async def close_code(ws: ClientConnection, timeout: float) -> int | None:
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


def test_a_change_through_one_process_reaches_a_socket_on_another(
    pg_database: str, shared_redis: str, tmp_path: Path
) -> None:
    a = AppServer(tmp_path / "a", database_url=pg_database, redis_url=shared_redis)
    b = AppServer(tmp_path / "b", database_url=pg_database, redis_url=shared_redis)
    a.prepare()  # `lessons db upgrade` on the fresh database, and the organizer
    a.start()
    b.start()
    api_a, api_b = Api(a.url), Api(b.url)
    try:
        scene = make_workshop(api_a, collect_areas=1, vote_cards=0, participants=1)
        code, fa = scene["code"], scene["collect"][0]
        token = scene["people"][0]["token"]

        async def main() -> None:
            on_a = await open_socket(a, code, token)
            on_b = await open_socket(b, code, token)
            api_a.card(code, token, fa, "Written through A")
            assert await wait_for_text(on_b, "Written through A") < PUSH_BOUND
            assert await wait_for_text(on_a, "Written through A") < PUSH_BOUND
            api_b.card(code, token, fa, "Written through B")
            assert await wait_for_text(on_a, "Written through B") < PUSH_BOUND
            await on_a.close()
            await on_b.close()

        asyncio.run(main())
    finally:
        api_a.close()
        api_b.close()
        a.stop()
        b.stop()
    assert not a.errors() and not b.errors(), a.log_tail() + b.log_tail()


def test_redis_outage_closes_sockets_with_1012_and_pushes_resume(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    app = AppServer(tmp_path / "app", redis_url=redis_server.url)
    app.prepare()
    app.start()
    api = Api(app.url)
    try:
        scene = make_workshop(api, collect_areas=1, vote_cards=0, participants=1)
        code, fa = scene["code"], scene["collect"][0]
        token = scene["people"][0]["token"]

        async def main() -> None:
            ws = await open_socket(app, code, token)
            redis_server.kill()
            # The broker notices at once (connection reset) or within its PING check.
            assert await close_code(ws, 10) == 1012
            t0 = time.monotonic()
            await asyncio.to_thread(api.card, code, token, fa, "Written while Redis is down")
            assert time.monotonic() - t0 < 3, "HTTP stalled on the broker"
            page = await asyncio.to_thread(httpx.get, f"{app.url}/login", timeout=5)
            assert page.status_code == 200
            # A socket opened during the outage gets the board, but no pushes.
            during = await open_socket(app, code, token)
            redis_server.start()
            # Once the broker is back it pushes full boards to every socket.
            await recv(during, 15)
            after = await open_socket(app, code, token)
            await asyncio.to_thread(api.card, code, token, fa, "Written after Redis is back")
            assert await wait_for_text(after, "Written after Redis is back") < PUSH_BOUND
            await during.close()
            await after.close()

        asyncio.run(main())
        assert app.alive()
    finally:
        api.close()
        app.stop()
