"""The ASGI entry point for uvicorn (``app.asgi:app``), with a request log
that never records query strings (they can carry link keys)."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.main import create_app

log = logging.getLogger("lessons.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            ms = (time.perf_counter() - start) * 1000
            log.info("%s %s %s %.0fms", scope["method"], scope["path"], status, ms)


logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
app = AccessLog(create_app())


class _NoQueryStrings(logging.Filter):
    """uvicorn logs websocket handshakes with their query string; link keys
    must never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(
                a.split("?", 1)[0] if isinstance(a, str) and "?" in a else a for a in record.args
            )
        if isinstance(record.msg, str) and "?" in record.msg and "key=" in record.msg:
            record.msg = record.msg.split("?", 1)[0]
        return True


for _name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
    logging.getLogger(_name).addFilter(_NoQueryStrings())
