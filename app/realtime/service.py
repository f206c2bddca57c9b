"""Wires the hub to the app: the renderer that turns a workshop's new events
into one frame per audience (rendered in a worker thread, since the database
layer is synchronous), publishing after commit, and closing sockets whose
credentials were revoked."""

from __future__ import annotations

from collections.abc import Mapping

import anyio.to_thread
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.config import Settings
from app.db import read_engine
from app.domain import events
from app.models import Workshop
from app.realtime.broker import make_broker
from app.realtime.hub import Hub
from app.render import render_push

WORKSHOP_WIDE = ("workshop.", "participant.")


class Realtime:
    def __init__(self, settings: Settings, engine: Engine, join_url_for: object) -> None:
        self.settings = settings
        self.engine = read_engine(engine)
        self.join_url_for = join_url_for
        # One channel per deployment (derived from its secret): two apps sharing
        # a Redis must not hear each other's sequence numbers.
        tag = settings.deployment_tag()
        self.broker = (
            make_broker(settings.redis_url, channel=f"lessons:events:{tag}")
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

    async def start(self) -> None:
        await self.hub.start()

    async def stop(self) -> None:
        # 1012 ("service restart"): the htmx ws extension reconnects only after
        # 1006, 1012 and 1013, and a restarting server wants its clients back.
        await self.hub.stop(code=1012)

    async def publish(self, workshop_id: int, seq: int) -> None:
        await self.broker.publish(workshop_id, seq)

    async def revoke(self, workshop_id: int | None) -> None:
        """Links were rotated: close every socket of the workshop; the ones
        whose credentials still hold reconnect at once."""
        if workshop_id is not None:
            await self.hub.close_where(workshop_id, lambda key: True, code=1012)

    async def render(
        self, workshop_id: int, since_seq: int | None
    ) -> tuple[int, Mapping[str, str]]:
        return await anyio.to_thread.run_sync(self._render_sync, workshop_id, since_seq)

    def _render_sync(
        self, workshop_id: int, since_seq: int | None
    ) -> tuple[int, Mapping[str, str]]:
        with Session(self.engine) as session:
            workshop = session.get(Workshop, workshop_id)
            if workshop is None:
                return 0, {}
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
