"""Wire vocabulary of the realtime layer, shared by the hub, the app and the tests.

This module owns the websocket close codes the hub uses, `WorkshopGone` (what a
renderer raises for a workshop that no longer exists), the one message a client
sends (`{"type": "hello", "seq": N}`, after every connect and reconnect, where N is
the `data-seq` of the board it currently shows, or null when it has none), and
`SocketLike`, the three methods the hub needs from a socket. Starlette's `WebSocket`
satisfies `SocketLike` as it is; unit tests can pass a small fake.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

CLOSE_GOING_AWAY = 1001  # the hub is stopping (app shutdown)
CLOSE_TOO_BIG = 1009  # the client sent a frame above the hub's size limit
CLOSE_SERVICE_RESTART = 1012  # the broker went down: reconnect, say hello, resync
CLOSE_TRY_AGAIN_LATER = 1013  # the client could not keep up with the pushes
CLOSE_REVOKED = 4401  # the credential the socket was opened with was revoked
CLOSE_GONE = 4404  # the workshop was deleted: nothing to reconnect to


class WorkshopGone(Exception):
    """Raised by a renderer for a workshop that does not exist (any more)."""


class SocketLike(Protocol):
    """What the hub needs from an accepted websocket (ASGI receive messages, text out)."""

    async def receive(self) -> Mapping[str, Any]: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(frozen=True)
class Hello:
    """The client's report of the newest board it holds; None means "none, send it all"."""

    seq: int | None


# A hello is some 30 characters; anything much longer is not one and is not parsed, so
# what a message costs does not grow with the frame size limit.
MAX_HELLO_CHARS = 256


def parse_client_message(text: str) -> Hello | None:
    """Return the hello in `text`, or None for anything else (which the hub ignores).

    A seq that is not a non-negative integer (or a string of digits, as read from a
    DOM attribute) is taken as None: sending a full board is always safe. Text longer
    than MAX_HELLO_CHARS is not a hello.
    """
    if len(text) > MAX_HELLO_CHARS:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than ~1000
        return None
    if not isinstance(data, dict) or data.get("type") != "hello":
        return None
    seq = data.get("seq")
    if isinstance(seq, str) and seq.isascii() and seq.isdigit() and len(seq) < 20:
        seq = int(seq)
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        seq = None
    return Hello(seq)
