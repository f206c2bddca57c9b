"""Websocket fan-out for live boards: who is connected, what they get, and when.

The hub owns this process's sockets, grouped per workshop and audience ("board",
"facilitator", ...). A broker tells it "workshop W is at seq S"; it coalesces such
notices per workshop, asks the app's renderer ONCE per burst for {audience: html} and
queues the same string to every socket of that audience. Each socket has a bounded
queue and its own writer task, so a client that stops reading is closed with 1013 and
can never delay anyone else (a plain `for ws in sockets: await ws.send_text()` loop
blocks forever on such a client). Clients say hello after every (re)connect and get
the full board when they are behind. The hub never touches the database.

Heartbeats: ASGI has no ping message, so the hub sends none. uvicorn sends
protocol-level pings itself (`--ws-ping-interval`, default 20 s, and closes sockets
whose pong does not come within `--ws-ping-timeout`); its websockets, websockets-sansio
and wsproto implementations all do. An app-level text frame would be handed to htmx's
swap logic, so `ping_interval` is only recorded to be passed on to uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .broker import Broker
from .protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_REVOKED,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN_LATER,
    SocketLike,
    parse_client_message,
)

log = logging.getLogger(__name__)

# renderer(workshop_id, since_seq) -> (current seq, {audience: html}); since_seq=None
# asks for the full board, otherwise only what changed after since_seq is needed.
Renderer = Callable[[int, int | None], Awaitable[tuple[int, Mapping[str, str]]]]


@dataclass(eq=False)
class _Conn:
    ws: SocketLike
    workshop_id: int
    audience: str
    key: str | None
    queue: asyncio.Queue[str]
    have: int | None  # seq the client's board is complete up to, once queued frames land
    # True once `have` rests on a hello or a full board we sent, not on attach's hint.
    confirmed: bool = False
    close_code: int | None = None
    closing: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class _Workshop:
    conns: set[_Conn] = field(default_factory=set)
    pushed: int | None = None  # newest seq rendered and queued in this process
    target: int | None = None  # newest seq announced by the broker
    needs_full: set[_Conn] = field(default_factory=set)
    urgent: asyncio.Event = field(default_factory=asyncio.Event)  # cuts the coalesce wait
    task: asyncio.Task[None] | None = None

    def current(self) -> int | None:
        known = [s for s in (self.pushed, self.target) if s is not None]
        return max(known) if known else None


class Hub:
    def __init__(
        self,
        broker: Broker,
        renderer: Renderer,
        *,
        coalesce_ms: float = 100,
        queue_size: int = 32,
        send_timeout: float = 5.0,
        ping_interval: float | None = 20.0,
        max_message_bytes: int = 4096,
    ) -> None:
        self.broker = broker
        self.renderer = renderer
        self.coalesce = coalesce_ms / 1000
        self.queue_size = queue_size
        self.send_timeout = send_timeout
        self.ping_interval = ping_interval  # advisory: see the module docstring
        self.max_message_bytes = max_message_bytes
        self._workshops: dict[int, _Workshop] = {}
        self._attached: set[_Conn] = set()  # attach() calls still running
        self._pumps: set[asyncio.Task[None]] = set()
        self._counts: Counter[str] = Counter()

    # -- lifespan -------------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.start(self.notify, self._on_down, self._on_up)

    async def stop(self, code: int = CLOSE_GOING_AWAY) -> None:
        # Note: htmx's ws extension reconnects after 1006/1012/1013 only, not after 1001.
        with contextlib.suppress(Exception):
            await self.broker.stop()
        for conn in list(self._attached):
            self._close(conn, code)
        # Let attach() calls send their close frames; each is bounded by send_timeout.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.send_timeout + 1):
                while self._attached:
                    await asyncio.sleep(0.01)
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    # -- sockets --------------------------------------------------------------------

    async def attach(
        self,
        ws: SocketLike,
        workshop_id: int,
        audience: str,
        last_seq: int | None,
        key: str | None = None,
    ) -> None:
        """Serve an accepted socket until it closes; `key` tags it for close_where().

        `last_seq` is a hint (e.g. from the URL) acted on like a first hello; None
        waits for the client's hello. The hello always has the last word."""
        conn = _Conn(ws, workshop_id, audience, key, asyncio.Queue(self.queue_size), last_seq)
        st = self._workshops.setdefault(workshop_id, _Workshop())
        st.conns.add(conn)
        self._attached.add(conn)
        if last_seq is not None:
            self._resync_if_behind(st, conn)
        tasks = [
            asyncio.create_task(self._write(conn)),
            asyncio.create_task(self._read(conn)),
            asyncio.create_task(conn.closing.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._forget(conn)
            if conn.close_code is not None:
                # Bounded: a client that stopped reading cannot take our close frame either.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.send_timeout):
                        await ws.close(code=conn.close_code)
            self._attached.discard(conn)

    async def close_where(
        self, workshop_id: int, predicate: Callable[[str | None], bool], code: int = CLOSE_REVOKED
    ) -> int:
        """Close the workshop's sockets whose key matches (e.g. a revoked credential)."""
        st = self._workshops.get(workshop_id)
        doomed = [c for c in st.conns if predicate(c.key)] if st else []
        for conn in doomed:
            self._close(conn, code)
        return len(doomed)

    def stats(self) -> dict[str, Any]:
        sockets: Counter[str] = Counter()
        for st in self._workshops.values():
            sockets.update(conn.audience for conn in st.conns)
        return {
            "sockets": dict(sockets),
            "workshops": len(self._workshops),
            "frames_sent": self._counts["frames_sent"],
            "closed_slow": self._counts["closed_slow"],
            "renders": self._counts["renders"],
            "render_errors": self._counts["render_errors"],
            "pending_renders": sum(1 for st in self._workshops.values() if st.task),
            "queued_frames": sum(c.queue.qsize() for c in self._attached),
        }

    async def _read(self, conn: _Conn) -> None:
        while True:
            msg = await conn.ws.receive()
            if msg.get("type") == "websocket.disconnect":
                return
            text = msg.get("text")
            size = len(text.encode()) if text is not None else len(msg.get("bytes") or b"")
            if size > self.max_message_bytes:
                self._close(conn, CLOSE_TOO_BIG)
                return
            hello = parse_client_message(text) if text is not None else None
            if hello is None:
                continue  # htmx form posts and anything else are not ours to handle
            seq = hello.seq
            if seq is None or not conn.confirmed or conn.have is None or seq > conn.have:
                conn.have, conn.confirmed = seq, True
            # else the client is behind only by frames already queued on this connection
            # (hello crossed them on the wire): they will bring it to conn.have.
            st = self._workshops.get(conn.workshop_id)
            if st is not None:
                self._resync_if_behind(st, conn)

    async def _write(self, conn: _Conn) -> None:
        while True:
            text = await conn.queue.get()
            try:
                async with asyncio.timeout(self.send_timeout):
                    await conn.ws.send_text(text)
            except TimeoutError:
                self._counts["closed_slow"] += 1
                self._close(conn, CLOSE_TRY_AGAIN_LATER)
                return
            self._counts["frames_sent"] += 1

    def _offer(self, conn: _Conn, seq: int, text: str, full: bool) -> None:
        if conn.close_code is not None:
            return
        try:
            conn.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._counts["closed_slow"] += 1
            self._close(conn, CLOSE_TRY_AGAIN_LATER)
            return
        conn.have = seq
        conn.confirmed = conn.confirmed or full

    def _close(self, conn: _Conn, code: int) -> None:
        """Drop the socket now; its attach() sends the close frame and returns."""
        if conn.close_code is None:
            conn.close_code = code
            conn.closing.set()
        self._forget(conn)

    def _forget(self, conn: _Conn) -> None:
        st = self._workshops.get(conn.workshop_id)
        if st is None or conn not in st.conns:
            return
        st.conns.discard(conn)
        st.needs_full.discard(conn)
        if not st.conns:  # a running pump sees no sockets and ends by itself
            del self._workshops[conn.workshop_id]

    # -- notifications and rendering --------------------------------------------------

    async def notify(self, workshop_id: int, seq: int) -> None:
        """Broker callback: workshop_id changed and is now at seq."""
        st = self._workshops.get(workshop_id)
        if st is None:  # no socket for it in this process: nothing to render
            return
        if st.target is None or seq > st.target:
            st.target = seq
        self._ensure_pump(workshop_id, st)

    async def _on_down(self) -> None:
        # Messages are being lost: make every client reconnect, say hello and resync.
        for conn in list(self._attached):
            self._close(conn, CLOSE_SERVICE_RESTART)

    async def _on_up(self) -> None:
        # Sockets opened during the outage missed every change since: push full boards.
        for workshop_id, st in self._workshops.items():
            for conn in st.conns:
                conn.have, conn.confirmed = None, False
            st.needs_full.update(st.conns)
            st.urgent.set()
            self._ensure_pump(workshop_id, st)

    def _resync_if_behind(self, st: _Workshop, conn: _Conn) -> None:
        current = st.current()
        if conn.have is not None and current is not None and conn.have >= current:
            return  # up to date: nothing until the next change
        # Behind, or we do not know the current seq yet: a full render settles it.
        st.needs_full.add(conn)
        st.urgent.set()
        self._ensure_pump(conn.workshop_id, st)

    def _ensure_pump(self, workshop_id: int, st: _Workshop) -> None:
        if st.task is None:
            st.task = asyncio.create_task(self._pump(workshop_id, st))
            self._pumps.add(st.task)
            st.task.add_done_callback(self._pumps.discard)

    async def _pump(self, workshop_id: int, st: _Workshop) -> None:
        """Render and queue until nothing is pending; one pump per workshop at a time,
        so frames reach every queue in render order."""
        try:
            while True:
                if not st.needs_full and self.coalesce > 0:
                    # Coalesce a burst of changes; a hello wanting a full board cuts it short.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.coalesce):
                            await st.urgent.wait()
                st.urgent.clear()
                wanted = bool(st.needs_full)
                st.needs_full.clear()
                changed = st.target is not None and (st.pushed is None or st.target > st.pushed)
                if not st.conns or not (wanted or changed):
                    return
                since = None if wanted else st.pushed
                try:
                    seq, html = await self.renderer(workshop_id, since)
                except Exception:
                    # Logged, not retried in a loop: the next change or hello renders again.
                    self._counts["render_errors"] += 1
                    log.exception("realtime: rendering workshop %s failed", workshop_id)
                    return
                self._counts["renders"] += 1
                self._deliver(st, seq, since, html)
        finally:
            st.task = None

    def _deliver(self, st: _Workshop, seq: int, since: int | None, html: Mapping[str, str]) -> None:
        if st.pushed is None or seq > st.pushed:
            st.pushed = seq
        for conn in list(st.conns):
            if conn.have is not None and conn.have >= seq:
                continue
            if since is not None and (conn.have is None or conn.have < since):
                st.needs_full.add(conn)  # a delta would leave a gap on this board
                continue
            text = html.get(conn.audience)
            if text is None:  # nothing for this audience in this render
                conn.have = seq
                continue
            self._offer(conn, seq, text, full=since is None)
