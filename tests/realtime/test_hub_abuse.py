"""What one client can make the hub do with the one message it may send, over real
sockets (the harness app in a uvicorn subprocess, `websockets` clients, memory broker):
a flood of hellos costs at most one full board per socket and coalescing window, and
one full render per workshop and window however many sockets ask (none when the board
did not change since the socket's last one); a hello claiming a seq ahead of the
server gets the board instead of nothing; malformed frames are cheap and leave the
socket working. No time limits: the bounds are counts of frames and renders, derived
from the elapsed time and the window. Last, a property over in-process fake sockets."""

from __future__ import annotations

import asyncio
import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection

from app.realtime.broker import MemoryBroker
from app.realtime.hub import Hub
from tests.realtime.conftest import Harness, frame_seq, hello, open_ws, recv, recv_all
from tests.realtime.test_hub import Browser, Db, FakeSocket, settle

WINDOW = 0.1  # memory_server's coalescing window (HUB_COALESCE_MS=100)
REPEAT_WINDOW = 1.0  # the hub's default repeat_resync_s


def is_full(frame: str) -> bool:
    return 'data-kind="full"' in frame


async def up_to_date(server: Harness, workshop_id: int, seq: int) -> ClientConnection:
    ws = await open_ws(server.url(workshop_id, seq=seq))
    await hello(ws, seq)
    return ws


async def collect(ws: ClientConnection, frames: list[tuple[float, str]], quiet: float) -> None:
    """Append (arrival time, frame) until `quiet` seconds pass without a frame."""
    while True:
        try:
            frame = await recv(ws, quiet)
        except TimeoutError:
            return
        frames.append((time.monotonic(), frame))


def test_a_hello_flood_gets_a_bounded_number_of_full_boards(
    memory_server: Harness, workshop_id: int
) -> None:
    server = memory_server
    seq = server.bump(workshop_id, 3)
    hellos = 5000

    async def main() -> None:
        others = [await up_to_date(server, workshop_id, seq) for _ in range(3)]
        flooder = await open_ws(server.url(workshop_id))
        try:
            await flood(flooder, others)
        finally:
            for ws in [flooder, *others]:
                await ws.close()

    async def flood(flooder: ClientConnection, others: list[ClientConnection]) -> None:
        before = server.stats()
        got: list[tuple[float, str]] = []
        started = time.monotonic()
        # Quiet for longer than a repeat window: the flooder's last resync has come.
        reader = asyncio.create_task(collect(flooder, got, REPEAT_WINDOW + 0.5))
        bumped = []
        for i in range(hellos):
            await hello(flooder, None)
            if i % 400 == 399:  # changes keep coming while the flood goes on
                bumped.append(await asyncio.to_thread(server.bump, workshop_id))
        sent = time.monotonic()
        await reader
        after = server.stats()
        elapsed = got[-1][0] - started
        full = [f for _, f in got if is_full(f)]
        renders = after["renders"] - before["renders"]
        print(
            f"\n{hellos} hellos sent in {sent - started:.3f}s; {len(got)} frames "
            f"({len(full)} full) and {renders} renders over {elapsed:.3f}s"
        )
        # Full boards are at least one window apart on a socket: n of them span
        # (n - 1) windows, all after the first hello was sent. Asking again on the same
        # connection is served once per repeat window (one second) only.
        assert 1 <= len(full) <= elapsed / WINDOW + 2, (len(full), elapsed)
        assert len(full) <= elapsed / REPEAT_WINDOW + 3, (len(full), elapsed)
        # Per window at most one full render and two deltas (one cut short by it).
        assert renders <= 3 * (elapsed / WINDOW + 2), (renders, elapsed)
        # And a board it already had is sent again without rendering it again: a full
        # render for its first board, then at most one per change.
        full_renders = after["full_renders"] - before["full_renders"]
        assert full_renders <= len(bumped) + 1, (full_renders, len(bumped))
        # Its board is current in the end...
        assert frame_seq(got[-1][1]) == bumped[-1]
        # ... and the sockets that did not flood got every change, never a full board.
        for ws in others:
            frames = await recv_all(ws, 0.3)
            assert frames and frame_seq(frames[-1]) == bumped[-1]
            assert not any(is_full(f) for f in frames)

    asyncio.run(main())


def test_many_sockets_asking_at_once_share_one_full_render_per_window(
    memory_server: Harness, workshop_id: int
) -> None:
    server = memory_server
    seq = server.bump(workshop_id, 2)

    async def main() -> None:
        anchor = await up_to_date(server, workshop_id, seq)  # keeps the workshop's state
        assert await recv_all(anchor, 0.3) == []
        before = server.stats()
        started = time.monotonic()
        sockets: list[ClientConnection] = []
        arrived: list[list[tuple[float, str]]] = []
        readers = []
        for _ in range(20):  # one after the other: a room's browsers opening the page
            ws = await open_ws(server.url(workshop_id))
            sockets.append(ws)
            arrived.append([])
            readers.append(asyncio.create_task(collect(ws, arrived[-1], 0.4)))
            await hello(ws, None)
            await hello(ws, None)  # a second hello folds into the pending resync
        await asyncio.gather(*readers)
        after = server.stats()
        elapsed = max(t for frames in arrived for t, _ in frames) - started
        renders = after["renders"] - before["renders"]
        print(f"\n20 sockets x 2 hellos: {renders} renders over {elapsed:.3f}s")
        for frames in arrived:
            assert len(frames) == 1, frames
            assert is_full(frames[0][1]) and frame_seq(frames[0][1]) == seq
        # One render per window however many sockets ask: n renders span n - 1 windows.
        assert renders <= elapsed / WINDOW + 1, (renders, elapsed)
        for ws in [anchor, *sockets]:
            await ws.close()

    asyncio.run(main())


