"""Wires the hub to the app: the renderer that turns a workshop's new events
into one frame per audience (rendered in a worker thread, since the database
layer is synchronous), publishing after commit, closing sockets whose
credentials were revoked, and making a deletion known to every process.

Workshops are named by their uid here and on the broker, never by their id.
A deleted workshop is announced on the broker (``gone``): every process
closes its sockets and runs the hub's ``on_gone`` callbacks (the app drops
its prepared files there). A process that missed the word (Redis lost the
message, or ``lessons purge`` ran without Redis) learns it from the renderer,
which finds the workshop missing, or from the sweep, which looks up every
``sweep_interval`` seconds whether the workshops it holds sockets for exist."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping

import anyio.to_thread
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from app.config import Settings
from app.db import read_engine
from app.domain import events
from app.models import Workshop
from app.realtime.broker import GONE, REVOKE, announce, make_broker
from app.realtime.hub import Hub
from app.realtime.protocol import WorkshopGone
from app.render import render_push

log = logging.getLogger(__name__)

WORKSHOP_WIDE = ("workshop.", "participant.")
SWEEP_INTERVAL = 30.0


def channel(settings: Settings) -> str:
    """One channel per deployment (derived from its secret): two apps sharing
    a Redis must not hear each other's messages."""
    return f"lessons:events:{settings.deployment_tag()}"


def announce_gone(settings: Settings, uids: Iterable[str]) -> bool:
    """From a process without a hub (``lessons purge``): tell every serving
    process that these workshops are gone. False if that could not be said
    (no Redis configured, or Redis did not answer); the servers find out
    anyway, from the database, within ``SWEEP_INTERVAL``."""
    uids = list(uids)
    if not uids:
        return True
    if not settings.redis_url:
        return False
    return asyncio.run(announce(settings.redis_url, channel(settings), [(u, GONE) for u in uids]))


class Realtime:
    def __init__(self, settings: Settings, engine: Engine, join_url_for: object) -> None:
        self.settings = settings
        self.engine = read_engine(engine)
        self.join_url_for = join_url_for
        self.broker = (
            make_broker(settings.redis_url, channel=channel(settings))
            if settings.redis_url
            else make_broker(None)
        )
        self.hub = Hub(
            self.broker,
            self.render,
            coalesce_ms=settings.coalesce_ms,
            queue_size=settings.ws_queue_size,
            send_timeout=settings.ws_send_timeout,
            ping_interval=settings.ws_ping_interval,
            max_message_bytes=settings.ws_max_frame_bytes,
        )
        self.sweep_interval = SWEEP_INTERVAL
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.hub.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="realtime-sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        # 1012 ("service restart"): the htmx ws extension reconnects only after
        # 1006, 1012 and 1013, and a restarting server wants its clients back.
        await self.hub.stop(code=1012)

    async def publish(self, uid: str, seq: int) -> None:
        await self.broker.publish(uid, seq)

    async def revoke(self, uid: str) -> None:
        """Links were rotated: close every socket of the workshop, in every
        process; the ones whose credentials still hold reconnect at once."""
        await self.hub.control(uid, REVOKE)  # here at once, whatever Redis does
        await self.broker.control(uid, REVOKE)

    async def gone(self, uid: str) -> None:
        """The workshop was deleted: in every process, close its sockets for
        good and drop what is kept for it (the hub's ``on_gone``)."""
        self.hub.gone(uid)  # here at once, whatever Redis does
        await self.broker.control(uid, GONE)

    async def sweep(self) -> int:
        """Close the sockets of workshops that no longer exist; how many were."""
        held = self.hub.workshops()
        if not held:
            return 0
        existing = await anyio.to_thread.run_sync(self._existing, held)
        missing = [uid for uid in held if uid not in existing]
        for uid in missing:
            self.hub.gone(uid)
        return len(missing)

    def _existing(self, uids: list[str]) -> set[str]:
        with Session(self.engine) as session:
            return set(session.exec(select(Workshop.uid).where(col(Workshop.uid).in_(uids))))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("realtime: the sweep for deleted workshops failed")

    async def render(self, uid: str, since_seq: int | None) -> tuple[int, Mapping[str, str]]:
        return await anyio.to_thread.run_sync(self._render_sync, uid, since_seq)

    def _render_sync(self, uid: str, since_seq: int | None) -> tuple[int, Mapping[str, str]]:
        with Session(self.engine) as session:
            workshop = session.exec(select(Workshop).where(Workshop.uid == uid)).first()
            if workshop is None or workshop.id is None:
                raise WorkshopGone(uid)
            workshop_id = workshop.id
            fa_ids: set[int] | None = None
            if since_seq is not None:
                changed = events.events_since(session, workshop_id, since_seq)
                if any(e.kind.startswith(WORKSHOP_WIDE) for e in changed):
                    # Joins only change the status bar; workshop events change all.
                    fa_ids = (
                        set() if all(e.kind.startswith("participant.") for e in changed) else None
                    )
                else:
                    fa_ids = {
                        int(e.payload["focus_area_id"])
                        for e in changed
                        if "focus_area_id" in e.payload
                    }
            frames = render_push(
                session,
                workshop,
                fa_ids=fa_ids,
                facilitator_sees_private=self.settings.facilitator_sees_private,
                join_url=self.join_url_for(workshop),  # type: ignore[operator]
            )
            return workshop.last_seq, frames
