"""Brokers against real Redis: delivery, fan-out across two app processes, and an
outage (a private redis-server killed and restarted). Redis tests skip when Redis is
unreachable unless REQUIRE_REDIS=1."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from app.realtime.broker import (
    GONE,
    REVOKE,
    MemoryBroker,
    RedisBroker,
    announce,
    decode,
    encode,
    make_broker,
)
from tests.realtime.conftest import (
    Harness,
    RedisServer,
    close_code,
    frame_seq,
    hello,
    open_ws,
    recv,
    wait_until,
)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, int]] = []
        self.controls: list[tuple[str, str]] = []
        self.events: list[str] = []

    async def on_message(self, workshop: str, seq: int) -> None:
        self.messages.append((workshop, seq))

    async def on_control(self, workshop: str, action: str) -> None:
        self.controls.append((workshop, action))

    async def on_down(self) -> None:
        self.events.append("down")

    async def on_up(self) -> None:
        self.events.append("up")


async def eventually(check, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def test_wire_format_and_factory() -> None:
    # Workshops are named by key (the app's uid), so a message never names an id.
    uid = uuid.uuid4().hex
    assert decode(encode(uid, 345)) == (uid, 345)
    assert decode(b"12:345") == ("12", 345)
    assert decode(encode(uid, GONE)) == (uid, GONE)
    assert decode(encode(uid, REVOKE)) == (uid, REVOKE)
    for bad in (
        "12",
        "a:1x",
        b"1:-2",
        ":3",
        "a b:1",
        "k:explode",
        "k:" + "9" * 30,
        "x" * 65 + ":1",
    ):
        assert decode(bad) is None, bad
    assert isinstance(make_broker(""), MemoryBroker)
    assert isinstance(make_broker("redis://127.0.0.1:1/0"), RedisBroker)


def test_memory_broker_delivers_once_started() -> None:
    async def main() -> None:
        broker, rec = MemoryBroker(), Recorder()
        await broker.publish("w1", 1)  # nobody listening yet: dropped, no error
        await broker.start(rec.on_message, rec.on_down, rec.on_up, rec.on_control)
        await broker.publish("w1", 2)
        await broker.control("w1", GONE)
        await broker.stop()
        await broker.publish("w1", 3)
        assert rec.messages == [("w1", 2)]
        assert rec.controls == [("w1", GONE)]

    asyncio.run(main())


def test_redis_broker_fans_out_to_every_subscriber(redis_url: str) -> None:
    async def main() -> None:
        channel = f"test:{uuid.uuid4().hex}"
        a, b = RedisBroker(redis_url, channel), RedisBroker(redis_url, channel)
        rec_a, rec_b = Recorder(), Recorder()
        await a.start(rec_a.on_message, rec_a.on_down, rec_a.on_up, rec_a.on_control)
        await b.start(rec_b.on_message, rec_b.on_down, rec_b.on_up, rec_b.on_control)
        await a.publish("w3", 9)
        await eventually(lambda: rec_a.messages and rec_b.messages)
        assert rec_a.messages == rec_b.messages == [("w3", 9)]
        await b.control("w3", REVOKE)
        # A process without a hub (``lessons purge``) is heard by every one.
        assert await announce(redis_url, channel, [("w4", GONE)])
        await eventually(lambda: len(rec_a.controls) == len(rec_b.controls) == 2)
        assert rec_a.controls == rec_b.controls == [("w3", REVOKE), ("w4", GONE)]
        assert rec_a.events == rec_b.events == []
        await a.stop()
        await b.stop()

    asyncio.run(main())


def test_redis_broker_reports_down_once_and_up_again(redis_server: RedisServer) -> None:
    async def main() -> None:
        broker = RedisBroker(redis_server.url, ping_interval=0.3, timeout=0.5, backoff_max=0.2)
        rec = Recorder()
        await broker.start(rec.on_message, rec.on_down, rec.on_up)
        await broker.publish("1", 1)
        await eventually(lambda: rec.messages == [("1", 1)])
        redis_server.kill()
        await eventually(lambda: rec.events == ["down"])
        await broker.publish("1", 2)  # must not raise: logged and dropped
        await broker.control("1", GONE)  # nor this
        assert not await announce(redis_server.url, "x", [("1", GONE)], timeout=0.3)
        assert broker.dropped >= 1
        await asyncio.sleep(0.5)  # several failed reconnects: still a single "down"
        assert rec.events == ["down"]
        await asyncio.to_thread(redis_server.start)
        await eventually(lambda: rec.events == ["down", "up"])
        await broker.publish("1", 3)
        await eventually(lambda: rec.messages == [("1", 1), ("1", 3)])
        await broker.stop()

    asyncio.run(main())


def test_a_publish_in_one_process_reaches_sockets_in_another(
    redis_url: str, tmp_path: Path, workshop_id: int
) -> None:
    env = {"HUB_REDIS_URL": redis_url, "HUB_CHANNEL": f"test:{uuid.uuid4().hex}"}
    state = tmp_path / "state.db"  # the "database" both processes render from
    a, b = Harness(state, wait=False, **env), Harness(state, wait=False, **env)
    try:
        a.wait()  # started side by side: each takes a second to import and boot
        b.wait()

        async def main() -> None:
            ws = await open_ws(b.url(workshop_id, seq=0))
            await hello(ws, 0)
            seq = a.bump(workshop_id)
            assert frame_seq(await recv(ws)) == seq == 1
            await ws.close()

        asyncio.run(main())
    finally:
        a.close()
        b.close()


def test_redis_outage_closes_sockets_and_recovers(
    redis_server: RedisServer, tmp_path: Path, workshop_id: int
) -> None:
    server = Harness(tmp_path / "state.db", HUB_REDIS_URL=redis_server.url)
    try:

        async def main() -> None:
            sockets = [await open_ws(server.url(workshop_id, seq=0)) for _ in range(3)]
            for ws in sockets:
                await hello(ws, 0)
            wait_until(lambda: server.stats()["sockets"].get("board") == 3, 3)
            redis_server.kill()
            for ws in sockets:  # every client is told to reconnect and resync
                assert await close_code(ws, 5) == 1012
            assert server.stats()["broker_up"] is False  # HTTP still answers
            seq = server.bump(workshop_id)  # publish is dropped, not raised
            # A socket opened during the outage gets a full board once Redis is back.
            during = await open_ws(server.url(workshop_id, seq=seq))
            await hello(during, seq)
            seq = server.bump(workshop_id)
            await asyncio.to_thread(redis_server.start)
            await asyncio.to_thread(wait_until, lambda: server.stats()["broker_up"], 5)
            frame = await recv(during, 3)
            assert frame_seq(frame) == seq and 'data-kind="full"' in frame
            fresh = await open_ws(server.url(workshop_id, seq=seq))
            await hello(fresh, seq)
            seq = server.bump(workshop_id)
            assert frame_seq(await recv(fresh, 3)) == seq
            assert frame_seq(await recv(during, 3)) == seq
            await fresh.close()
            await during.close()

        asyncio.run(main())
    finally:
        server.close()
