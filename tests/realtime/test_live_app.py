"""The real app (``lessons serve`` in a subprocess) with real ``websockets`` clients:
pushes reach every audience, survive a server restart, are not held up by a client
that stops reading, and whatever a client misses is healed by reconnect + hello."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench._frames import fragments, frame_seq
from bench._server import Api, AppServer, last_seq, make_workshop
from tests.factories import cookie_names

LIVE_ENV = {
    "LESSONS_RATE_CARDS_PER_MINUTE": "100000",
    "LESSONS_RATE_JOINS_PER_IP_PER_MINUTE": "100000",
    "LESSONS_WS_MAX_PER_PARTICIPANT": "100",
    "LESSONS_WS_SEND_TIMEOUT": "1",
    "LESSONS_COALESCE_MS": "50",
}
PUSH_BOUND = 3.0  # seconds from an HTTP change to its frame on a socket
_PROJECTOR_SEQ = re.compile(r'id="projector"[^>]*?data-seq="(\d+)"')


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    server = AppServer(tmp_path_factory.mktemp("live"), env=LIVE_ENV)
    server.prepare()
    server.start()
    yield server
    server.stop()
    assert not server.errors(), server.log_tail()


def any_seq(text: str) -> int | None:
    seq = frame_seq(text)
    if seq is None and (m := _PROJECTOR_SEQ.search(text)):
        seq = int(m.group(1))
    return seq


async def open_socket(
    server: AppServer,
    code: str,
    *,
    token: str | None = None,
    cookies: dict[str, str] | None = None,
    query: str = "",
) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return await connect(
        f"{server.ws_url}/ws/workshops/{code}{query}",
        origin=server.url,  # type: ignore[arg-type]
        additional_headers=headers,
        max_size=None,
        open_timeout=5,
        close_timeout=1,
    )


async def hello(ws: ClientConnection, seq: int | None) -> None:
    await ws.send(json.dumps({"type": "hello", "seq": seq}))


async def recv(ws: ClientConnection, timeout: float) -> str:
    async with asyncio.timeout(timeout):
        data = await ws.recv()
    assert isinstance(data, str)
    return data


async def recv_until(ws: ClientConnection, needle: str, timeout: float) -> list[str]:
    """Frames up to and including the first that contains `needle`."""
    frames: list[str] = []
    async with asyncio.timeout(timeout):
        while not frames or needle not in frames[-1]:
            frames.append(await recv(ws, timeout))
    return frames


# -- (a) one HTTP change, every audience ---------------------------------------------------


def test_http_change_reaches_board_facilitator_and_projector(live: AppServer) -> None:
    api = Api(live.url)
    scene = make_workshop(api, collect_areas=1, vote_cards=0, participants=0)
    code, (pcookie, pjcookie) = scene["code"], cookie_names(scene["uid"])
    writer = api.join(code, "Zebediah Quuxworth", scene["affiliation"])
    fac = scene["fac"]
    names = ["Zebediah Quuxworth", "Facilitator"]
    title = f"Stamp {os.urandom(4).hex()}"

    async def main() -> None:
        sockets = {
            "board": await open_socket(live, code, token=writer["token"]),
            "facilitator": await open_socket(live, code, cookies={pcookie: fac["token"]}),
            "projector (query)": await open_socket(
                live, code, query=f"?key={scene['projector_key']}"
            ),
            "projector (cookie)": await open_socket(
                live, code, cookies={pjcookie: scene["projector_key"]}
            ),
        }
        first = {}
        for name, ws in sockets.items():
            await hello(ws, None)
            first[name] = await recv(ws, PUSH_BOUND)
        assert (
            "staff-controls" not in first["board"]
            and 'id="projector"' in first["projector (query)"]
        )
        t0 = time.monotonic()
        api.card(code, writer["token"], scene["collect"][0], title, "A body.")
        took = {}
        seen: dict[str, list[str]] = {}
        for name, ws in sockets.items():
            seen[name] = [first[name], *await recv_until(ws, title, PUSH_BOUND)]
            took[name] = time.monotonic() - t0
            await ws.close()
        assert max(took.values()) < PUSH_BOUND, took
        # Every push carries the workshop's seq, the same for every audience.
        seqs = {name: any_seq(frames[-1]) for name, frames in seen.items()}
        assert None not in seqs.values() and len(set(seqs.values())) == 1, seqs
        assert 'id="projector"' in seen["projector (cookie)"][-1]
        assert "staff-controls" in seen["facilitator"][-1]
        for name in ("board", "projector (query)", "projector (cookie)"):
            for frame in seen[name]:
                for person in names:
                    assert person not in frame, f"{person!r} in a {name} frame"

    try:
        asyncio.run(main())
    finally:
        api.close()


# -- (b) a server restart ----------------------------------------------------------------


def test_restart_reconnect_with_hello_gets_the_current_board(tmp_path: Path) -> None:
    server = AppServer(tmp_path / "data", env=LIVE_ENV)
    server.prepare()
    server.start()
    api = Api(server.url)
    try:
        scene = make_workshop(api, collect_areas=1, vote_cards=0, participants=1)
        code, fa = scene["code"], scene["collect"][0]
        token = scene["people"][0]["token"]
        kept = api.card(code, token, fa, "Before the restart", client_id="offline-1")

        async def before() -> tuple[int, int | None]:
            ws = await open_socket(server, code, token=token)
            await hello(ws, None)
            frame = await recv(ws, PUSH_BOUND)
            assert "Before the restart" in frame
            seq = frame_seq(frame)
            assert seq is not None

            async def closed() -> int | None:
                try:
                    async with asyncio.timeout(10):
                        while True:
                            await ws.recv()
                except ConnectionClosed as exc:
                    return exc.rcvd.code if exc.rcvd else None

            watch = asyncio.create_task(closed())
            await asyncio.to_thread(server.stop)  # SIGTERM while the socket is open
            return seq, await watch

        seq, code_seen = asyncio.run(before())
        assert code_seen in (1001, 1012), code_seen
        server.start()
        api.card(code, token, fa, "While it was away")
        again = api.http.post(
            f"/api/v1/workshops/{code}/cards",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "focus_area_id": fa,
                "kind": "lesson",
                "title": "Before the restart",
                "body": "",
                "client_id": "offline-1",
            },
        )
        assert again.status_code == 200, again.text
        assert again.json()["id"] == kept["id"]

        async def after() -> str:
            ws = await open_socket(server, code, token=token)
            await hello(ws, seq)
            frame = await recv(ws, PUSH_BOUND)
            await ws.close()
            return frame

        frame = asyncio.run(after())
        assert frame_seq(frame) == last_seq(server.database_url, code) > seq
        board = fragments(frame)[f"fa-board-{fa}"]
        assert "While it was away" in board
        assert board.count(f'id="card-{kept["id"]}"') == 1
        assert board.count("Before the restart") >= 1
        assert len(re.findall(r'<article class="card', board)) == 2
    finally:
        api.close()
        server.stop()
    assert not server.errors(), server.log_tail()


# -- (c) a client that stops reading --------------------------------------------------------


def masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    assert n < 126
    return bytes([0x81, 0x80 | n]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def stalled_client(server: AppServer, code: str, token: str) -> socket.socket:
    """A raw TCP websocket client: handshake, hello, then it never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/workshops/{code} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {server.url}\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    sock.settimeout(5)
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.sendall(masked_text(b'{"type":"hello","seq":null}'))
    return sock


