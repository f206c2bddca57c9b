"""Websocket fan-out for live boards: who is connected, what they get, and when.

The hub owns this process's sockets, grouped per workshop and audience ("board",
"facilitator", ...). A workshop is named by its key (the app uses the workshop's
uid, which no other workshop ever has: never its id). A broker tells it "workshop W
is at seq S", or to close W's sockets (`control`: its links were rotated, or it was
deleted: then `on_gone` callbacks forget the rest of it, in every process; a
renderer that finds the workshop missing raises `WorkshopGone`, which does the
same). It coalesces such
notices per workshop, asks the app's renderer ONCE per burst for {audience: html} and
queues the same string to every socket of that audience. Each socket has a bounded
queue and its own writer task, so a client that stops reading is closed with 1013 and
can never delay anyone else (a plain `for ws in sockets: await ws.send_text()` loop
blocks forever on such a client). Clients say hello after every (re)connect and get
the full board when they are behind, or ahead (a restored database, a forged seq).
The hub never touches the database.

Resyncs are cheap for the hub and bounded whatever a client sends: a hello costs a
parse and a comparison, and a full board is rendered at most once per workshop and
resync window (the coalescing window, at least MIN_RESYNC_WINDOW), for every socket
that wants one by then, so no socket gets more than one full board per window.
Hellos that come while one is pending fold into it; a hello with the current seq
costs nothing. A socket asking again for a board it has already had on this
connection (app.js says hello once per connection) waits longer: such sockets are
served once per repeat window (1 s), with the last full render again, not a new
one, when nothing changed since. Changes pending when a full board is due go out
first as the usual delta, so the sockets that are up to date never get a full board
for someone else's resync.

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
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .broker import GONE, REVOKE, Broker
from .protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_GONE,
    CLOSE_REVOKED,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN_LATER,
    SocketLike,
    WorkshopGone,
    parse_client_message,
)

log = logging.getLogger(__name__)

# renderer(workshop, since_seq) -> (current seq, {audience: html}); since_seq=None
# asks for the full board, otherwise only what changed after since_seq is needed.
# It raises WorkshopGone for a workshop that does not exist.
Renderer = Callable[[str, int | None], Awaitable[tuple[int, Mapping[str, str]]]]

# Full boards are rendered at most once per workshop and this many seconds, even with
# coalescing off (coalesce_ms=0): a hello flood must never render back to back.
MIN_RESYNC_WINDOW = 0.01


@dataclass(eq=False)
class _Conn:
    ws: SocketLike
    workshop: str
    audience: str
    key: str | None
    queue: asyncio.Queue[str]
    have: int | None  # seq the client's board is complete up to, once queued frames land
    # True once `have` rests on a hello or a full board we sent, not on attach's hint.
    confirmed: bool = False
    full_at: float | None = None  # loop time of the full render that last served it
    repeats: bool = False  # owed a full board it asked for again on this connection
    close_code: int | None = None
    closing: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class _Workshop:
    conns: set[_Conn] = field(default_factory=set)
    pushed: int | None = None  # newest seq rendered and queued in this process
    target: int | None = None  # newest seq announced by the broker
    needs_full: set[_Conn] = field(default_factory=set)  # sockets owed a full board
    full_at: float | None = None  # loop time the last full render started
    repeat_at: float | None = None  # loop time sockets asking again were last served
    # The last full render, (seq, {audience: html}), while no newer change is known.
    full_html: tuple[int, Mapping[str, str]] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # the pump recomputes its wait
    task: asyncio.Task[None] | None = None

    def current(self) -> int | None:
        known = [s for s in (self.pushed, self.target) if s is not None]
        return max(known) if known else None

    def changed(self) -> bool:
        """A change was announced that this process has not rendered yet."""
        return self.target is not None and (self.pushed is None or self.target > self.pushed)


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
        repeat_resync_s: float = 1.0,
    ) -> None:
        self.broker = broker
        self.renderer = renderer
        self.coalesce = coalesce_ms / 1000
        self.resync_window = max(self.coalesce, MIN_RESYNC_WINDOW)
        self.repeat_window = max(repeat_resync_s, self.resync_window)
        self.queue_size = queue_size
        self.send_timeout = send_timeout
        self.ping_interval = ping_interval  # advisory: see the module docstring
        self.max_message_bytes = max_message_bytes
        self._workshops: dict[str, _Workshop] = {}
        self._attached: set[_Conn] = set()  # attach() calls still running
        self._pumps: set[asyncio.Task[None]] = set()
        self._counts: Counter[str] = Counter()
        # Called with the key of a workshop that is gone (deleted), once its sockets
        # are closed: whatever else the process holds for it is dropped there.
        self.on_gone: list[Callable[[str], None]] = []

    # -- lifespan -------------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.start(self.notify, self._on_down, self._on_up, self.control)

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
        workshop: str,
        audience: str,
        last_seq: int | None,
        key: str | None = None,
    ) -> None:
        """Serve an accepted socket until it closes; `key` tags it for close_where().

        `last_seq` is a hint (e.g. from the URL) acted on like a first hello; None
        waits for the client's hello. The hello always has the last word."""
        conn = _Conn(ws, workshop, audience, key, asyncio.Queue(self.queue_size), last_seq)
        st = self._workshops.setdefault(workshop, _Workshop())
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
        self, workshop: str, predicate: Callable[[str | None], bool], code: int = CLOSE_REVOKED
    ) -> int:
        """Close the workshop's sockets whose key matches (e.g. a revoked credential)."""
        st = self._workshops.get(workshop)
        doomed = [c for c in st.conns if predicate(c.key)] if st else []
        for conn in doomed:
            self._close(conn, code)
        return len(doomed)

    async def control(self, workshop: str, action: str) -> None:
        """Broker callback: close the workshop's sockets. After a rotation (REVOKE)
        with 1012, so that browsers reconnect and their credentials are checked
        again; after a deletion (GONE) with 4404, for good, and `on_gone` runs."""
        if action == REVOKE:
            await self.close_where(workshop, lambda key: True, code=CLOSE_SERVICE_RESTART)
        elif action == GONE:
            self.gone(workshop)
        else:
            log.warning("realtime: ignoring unknown action %r for %s", action, workshop)

    def gone(self, workshop: str) -> int:
        """The workshop no longer exists: close its sockets (4404) and forget it."""
        st = self._workshops.get(workshop)
        doomed = list(st.conns) if st else []
        for conn in doomed:
            self._close(conn, CLOSE_GONE)
        for callback in self.on_gone:
            try:
                callback(workshop)
            except Exception:
                log.exception("realtime: forgetting workshop %s failed", workshop)
        return len(doomed)

    def workshops(self) -> list[str]:
        """The keys of the workshops this process holds sockets for."""
        return list(self._workshops)

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
            "full_renders": self._counts["full_renders"],
            "full_reused": self._counts["full_reused"],
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
            if text is None:
                size = len(msg.get("bytes") or b"")
            else:  # characters <= UTF-8 bytes: encode only when the length does not settle it
                size = len(text) if len(text) > self.max_message_bytes else len(text.encode())
            if size > self.max_message_bytes:
                self._close(conn, CLOSE_TOO_BIG)
                return
            if conn.close_code is not None:
                return  # closed meanwhile (revoked, too slow): attach() is ending it
            hello = parse_client_message(text) if text is not None else None
            if hello is None:
                continue  # htmx form posts and anything else are not ours to handle
            seq = hello.seq
            if seq is None and self._served_this_window(conn):
                continue  # it crossed (or repeats) a hello whose full board is on its way
            if seq is None or not conn.confirmed or conn.have is None or seq > conn.have:
                conn.have, conn.confirmed = seq, True
            # else the client is behind only by frames already queued on this connection
            # (hello crossed them on the wire): they will bring it to conn.have.
            st = self._workshops.get(conn.workshop)
            if st is not None and conn in st.conns:
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
        st = self._workshops.get(conn.workshop)
        if st is None or conn not in st.conns:
            return
        st.conns.discard(conn)
        st.needs_full.discard(conn)
        if not st.conns:  # a running pump sees no sockets and ends by itself
            del self._workshops[conn.workshop]

    # -- notifications and rendering --------------------------------------------------

    async def notify(self, workshop: str, seq: int) -> None:
        """Broker callback: workshop changed and is now at seq."""
        st = self._workshops.get(workshop)
        if st is None:  # no socket for it in this process: nothing to render
            return
        if st.target is None or seq > st.target:
            st.target = seq
            st.wake.set()  # a pump waiting for a full board due later renders this sooner
        self._ensure_pump(workshop, st)

    async def _on_down(self) -> None:
        # Messages are being lost: make every client reconnect, say hello and resync.
        for conn in list(self._attached):
            self._close(conn, CLOSE_SERVICE_RESTART)

    async def _on_up(self) -> None:
        # Sockets opened during the outage missed every change since: push full boards.
        for workshop, st in self._workshops.items():
            for conn in st.conns:
                conn.have, conn.confirmed, conn.repeats = None, False, False
            st.full_html = None  # notices were lost meanwhile: render afresh
            st.needs_full.update(st.conns)
            st.wake.set()
            self._ensure_pump(workshop, st)

    def _resync_if_behind(self, st: _Workshop, conn: _Conn) -> None:
        current = st.current()
        if conn.have is not None and conn.have == current:
            st.needs_full.discard(conn)  # up to date: nothing until the next change
            conn.repeats = False
            return
        # Behind; ahead (a restored database, a forged seq, or a change announced to
        # another process and not yet to this one); or we do not know the current seq
        # yet: a full render settles it. Already owed one: this hello is folded into it.
        if conn not in st.needs_full:
            conn.repeats = conn.full_at is not None
            st.needs_full.add(conn)
            st.wake.set()
        self._ensure_pump(conn.workshop, st)

    def _ensure_pump(self, workshop: str, st: _Workshop) -> None:
        if st.task is None:
            st.task = asyncio.create_task(self._pump(workshop, st))
            self._pumps.add(st.task)
            st.task.add_done_callback(self._pumps.discard)

    def _served_this_window(self, conn: _Conn) -> bool:
        """A full render for this socket started less than a resync window ago."""
        now = asyncio.get_running_loop().time()
        return conn.full_at is not None and now < conn.full_at + self.resync_window

    def _full_due(self, st: _Workshop) -> float:
        """Loop time from which the workshop's next full render may start."""
        return -math.inf if st.full_at is None else st.full_at + self.resync_window

    def _next_full(self, st: _Workshop) -> float:
        """Loop time from which a socket owed a full board may get it (inf: none owed)."""
        if not st.needs_full:
            return math.inf
        due = self._full_due(st)
        if st.repeat_at is not None and all(conn.repeats for conn in st.needs_full):
            due = max(due, st.repeat_at + self.repeat_window)
        return due

    def _owed_now(self, st: _Workshop, now: float) -> set[_Conn]:
        """The sockets whose full board is due at `now`: those asking again on the same
        connection only once per repeat window, all the others once per resync window."""
        if not st.needs_full or now < self._full_due(st):
            return set()
        if st.repeat_at is None or now >= st.repeat_at + self.repeat_window:
            return set(st.needs_full)
        return {conn for conn in st.needs_full if not conn.repeats}

    async def _wait_turn(self, st: _Workshop) -> None:
        """Wait out the coalescing window, so that a burst of changes makes one render,
        or until a full board is due if a socket is owed one: whichever comes first.
        With only a full board owed, wait for it. Hellos and notices wake the wait to
        recompute it; they never make it shorter than that."""
        loop = asyncio.get_running_loop()
        change_due = loop.time() + self.coalesce
        while True:
            due = change_due if st.changed() or not st.needs_full else math.inf
            due = min(due, self._next_full(st))
            remaining = due - loop.time()
            if remaining <= 0:
                return
            st.wake.clear()
            try:
                async with asyncio.timeout(remaining):
                    await st.wake.wait()
            except TimeoutError:
                return

    async def _render(
        self, workshop: str, since: int | None
    ) -> tuple[int, Mapping[str, str]] | None:
        try:
            result = await self.renderer(workshop, since)
        except WorkshopGone:
            # Deleted, and this process missed the broker's word (lost, or sent by a
            # process without Redis): the socket waiting for this render learns now.
            self.gone(workshop)
            return None
        except Exception:
            # Logged, not retried in a loop: the next change or hello renders again.
            self._counts["render_errors"] += 1
            log.exception("realtime: rendering workshop %s failed", workshop)
            return None
        self._counts["renders"] += 1
        return result

    async def _pump(self, workshop: str, st: _Workshop) -> None:
        """Render and queue until nothing is pending; one pump per workshop at a time,
        so frames reach every queue in render order."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wait_turn(st)
                if not st.conns:
                    return
                if not (self._owed_now(st, loop.time()) or st.changed()):
                    if st.needs_full:
                        continue  # a full board is owed but not due yet: wait for it
                    return
                if st.changed() and st.pushed is not None:
                    # The delta first, also when a full board is due: the sockets that
                    # are up to date get it, not a full board.
                    since = st.pushed
                    delta = await self._render(workshop, since)
                    if delta is None:
                        return
                    self._deliver(st, delta[0], since, delta[1])
                # Due now, or this process has rendered nothing for the workshop yet.
                asked = self._owed_now(st, loop.time())
                if st.conns and (asked or (st.changed() and st.pushed is None)):
                    st.needs_full -= asked
                    cached = self._reusable_full(st, asked)
                    st.full_at = loop.time()
                    if any(conn.repeats for conn in asked):
                        st.repeat_at = st.full_at
                    for conn in asked:
                        conn.full_at, conn.repeats = st.full_at, False
                    if cached is not None:
                        self._counts["full_reused"] += 1
                        self._deliver(st, cached[0], None, cached[1], asked, only_asked=True)
                        continue
                    self._counts["full_renders"] += 1
                    full = await self._render(workshop, None)
                    if full is None:
                        st.needs_full |= asked & st.conns  # still owed: next hello or change
                        return
                    st.full_html = full
                    self._deliver(st, full[0], None, full[1], asked)
        finally:
            st.task = None

    def _reusable_full(
        self, st: _Workshop, asked: set[_Conn]
    ) -> tuple[int, Mapping[str, str]] | None:
        """The last full render, if it still shows the workshop's current state and
        every socket asking has had a full board on this connection already (app.js
        says hello once per connection: asking again is a client repeating itself).
        A socket's first full board is always rendered afresh, so that a reconnect
        heals whatever a notice lost by the broker left stale."""
        cached = st.full_html
        if cached is None or st.changed() or cached[0] != st.current():
            return None
        if any(conn.full_at is None for conn in asked):
            return None
        return cached

    def _deliver(
        self,
        st: _Workshop,
        seq: int,
        since: int | None,
        html: Mapping[str, str],
        asked: set[_Conn] | frozenset[_Conn] = frozenset(),
        *,
        only_asked: bool = False,
    ) -> None:
        """Queue a render: `since` None is a full board, for every socket behind (or
        without a board) and for those in `asked` that claimed a seq ahead of it;
        with `only_asked`, for those in `asked` only."""
        if st.pushed is None or seq > st.pushed:
            st.pushed = seq
        if st.full_html is not None and seq > st.full_html[0]:
            st.full_html = None  # stale now; frees the memory
        for conn in list(asked if only_asked else st.conns):
            if since is None and conn.repeats and conn in st.needs_full:
                continue  # it asked again and its turn has not come: not this board either
            if conn.have is not None and conn.have >= seq:
                # Ahead of a full render it asked for: that board is newer than the
                # database (restored) or never existed (forged). This one is the truth.
                if not (since is None and conn.have > seq and conn in asked):
                    continue
            elif since is not None and (conn.have is None or conn.have < since):
                st.needs_full.add(conn)  # a delta would leave a gap on this board
                continue
            text = html.get(conn.audience)
            if text is None:  # nothing for this audience in this render
                conn.have = seq
                continue
            if since is None:  # it is served: a resync it asked for meanwhile is moot
                conn.full_at = st.full_at
                st.needs_full.discard(conn)
            self._offer(conn, seq, text, full=since is None)
