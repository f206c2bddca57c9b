"""Change notifications between processes: "workshop W is now at seq S".

This module owns the seam between the process that committed a change (it calls
`publish`) and every process's hub (the broker calls `on_message`). A message is only
"workshop_id:seq": boards are re-rendered from the database, so there is no history to
keep and a lost message merely delays an update until the next one or a resync.
`MemoryBroker` serves a single process. `RedisBroker` fans out over one Redis pub/sub
channel and, unlike a plain subscriber, notices when Redis goes away (connection
errors, read timeouts, its own PINGs while idle): it calls `on_down` once, retries with
backoff and calls `on_up` when it is back, so the hub can make clients resync.
`publish` never raises into the caller: while Redis is down it logs and drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger(__name__)

OnMessage = Callable[[int, int], Awaitable[None]]
OnEvent = Callable[[], Awaitable[None]]


class Broker(Protocol):
    async def publish(self, workshop_id: int, seq: int) -> None: ...

    async def start(self, on_message: OnMessage, on_down: OnEvent, on_up: OnEvent) -> None: ...

    async def stop(self) -> None: ...


def encode(workshop_id: int, seq: int) -> str:
    return f"{workshop_id}:{seq}"


def decode(data: bytes | str) -> tuple[int, int] | None:
    """Parse "workshop_id:seq"; None for anything malformed (it is logged and skipped)."""
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    head, sep, tail = text.partition(":")
    if not sep or not head.isdigit() or not tail.isdigit():
        return None
    return int(head), int(tail)


async def _call(callback: Callable[..., Awaitable[None]], *args: int) -> None:
    # A failing hub callback must not kill the listener that serves every workshop.
    try:
        await callback(*args)
    except Exception:
        log.exception("realtime broker callback %r failed", callback)


class MemoryBroker:
    """Single-process broker: publish hands the message straight to the hub."""

    def __init__(self) -> None:
        self._on_message: OnMessage | None = None
        self.up = True

    async def start(self, on_message: OnMessage, on_down: OnEvent, on_up: OnEvent) -> None:
        self._on_message = on_message

    async def stop(self) -> None:
        self._on_message = None

    async def publish(self, workshop_id: int, seq: int) -> None:
        if self._on_message is not None:  # not started: nobody is listening yet
            await _call(self._on_message, workshop_id, seq)


class RedisBroker:
    """One Redis pub/sub channel shared by every app process.

    `timeout` bounds connecting, publishing and waiting for a PONG; after
    `ping_interval` seconds without traffic the listener PINGs, so a silently dead
    connection is noticed within ping_interval + timeout.
    """

    def __init__(
        self,
        url: str,
        channel: str = "lessons:events",
        *,
        ping_interval: float = 5.0,
        timeout: float = 2.0,
        backoff_min: float = 0.1,
        backoff_max: float = 5.0,
    ) -> None:
        self.url = url
        self.channel = channel
        self.ping_interval = ping_interval
        self.timeout = timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.up = True  # flips only on transitions, so on_down/on_up fire once each
        self.dropped = 0  # publishes lost while Redis was unreachable
        self._client: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def _connect(self, retries: int) -> aioredis.Redis:
        return aioredis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), retries),
        )

    async def start(self, on_message: OnMessage, on_down: OnEvent, on_up: OnEvent) -> None:
        # One retry for publishing: after an outage the pooled connection is dead and
        # the retry goes out on a fresh one (still quick: it is refused while down).
        self._client = self._connect(retries=1)
        self._ready.clear()
        self._task = asyncio.create_task(
            self._listen(on_message, on_down, on_up), name="realtime-redis-listener"
        )
        # Wait for the first subscribe attempt so a publish right after start is heard
        # here too; if Redis is down we go on and the listener keeps retrying.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2 * self.timeout):
                await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None

    async def publish(self, workshop_id: int, seq: int) -> None:
        client = self._client
        if client is None or not self.up:
            # Known to be down: fail fast instead of stalling the request on a connect.
            self._drop(workshop_id, seq, "redis is down")
            return
        try:
            async with asyncio.timeout(self.timeout):
                await client.publish(self.channel, encode(workshop_id, seq))
        except Exception as exc:  # the caller's change is committed; never fail it here
            self._drop(workshop_id, seq, repr(exc))

    def _drop(self, workshop_id: int, seq: int, why: str) -> None:
        self.dropped += 1
        log.warning("realtime: dropped notification %s:%s (%s)", workshop_id, seq, why)

    async def _listen(self, on_message: OnMessage, on_down: OnEvent, on_up: OnEvent) -> None:
        backoff = self.backoff_min
        while True:
            # No retries: redis-py would otherwise reconnect and resubscribe silently,
            # hiding the very outage during which clients missed messages.
            client = self._connect(retries=0)
            pubsub = client.pubsub()
            try:
                await self._subscribe(pubsub)
                if not self.up:
                    self.up = True
                    log.info("realtime: redis is back")
                    await _call(on_up)
                self._ready.set()
                backoff = self.backoff_min
                await self._pump(pubsub, on_message)
            except Exception as exc:
                if self.up:
                    self.up = False
                    log.warning("realtime: redis unreachable (%r); retrying", exc)
                    await _call(on_down)
            finally:
                self._ready.set()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.timeout):
                        await pubsub.aclose()
                        await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max)

    async def _subscribe(self, pubsub: Any) -> None:
        # The confirmation proves the server answered, not just that a socket opened.
        async with asyncio.timeout(self.timeout):
            await pubsub.subscribe(self.channel)
            while True:
                msg = await pubsub.get_message(timeout=self.timeout)
                if msg is not None and msg["type"] == "subscribe":
                    return

    async def _pump(self, pubsub: Any, on_message: OnMessage) -> None:
        """Deliver messages until the connection fails (always ends by raising)."""
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        ping_sent_at: float | None = None
        while True:
            if ping_sent_at is None:
                deadline = last_heard + self.ping_interval
            else:
                deadline = ping_sent_at + self.timeout
            wait = max(0.01, deadline - loop.time())
            msg = await pubsub.get_message(timeout=wait)
            now = loop.time()
            if msg is not None:  # any reply, our PONG included, proves the link is alive
                last_heard, ping_sent_at = now, None
                if msg["type"] == "message":
                    parsed = decode(msg["data"])
                    if parsed is None:
                        log.warning("realtime: ignoring malformed message %r", msg["data"])
                    else:
                        await _call(on_message, *parsed)
            elif ping_sent_at is not None and now >= ping_sent_at + self.timeout:
                raise TimeoutError("redis did not answer PING")
            elif ping_sent_at is None and now >= last_heard + self.ping_interval:
                await pubsub.ping()
                ping_sent_at = now


def make_broker(redis_url: str | None, **redis_options: Any) -> Broker:
    """RedisBroker when a URL is configured (several processes), else MemoryBroker."""
    if redis_url:
        return RedisBroker(redis_url, **redis_options)
    return MemoryBroker()
