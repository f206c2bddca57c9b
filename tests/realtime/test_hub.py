"""Hub behaviour over real sockets (uvicorn subprocess, `websockets` clients, memory
broker) plus a Hypothesis property at unit level with in-process fake sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.realtime.broker import MemoryBroker
from app.realtime.hub import Hub
from tests.realtime.conftest import (
    Harness,
    close_code,
    frame_seq,
    hello,
    open_ws,
    recv,
    recv_all,
    wait_until,
)


async def quiet_socket(server: Harness, workshop_id: int, seq: int, audience: str = "board"):
    """A socket that says it is up to date at `seq`, so it gets nothing until a change."""
    ws = await open_ws(server.url(workshop_id, audience, seq=seq))
    await hello(ws, seq)
    return ws


def test_coalescing_turns_a_burst_into_one_or_two_frames(
    memory_server: Harness, workshop_id: int
) -> None:
    async def main() -> None:
        sockets = [await quiet_socket(memory_server, workshop_id, 0) for _ in range(3)]
        assert await recv_all(sockets[0], 0.3) == []
        final = memory_server.bump(workshop_id, 50)
        for ws, frames in zip(
            sockets, await asyncio.gather(*(recv_all(ws, 0.5) for ws in sockets))
        ):
            assert 1 <= len(frames) <= 2, frames
            assert frame_seq(frames[-1]) == final == 50
            await ws.close()

    asyncio.run(main())


def test_every_socket_of_an_audience_gets_the_same_text(
    memory_server: Harness, workshop_id: int
) -> None:
    async def main() -> None:
        boards = [await quiet_socket(memory_server, workshop_id, 0) for _ in range(4)]
        facs = [await quiet_socket(memory_server, workshop_id, 0, "facilitator") for _ in range(3)]
        memory_server.bump(workshop_id)
        board_texts = {await recv(ws) for ws in boards}
        fac_texts = {await recv(ws) for ws in facs}
        assert len(board_texts) == 1 and len(fac_texts) == 1
        assert board_texts != fac_texts
        assert 'id="board"' in board_texts.pop() and 'id="facilitator"' in fac_texts.pop()
        for ws in boards + facs:
            await ws.close()

    asyncio.run(main())


def stalled_client(port: int, path: str) -> socket.socket:
    """Complete a websocket handshake by hand (no compression offered), then never read."""
    sock = socket.socket()
    # Keep our receive window small; the server's kernel send buffer still grows to MBs.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # byte by byte: leave every frame unread in the kernel
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def test_a_stalled_client_never_delays_the_healthy_ones(
    fast_server: Harness, workshop_id: int
) -> None:
    # The kernel absorbs megabytes for a non-reading peer before uvicorn's own buffer fills
    # and a send blocks, so this needs ~100+ pushes: hence the 10 ms coalesce window.
    fast_server.pad(workshop_id, 30_000)  # ~30 KB frames: where a naive loop blocks
    slow_before = fast_server.stats()["closed_slow"]
    stalled = stalled_client(fast_server.port, f"/ws/{workshop_id}/board")

    async def main() -> None:
        healthy = [await quiet_socket(fast_server, workshop_id, 0) for _ in range(20)]
        worst = 0.0
        for _ in range(400):
            started = time.monotonic()
            seq = fast_server.bump(workshop_id)
            for ws in healthy:
                frame = await recv(ws, 2.0)
                assert frame_seq(frame) == seq
            worst = max(worst, time.monotonic() - started)
            if seq % 10 == 0 and fast_server.stats()["closed_slow"] > slow_before:
                break
        assert worst < 1.5, f"a push took {worst:.2f}s to reach every healthy client"
        for ws in healthy:
            await ws.close()

    try:
        asyncio.run(main())
        # The stalled socket was closed for slowness and dropped from the hub.
        wait_until(lambda: fast_server.stats()["closed_slow"] == slow_before + 1, 5)
        wait_until(lambda: fast_server.stats()["sockets"].get("board", 0) == 0, 5)
    finally:
        stalled.close()


def test_hello_behind_gets_the_full_board_at_once(memory_server: Harness, workshop_id: int) -> None:
    async def main() -> None:
        seq = memory_server.bump(workshop_id, 5)
        ws = await open_ws(memory_server.url(workshop_id, seq=seq))
        assert await recv_all(ws, 0.3) == []  # the URL said it is current
        started = time.monotonic()
        await hello(ws, seq - 3)
        frame = await recv(ws, 1.0)
        assert time.monotonic() - started < 0.5
        assert frame_seq(frame) == seq and 'data-kind="full"' in frame
        await ws.close()

        # No seq in the URL and hello null (first load, or a board without data-seq).
        ws = await open_ws(memory_server.url(workshop_id))
        await hello(ws, None)
        frame = await recv(ws, 1.0)
        assert frame_seq(frame) == seq and 'data-kind="full"' in frame
        await ws.close()

    asyncio.run(main())


def test_hello_with_current_seq_gets_nothing_until_the_next_change(
    memory_server: Harness, workshop_id: int
) -> None:
    async def main() -> None:
        seq = memory_server.bump(workshop_id, 3)
        ws = await quiet_socket(memory_server, workshop_id, seq)
        assert await recv_all(ws, 0.4) == []
        memory_server.bump(workshop_id)
        assert frame_seq(await recv(ws)) == seq + 1
        await ws.close()

    asyncio.run(main())


def test_close_where_oversized_and_unknown_messages(
    memory_server: Harness, workshop_id: int
) -> None:
    async def main() -> None:
        revoked = await open_ws(memory_server.url(workshop_id, seq=0, key="alice"))
        kept = await open_ws(memory_server.url(workshop_id, seq=0, key="bob"))
        loud = await open_ws(memory_server.url(workshop_id, seq=0))
        await kept.send("not json")
        await kept.send(json.dumps({"type": "whatever", "HEADERS": {}}))
        await loud.send("x" * 5000)
        assert await close_code(loud) == 1009
        closed = memory_server.http.post(f"/revoke/{workshop_id}", params={"key": "alice"})
        assert closed.json() == {"closed": 1}
        assert await close_code(revoked) == 4401
        memory_server.bump(workshop_id)
        assert frame_seq(await recv(kept)) == 1
        await kept.close()

    asyncio.run(main())


# -- property: whatever a client misses, reconnect + hello makes its board current --------

ITEM = re.compile(r'<i id="(\w+)"(?: data-seq="(\d+)")?>([^<]*)</i>')


class Db:
    """The source of truth: a few items, each remembering the seq that last changed it."""

    def __init__(self, delay: float) -> None:
        self.seq = 0
        self.items = {f"k{i}": "" for i in range(3)}
        self.changed = dict.fromkeys(self.items, 0)
        self.delay = delay

    async def render(self, workshop_id: int, since: int | None) -> tuple[int, dict[str, str]]:
        seq = self.seq
        await asyncio.sleep(self.delay)  # renders take time: changes and hellos interleave
        parts = [f'<i id="seq" data-seq="{seq}"></i>']
        parts += [
            f'<i id="{k}">{v}</i>'
            for k, v in self.items.items()
            if since is None or self.changed[k] > since
        ]
        return seq, {"board": "".join(parts)}


class Browser:
    """A client's board: applies out-of-band swaps by element id, like htmx."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.items: dict[str, str] = {}
        self.frames: list[str] = []

    def apply(self, text: str) -> None:
        self.frames.append(text)
        for ident, seq, value in ITEM.findall(text):
            if ident == "seq":
                self.seq = int(seq)
            else:
                self.items[ident] = value


