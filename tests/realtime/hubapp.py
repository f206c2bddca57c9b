"""Test harness: the smallest app around app.realtime, run by uvicorn in a subprocess.

It owns a fake "database" (a SQLite file named by HUB_STATE, so two processes can
share it) holding a seq and a fragment padding size per workshop, a renderer over it,
one websocket endpoint that hands sockets to the hub, and HTTP endpoints that bump a
workshop (and publish), resize its fragments, revoke keys and report stats. Workshops
are named by a string key, as the app names them by uid (a path of digits is one).
Environment: HUB_STATE (required), HUB_REDIS_URL (empty: memory broker),
HUB_CHANNEL, HUB_COALESCE_MS, HUB_QUEUE_SIZE, HUB_SEND_TIMEOUT.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket

from app.realtime.broker import RedisBroker, make_broker
from app.realtime.hub import Hub

_db = sqlite3.connect(os.environ["HUB_STATE"], isolation_level=None, timeout=5)
_db.execute("PRAGMA synchronous = OFF")  # a throwaway test file: speed over durability
_db.execute("CREATE TABLE IF NOT EXISTS w (id INTEGER PRIMARY KEY, seq INTEGER, pad INTEGER)")


def _row(workshop_id: str) -> tuple[int, int]:
    row = _db.execute("SELECT seq, pad FROM w WHERE id = ?", (workshop_id,)).fetchone()
    return (row[0], row[1]) if row else (0, 100)


async def render(workshop_id: str, since: int | None) -> tuple[int, dict[str, str]]:
    seq, pad = _row(workshop_id)
    kind = "full" if since is None else "delta"
    out = {}
    for audience in ("board", "facilitator"):
        out[audience] = (
            f'<div id="{audience}" hx-swap-oob="true" data-seq="{seq}" data-kind="{kind}">'
            f"{audience[0] * pad}</div>"
        )
    return seq, out


broker = make_broker(
    os.environ.get("HUB_REDIS_URL", ""),
    channel=os.environ.get("HUB_CHANNEL", "lessons:events"),
    ping_interval=1.0,
    timeout=1.0,
    backoff_max=0.3,
)
hub = Hub(
    broker,
    render,
    coalesce_ms=float(os.environ.get("HUB_COALESCE_MS", "100")),
    queue_size=int(os.environ.get("HUB_QUEUE_SIZE", "32")),
    send_timeout=float(os.environ.get("HUB_SEND_TIMEOUT", "5")),
)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await hub.start()
    yield
    await hub.stop()


app = FastAPI(lifespan=lifespan)


@app.websocket("/ws/{workshop_id}/{audience}")
async def board_socket(
    ws: WebSocket, workshop_id: str, audience: str, seq: int | None = None, key: str | None = None
) -> None:
    await ws.accept()
    await hub.attach(ws, workshop_id, audience, last_seq=seq, key=key)


@app.post("/bump/{workshop_id}")
async def bump(workshop_id: str, count: int = 1) -> dict[str, int]:
    seq = 0
    for _ in range(count):
        seq = _db.execute(
            "INSERT INTO w (id, seq, pad) VALUES (?, 1, 100) "
            "ON CONFLICT (id) DO UPDATE SET seq = seq + 1 RETURNING seq",
            (workshop_id,),
        ).fetchone()[0]
        await broker.publish(workshop_id, seq)
    return {"seq": seq}


@app.post("/pad/{workshop_id}")
async def pad(workshop_id: str, size: int) -> dict[str, int]:
    _db.execute(
        "INSERT INTO w (id, seq, pad) VALUES (?, 0, ?) ON CONFLICT (id) DO UPDATE SET pad = ?",
        (workshop_id, size, size),
    )
    return {"pad": size}


@app.post("/revoke/{workshop_id}")
async def revoke(workshop_id: str, key: str) -> dict[str, int]:
    return {"closed": await hub.close_where(workshop_id, lambda k: k == key)}


@app.get("/stats")
async def stats() -> dict[str, object]:
    up = broker.up if isinstance(broker, RedisBroker) else True
    return {**hub.stats(), "broker_up": up}