def test_a_client_that_never_reads_does_not_hold_up_the_others(live: AppServer) -> None:
    api = Api(live.url)
    scene = make_workshop(api, collect_areas=1, vote_cards=0, participants=1)
    code, fa = scene["code"], scene["collect"][0]
    token = scene["people"][0]["token"]
    long_body = "A long lesson, written out in full. " * 108  # ~3.9 KB
    for i in range(24):
        api.card(code, token, fa, f"seed {i}", long_body)
    stalled = stalled_client(live, code, token)
    # 45 pushes of 100-270 KB, ~8 MB in all: more than loopback buffers take (3-5 MB),
    # so the server must give up on the stalled client while the others go on.
    titles = [f"push {i:02d}" for i in range(45)]
    sent: dict[str, float] = {}
    pushed_bytes = 0

    async def main() -> dict[str, float]:
        nonlocal pushed_bytes
        healthy = [await open_socket(live, code, token=token) for _ in range(10)]
        for ws in healthy:
            await hello(ws, None)
            first = await recv(ws, PUSH_BOUND)
            assert len(first) > 90_000
        pushed_bytes = len(first.encode())
        arrived: list[dict[str, float]] = [{} for _ in healthy]

        async def read(i: int, ws: ClientConnection) -> None:
            nonlocal pushed_bytes
            while len(arrived[i]) < len(titles):
                frame = await recv(ws, 10)
                pushed_bytes += len(frame.encode()) if i == 0 else 0
                for t in titles:
                    if t not in arrived[i] and t in frame:
                        arrived[i][t] = time.monotonic()

        readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(healthy)]
        for title in titles:
            sent[title] = time.monotonic()
            await asyncio.to_thread(api.card, code, token, fa, title, long_body)
            await asyncio.sleep(0.06)  # about one coalescing window: one push per card
        await asyncio.wait_for(asyncio.gather(*readers), 15)
        for ws in healthy:
            await ws.close()
        return {t: max(a[t] for a in arrived) - sent[t] for t in titles}

    try:
        worst = asyncio.run(main())
        assert max(worst.values()) < PUSH_BOUND, worst
        # The server gave up on the stalled client: once it reads, what the buffers
        # held drains and the connection ends, well short of everything pushed.
        stalled.settimeout(10)
        stream = b""
        while len(stream) < 50_000_000:
            chunk = stalled.recv(1 << 20)
            if not chunk:
                break
            stream += chunk
        assert len(stream) < pushed_bytes * 0.9, (len(stream), pushed_bytes)
    finally:
        stalled.close()
        api.close()