class FakeSocket:
    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.stalled = False
        self.code: int | None = None

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send_text(self, data: str) -> None:
        if self.stalled:
            await asyncio.Future()  # never completes: the hub's send timeout must fire
        self.browser.apply(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.code = code

    def hello(self) -> None:
        text = json.dumps({"type": "hello", "seq": self.browser.seq})
        self.inbox.put_nowait({"type": "websocket.receive", "text": text})


async def settle(hub: Hub) -> None:
    """Wait until no render is pending and no frame is queued (a busy hub fails)."""
    idle = 0
    async with asyncio.timeout(5):
        while idle < 3:
            await asyncio.sleep(0.003)
            s = hub.stats()
            idle = idle + 1 if not s["pending_renders"] and not s["queued_frames"] else 0


ops = st.lists(
    st.one_of(
        st.tuples(st.just("change"), st.sampled_from(["k0", "k1", "k2"]), st.integers(0, 99)),
        st.tuples(st.just("drop"), st.integers(0, 1)),
        st.tuples(st.just("stall"), st.integers(0, 1)),
        # hint: None (wait for hello), the browser's seq, or a stale one (as in a static URL)
        st.tuples(st.just("connect"), st.integers(0, 1), st.sampled_from(["none", "ok", "old"])),
        st.tuples(st.just("wait"), st.integers(0, 8)),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.sampled_from([0, 0.001, 0.004]))
def test_reconnect_and_hello_always_converge_to_a_fresh_render(
    steps: list[tuple], render_delay: float
) -> None:
    async def main() -> None:
        db, broker = Db(render_delay), MemoryBroker()
        hub = Hub(broker, db.render, coalesce_ms=4, queue_size=2, send_timeout=0.02)
        await hub.start()
        browsers = [Browser(), Browser()]
        socks: list[FakeSocket | None] = [None, None]
        tasks: list[asyncio.Task[None] | None] = [None, None]

        def alive(i: int) -> bool:
            task = tasks[i]
            return task is not None and not task.done()

        def connect(i: int, hint: str) -> None:
            sock = socks[i] = FakeSocket(browsers[i])
            last = browsers[i].seq if hint != "none" else None
            if hint == "old" and last is not None:
                last = max(0, last - 1)
            tasks[i] = asyncio.create_task(hub.attach(sock, 7, "board", last, key=None))
            sock.hello()

        connect(0, "none")
        connect(1, "ok")
        for step in steps:
            sock = socks[step[1]] if step[0] in ("drop", "stall", "connect") else None
            if step[0] == "change":
                db.seq += 1
                db.items[step[1]] = str(step[2])
                db.changed[step[1]] = db.seq
                await broker.publish(7, db.seq)
            elif step[0] == "drop" and sock and alive(step[1]):
                sock.inbox.put_nowait({"type": "websocket.disconnect", "code": 1001})
            elif step[0] == "stall" and sock:
                sock.stalled = True
            elif step[0] == "connect" and not alive(step[1]):
                connect(step[1], step[2])
            elif step[0] == "wait":
                await asyncio.sleep(step[1] / 1000)
        await settle(hub)
        for i, browser in enumerate(browsers):
            sock = socks[i]
            if sock is None or sock.stalled or not alive(i):
                if sock and alive(i):
                    sock.inbox.put_nowait({"type": "websocket.disconnect", "code": 1001})
                await settle(hub)
                behind = browser.seq != db.seq
                seen = len(browser.frames)
                connect(i, "old")
                await settle(hub)
                if behind:  # it missed something: its last frame is a complete, fresh board
                    assert len(browser.frames) > seen
                    assert browser.frames[-1] == (await db.render(7, None))[1]["board"]
            assert browser.seq == db.seq and browser.items == db.items
        await hub.stop()

    asyncio.run(main())


def test_hello_during_a_delta_render_still_gets_a_full_board() -> None:
    """A client that falls behind while a delta is being rendered must not get that delta
    (it would leave a gap on its board) but the full board right after."""

    async def main() -> None:
        db, broker = Db(0), MemoryBroker()
        gate, started = asyncio.Event(), asyncio.Event()
        render = db.render

        async def gated(workshop_id: int, since: int | None) -> tuple[int, dict[str, str]]:
            if since == 1:  # hold the delta for seq 2 until the late client has said hello
                started.set()
                await gate.wait()
            return await render(workshop_id, since)

        hub = Hub(broker, gated, coalesce_ms=1, send_timeout=0.5)
        await hub.start()
        up_to_date, late = Browser(), Browser()
        first = FakeSocket(up_to_date)
        attached = [asyncio.create_task(hub.attach(first, 7, "board", None))]
        first.hello()
        await settle(hub)
        db.seq, db.items["k0"], db.changed["k0"] = 1, "a", 1
        await broker.publish(7, 1)
        await settle(hub)
        db.seq, db.items["k1"], db.changed["k1"] = 2, "b", 2
        await broker.publish(7, 2)
        await started.wait()
        second = FakeSocket(late)  # a browser holding nothing, saying so
        attached.append(asyncio.create_task(hub.attach(second, 7, "board", None)))
        second.hello()
        await asyncio.sleep(0.01)
        gate.set()
        await settle(hub)
        for browser in (up_to_date, late):
            assert browser.seq == 2 and browser.items == db.items
        assert late.frames == [(await render(7, None))[1]["board"]]
        db.seq, db.items["k2"], db.changed["k2"] = 3, "c", 3
        await broker.publish(7, 3)
        await settle(hub)
        # One render, one str object handed to every socket of the audience.
        assert up_to_date.frames[-1] is late.frames[-1]
        await hub.stop()
        await asyncio.gather(*attached)
        assert first.code == second.code == 1001

    asyncio.run(main())