def test_a_hello_ahead_of_the_server_gets_the_board(
    memory_server: Harness, workshop_id: int
) -> None:
    server = memory_server
    seq = server.bump(workshop_id, 4)

    async def main() -> None:
        # The hub knows nothing of this workshop yet (first socket in this process).
        first = await open_ws(server.url(workshop_id))
        await hello(first, 10**9)  # forged, or a board from before a database restore
        frame = await recv(first)
        assert is_full(frame) and frame_seq(frame) == seq
        # The hub knows the workshop's seq (a socket is up to date): same answer.
        second = await open_ws(server.url(workshop_id))
        await second.send(json.dumps({"type": "hello", "seq": str(10**18)}))
        frame = await recv(second)
        assert is_full(frame) and frame_seq(frame) == seq
        # Ahead in the URL's hint too.
        third = await open_ws(server.url(workshop_id, seq=seq + 5))
        frame = await recv(third)
        assert is_full(frame) and frame_seq(frame) == seq
        # Their known seq is the server's now: the next change comes as a delta.
        new = server.bump(workshop_id)
        for ws in (first, second, third):
            frame = await recv(ws)
            assert not is_full(frame) and frame_seq(frame) == new
            await ws.close()

    asyncio.run(main())


def test_malformed_frames_are_cheap_and_leave_the_socket_working(
    memory_server: Harness, workshop_id: int
) -> None:
    server = memory_server
    seq = server.bump(workshop_id)

    async def main() -> None:
        ws = await up_to_date(server, workshop_id, seq)
        before = server.stats()["renders"]
        for text in (
            "[" * 3000,  # nesting deep enough to blow the JSON decoder's recursion limit
            '{"a":' * 800,
            '{"type": "hello", "seq": ' + "9" * 4000 + "}",  # a 4000-digit seq
            json.dumps({"type": "hello", "seq": 1, "pad": "x" * 3000}),
            json.dumps({"type": "hello", "seq": seq, "HEADERS": {"HX-Request": "true"}}),
        ):
            await ws.send(text)
        # None of these was a hello the hub acted on: nothing was rendered or sent...
        assert await recv_all(ws, 0.3) == []
        assert server.stats()["renders"] == before
        # ... and the socket still works.
        await hello(ws, None)
        frame = await recv(ws)
        assert is_full(frame) and frame_seq(frame) == seq
        new = server.bump(workshop_id)
        assert frame_seq(await recv(ws)) == new
        await ws.close()

    asyncio.run(main())


# -- property: whatever a client says, how often, the boards converge and full boards
# stay within one per resync window (fake sockets, in process, on the loop's clock) --

FULL = "<!--full-->"

floods = st.lists(
    st.one_of(
        st.tuples(
            st.just("flood"),
            st.integers(0, 1),
            st.sampled_from(["null", "same", "behind", "ahead"]),
            st.integers(1, 60),
        ),
        st.tuples(st.just("change"), st.sampled_from(["k0", "k1", "k2"]), st.integers(0, 99)),
        st.tuples(st.just("wait"), st.integers(0, 25)),
    ),
    max_size=20,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(floods, st.sampled_from([0, 0.002]))
def test_hello_floods_converge_with_one_full_board_per_window(
    steps: list[tuple], render_delay: float
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        db, broker = Db(render_delay), MemoryBroker()

        async def render(workshop_id: int, since: int | None) -> tuple[int, dict[str, str]]:
            seq, html = await db.render(workshop_id, since)
            return seq, {k: (FULL if since is None else "") + v for k, v in html.items()}

        hub = Hub(
            broker, render, coalesce_ms=10, queue_size=64, send_timeout=1, repeat_resync_s=0.03
        )
        window = 0.01  # the coalescing window
        await hub.start()
        started = loop.time()
        browsers = [Browser(), Browser()]
        socks = [FakeSocket(b) for b in browsers]
        tasks = [asyncio.create_task(hub.attach(s, 7, "board", None)) for s in socks]
        for sock in socks:
            sock.hello()

        def say(sock: FakeSocket, seq: int | None) -> None:
            text = json.dumps({"type": "hello", "seq": seq})
            sock.inbox.put_nowait({"type": "websocket.receive", "text": text})

        for step in steps:
            if step[0] == "flood":
                _, i, kind, count = step
                have = browsers[i].seq
                seq = {
                    "null": None,
                    "same": have,
                    "behind": None if have is None else max(0, have - 1),
                    "ahead": 10**9,
                }[kind]
                for _ in range(count):
                    say(socks[i], seq)
                await asyncio.sleep(0)
            elif step[0] == "change":
                db.seq += 1
                db.items[step[1]] = str(step[2])
                db.changed[step[1]] = db.seq
                await broker.publish(7, db.seq)
            else:
                await asyncio.sleep(step[1] / 1000)
        await settle(hub)
        elapsed = loop.time() - started
        for browser in browsers:
            assert browser.seq == db.seq and browser.items == db.items
            full = sum(1 for f in browser.frames if f.startswith(FULL))
            assert full <= elapsed / window + 2, (full, elapsed)
        # At most one full render and two deltas per window (one cut short by it).
        assert hub.stats()["renders"] <= 3 * (elapsed / window + 2)
        await hub.stop()
        await asyncio.gather(*tasks)

    asyncio.run(main())