# -- (d) missed pushes are healed by reconnect + hello ------------------------------------


class Client:
    """A board client that applies every frame it reads, like htmx's oob swaps."""

    def __init__(self, server: AppServer, code: str, token: str) -> None:
        self.server, self.code, self.token = server, code, token
        self.ws: ClientConnection | None = None
        self.state: dict[str, str] = {}
        self.seq: int | None = None

    def apply(self, frame: str) -> None:
        self.state.update(fragments(frame))
        seq = frame_seq(frame)
        if seq is not None:
            self.seq = seq if self.seq is None else max(self.seq, seq)

    async def connect(self) -> None:
        self.ws = await open_socket(self.server, self.code, token=self.token)
        await hello(self.ws, self.seq)

    async def drop(self) -> None:
        """Go away without reading what is on the wire: those pushes are missed."""
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    async def read(self, quiet: float) -> None:
        while self.ws is not None:
            try:
                self.apply(await recv(self.ws, quiet))
            except TimeoutError:
                return

    async def read_to(self, seq: int, timeout: float) -> None:
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            while self.seq is None or self.seq < seq:
                self.apply(await recv(self.ws, timeout))


STEPS = st.lists(st.sampled_from(["card", "vote", "join", "toggle", "read"]), max_size=10)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_reconnect_and_hello_heal_whatever_was_missed(live: AppServer, steps: list[str]) -> None:
    api = Api(live.url)
    scene = make_workshop(api, collect_areas=1, vote_cards=3, participants=2)
    code, fa = scene["code"], scene["collect"][0]
    voter, writer = (p["token"] for p in scene["people"])
    n = 0

    async def main() -> None:
        nonlocal n
        client = Client(live, code, writer)
        await client.connect()
        await client.read(0.3)
        for step in steps:
            n += 1
            if step == "card":
                await asyncio.to_thread(api.card, code, writer, fa, f"card {n}")
            elif step == "vote":
                card = scene["vote_cards"][n % 3]
                await asyncio.to_thread(api.vote, code, voter, card)
            elif step == "join":
                await asyncio.to_thread(api.join, code, f"Late {n}", scene["affiliation"])
            elif step == "toggle":
                await (client.drop() if client.ws else client.connect())
            else:
                await client.read(0.12)
        await client.drop()
        await client.connect()
        final = await asyncio.to_thread(last_seq, live.database_url, code)
        await client.read_to(final, PUSH_BOUND)
        await client.drop()
        fresh = Client(live, code, writer)
        await fresh.connect()
        await fresh.read_to(final, PUSH_BOUND)
        await fresh.drop()
        assert client.seq == fresh.seq == final
        ids = [k for k in fresh.state if k.startswith(("fa-board-", "fa-head-"))]
        assert len(ids) == 4
        for key in ids:
            assert client.state.get(key) == fresh.state[key], (key, steps)

    try:
        asyncio.run(main())
    finally:
        api.close()
