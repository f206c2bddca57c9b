"""The projector's socket cap in process, where the close code is visible: the
socket past LESSONS_WS_MAX_PROJECTORS is closed with 4429, like a participant's
past LESSONS_WS_MAX_PER_PARTICIPANT (tests/realtime/test_ws_limits.py has the
cap against the real server)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session
from starlette.websockets import WebSocketDisconnect

from tests.conftest import SECRET

from .world import leave, seed


def test_the_extra_projector_is_closed_with_4429(client_with: Any) -> None:
    client = client_with(ws_max_projectors=2)
    with Session(client.app.state.engine, expire_on_commit=False) as s:
        w = seed(s, SECRET)
    url = f"/ws/workshops/{w.code}"
    headers = {**w.headers("projector"), "Origin": "http://testserver"}
    socks = []
    try:
        for _ in range(2):
            sock = client.websocket_connect(url, headers=headers).__enter__()
            sock.send_text('{"type": "hello", "seq": null}')
            sock.receive_text()
            socks.append(sock)
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect(url, headers=headers) as extra,
        ):
            extra.send_text('{"type": "hello", "seq": null}')  # accepted: it gets the board
            extra.receive_text()
        assert refused.value.code == 4429
    finally:
        for sock in socks:
            leave(sock, client.app)
            sock.__exit__(None, None, None)
