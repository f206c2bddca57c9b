"""Socket caps of the websocket endpoint: a workshop's projector key opens at most
LESSONS_WS_MAX_PROJECTORS sockets (default 10), counted per workshop, like a
participant's LESSONS_WS_MAX_PER_PARTICIPANT; handshakes that race each other do not
slip past the cap. Against the real app (``lessons serve``) with `websockets`
clients, where a refused handshake is an HTTP 403 (uvicorn's answer to a close
before accept); tests/security/test_projector_cap.py sees the close code, 4429."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from bench._server import Api, AppServer, make_workshop

MAX_PROJECTORS = 10  # the default


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    server = AppServer(tmp_path_factory.mktemp("limits"))
    server.prepare()
    server.start()
    yield server
    server.stop()
    assert not server.errors(), server.log_tail()


async def projector(server: AppServer, scene: dict[str, Any]) -> ClientConnection | int:
    """An open projector socket that got its board, or the HTTP status it was refused with."""
    try:
        ws = await connect(
            f"{server.ws_url}/ws/workshops/{scene['code']}?key={scene['projector_key']}",
            origin=server.url,  # type: ignore[arg-type]
            max_size=None,
            open_timeout=5,
            close_timeout=1,
        )
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.send(json.dumps({"type": "hello", "seq": None}))
    async with asyncio.timeout(5):
        frame = await ws.recv()
    assert 'id="projector"' in frame
    return ws


async def opened(server: AppServer, scene: dict[str, Any], n: int) -> list[ClientConnection]:
    """Open `n` projector sockets one after the other; return the ones that opened."""
    results = [await projector(server, scene) for _ in range(n)]
    return [ws for ws in results if not isinstance(ws, int)]


def test_projector_sockets_are_capped_per_workshop(live: AppServer) -> None:
    api = Api(live.url)
    try:
        a, b, c = (
            make_workshop(api, collect_areas=1, vote_cards=0, participants=0) for _ in range(3)
        )
    finally:
        api.close()

    async def main() -> None:
        held = await opened(live, a, MAX_PROJECTORS)
        assert len(held) == MAX_PROJECTORS
        assert await projector(live, a) == 403  # one too many
        # Another workshop's projectors do not count against this one's.
        others = await opened(live, b, 2)
        assert len(others) == 2
        # A screen that goes away frees its place.
        await held.pop().close()
        async with asyncio.timeout(5):
            while isinstance(again := await projector(live, a), int):
                await asyncio.sleep(0.05)  # the server has not let the closed one go yet
        held.append(again)
        assert await projector(live, a) == 403
        # Handshakes that race each other: still no more than the cap.
        raced = await asyncio.gather(*(projector(live, c) for _ in range(MAX_PROJECTORS + 6)))
        winners = [ws for ws in raced if not isinstance(ws, int)]
        assert len(winners) == MAX_PROJECTORS, raced
        assert [r for r in raced if isinstance(r, int)] == [403] * 6
        for ws in held + others + winners:
            await ws.close()

    asyncio.run(main())
