"""Notifications between processes: "workshop W is now at seq S", and "close
workshop W's sockets" (its links were rotated, or it was deleted).

This module owns the seam between the process that committed a change (it calls
`publish`, or `control`) and every process's hub (the broker calls `on_message`, or
`on_control`). A workshop is named by its key, the uid (never its id: an id given
again, by a restored database say, would make a message about one workshop reach
another's sockets). A message is only "key:seq" or "key:action": boards are
re-rendered from the database, so there is no history to keep and a lost message
merely delays an update until the next one or a resync (a lost "gone" is caught by
the renderer, which finds the workshop missing, and by the hub's sweep).
`MemoryBroker` serves a single process. `RedisBroker` fans out over one Redis pub/sub
channel and, unlike a plain subscriber, notices when Redis goes away (connection
errors, read timeouts, its own PINGs while idle): it calls `on_down` once, retries with
backoff and calls `on_up` when it is back, so the hub can make clients resync.
`publish` never raises into the caller: while Redis is down it logs and drops.
`announce` publishes from a process that runs no hub (``lessons purge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger(__name__)

OnMessage = Callable[[str, int], Awaitable[None]]
OnControl = Callable[[str, str], Awaitable[None]]
OnEvent = Callable[[], Awaitable[None]]

# What a control message may ask of every process's hub for one workshop.
REVOKE = "revoke"  # its links were rotated: close its sockets, they reconnect if still allowed
GONE = "gone"  # it was deleted: close its sockets for good, forget all of it
ACTIONS = frozenset({REVOKE, GONE})
_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Broker(Protocol):
    async def publish(self, workshop: str, seq: int) -> None: ...

    async def control(self, workshop: str, action: str) -> None: ...

    async def start(
        self,
        on_message: OnMessage,
        on_down: OnEvent,
        on_up: OnEvent,
        on_control: OnControl | None = None,
    ) -> None: ...

    async def stop(self) -> None: ...


def encode(workshop: str | int, what: int | str) -> str:
    """ "key:seq" for a change, "key:action" for a control message."""
    return f"{workshop}:{what}"


def decode(data: bytes | str) -> tuple[str, int | str] | None:
    """Parse "key:seq" (an int) or "key:action" (one of ``ACTIONS``); None for
    anything malformed (it is logged and skipped)."""
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    head, sep, tail = text.partition(":")
    if not sep or not _KEY.fullmatch(head):
        return None
    if tail.isascii() and tail.isdigit() and len(tail) < 20:
        return head, int(tail)
    if tail in ACTIONS:
        return head, tail
    return None


async def _call(callback: Callable[..., Awaitable[None]], *args: Any) -> None:
    # A failing hub callback must not kill the listener that serves every workshop.
    try:
        await callback(*args)
    except Exception:
        log.exception("realtime broker callback %r failed", callback)


async def _dispatch(
    parsed: tuple[str, int | str], on_message: OnMessage, on_control: OnControl | None
) -> None:
    key, what = parsed
    if isinstance(what, int):
        await _call(on_message, key, what)
    elif on_control is not None:
        await _call(on_control, key, what)


class MemoryBroker:
    """Single-process broker: publish hands the message straight to the hub."""

    def __init__(self) -> None:
        self._on_message: OnMessage | None = None
        self._on_control: OnControl | None = None
        self.up = True

    async def start(
        self,
        on_message: OnMessage,
        on_down: OnEvent,
        on_up: OnEvent,
        on_control: OnControl | None = None,
    ) -> None:
        self._on_message = on_message
        self._on_control = on_control

    async def stop(self) -> None:
        self._on_message = None
        self._on_control = None

    async def publish(self, workshop: str, seq: int) -> None:
        if self._on_message is not None:  # not started: nobody is listening yet
            await _call(self._on_message, workshop, seq)

    async def control(self, workshop: str, action: str) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if self._on_control is not None:
            await _call(self._on_control, workshop, action)


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

    async def start(
        self,
        on_message: OnMessage,
        on_down: OnEvent,
        on_up: OnEvent,
        on_control: OnControl | None = None,
    ) -> None:
        # One retry for publishing: after an outage the pooled connection is dead and
        # the retry goes out on a fresh one (still quick: it is refused while down).
        self._client = self._connect(retries=1)
        self._ready.clear()
        self._task = asyncio.create_task(
            self._listen(on_message, on_down, on_up, on_control), name="realtime-redis-listener"
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

    async def publish(self, workshop: str, seq: int) -> None:
        await self._send(workshop, seq)

    async def control(self, workshop: str, action: str) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        await self._send(workshop, action)

    async def _send(self, workshop: str, what: int | str) -> None:
        client = self._client
        if client is None or not self.up:
            # Known to be down: fail fast instead of stalling the request on a connect.
            self._drop(workshop, what, "redis is down")
            return
        try:
            async with asyncio.timeout(self.timeout):
                await client.publish(self.channel, encode(workshop, what))
        except Exception as exc:  # the caller's change is committed; never fail it here
            self._drop(workshop, what, repr(exc))

    def _drop(self, workshop: str, what: int | str, why: str) -> None:
        self.dropped += 1
        log.warning("realtime: dropped notification %s:%s (%s)", workshop, what, why)

    async def _listen(
        self,
        on_message: OnMessage,
        on_down: OnEvent,
        on_up: OnEvent,
        on_control: OnControl | None = None,
    ) -> None:
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
                await self._pump(pubsub, on_message, on_control)
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

    async def _pump(
        self, pubsub: Any, on_message: OnMessage, on_control: OnControl | None = None
    ) -> None:
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
                        await _dispatch(parsed, on_message, on_control)
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


async def announce(
    url: str, channel: str, messages: Iterable[tuple[str, int | str]], *, timeout: float = 2.0
) -> bool:
    """Publish from a process that runs no hub (the command line): True if
    Redis took every message. Never raises: what was to be announced is done
    in the database already, and serving processes check it anyway."""
    client = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        async with asyncio.timeout(timeout * 5):
            for workshop, what in messages:
                await client.publish(channel, encode(workshop, what))
        return True
    except Exception as exc:
        log.warning("realtime: could not announce on %s (%r)", channel, exc)
        return False
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
