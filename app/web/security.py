"""Browser-side defences: security headers with a strict CSP, a request body
size limit, and CSRF protection (double-submit cookie, checked for every
state-changing request that relies on cookies; bearer-token API calls are
exempt because a browser never adds that header by itself, and only those
that ``deps.bearer`` reads as a token: any other Authorization header is
checked like a cookie request)."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from fastapi import Request
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.domain.errors import NotAllowed
from app.web.deps import bearer

CSRF_COOKIE = "lw_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CREDENTIAL_COOKIES = ("lw_session", "lw_p")

# Nothing here uses the camera, microphone, location or payment APIs.
PERMISSIONS = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                names = {k.lower() for k, _ in headers}
                extra = [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"permissions-policy", PERMISSIONS.encode()),
                ]
                if scope.get("scheme") == "https":  # browsers ignore it over plain HTTP
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                if not scope["path"].startswith("/static/") and b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                headers.extend(h for h in extra if h[0] not in names)
            await send(message)

        await self.app(scope, receive, send_wrapper)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether announced
    by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _too_large(scope, send, self.limit)
            return
        seen = 0
        refused = False

        async def limited() -> Message:
            # An exception raised here would reach the app's body parser, which
            # answers 400: answer 413 ourselves and tell the app the client left.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    refused = True
                    await _too_large(scope, send, self.limit)
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited, unless_refused)
        except Exception:
            if not refused:
                raise
            # What the app raised came from the disconnect we made up (e.g. a
            # form parser's ClientDisconnect): the 413 has been sent.


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    import json

    body = json.dumps(
        {"error": {"code": "too_large", "message": f"The request is over {limit // 1024} KB."}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def csrf_token(request: Request) -> str:
    """The token for this browser: reused from its cookie, or a new one that
    the response must set (see ``ensure_csrf_cookie``)."""
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) > 100:
        token = getattr(request.state, "new_csrf", None) or secrets.token_urlsafe(24)
        request.state.new_csrf = token
    return token


def ensure_csrf_cookie(request: Request, response: Any, *, secure: bool) -> None:
    new = getattr(request.state, "new_csrf", None)
    if new:
        response.set_cookie(
            CSRF_COOKIE, new, httponly=True, samesite="lax", secure=secure, path="/"
        )


async def csrf_protect(conn: HTTPConnection) -> None:
    # Websockets are guarded by the Origin check at the handshake instead.
    if conn.scope["type"] != "http" or conn.scope["method"] in SAFE_METHODS:
        return
    # FastAPI hands us the Request itself, so the parsed form is cached on it
    # for the handler (a new Request would consume the body stream).
    assert isinstance(conn, Request)
    request = conn
    if bearer(request) is not None:
        return  # the caller is read from the token alone (see deps.bearer)
    ctype = request.headers.get("content-type", "")
    is_form = ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))
    if not is_form and not any(name.startswith(CREDENTIAL_COOKIES) for name in request.cookies):
        # Nothing ambient to ride on: a JSON request without credential cookies
        # cannot act as anyone (the API's login and join calls). Forms always
        # need the token, so no site can log a browser in or out behind its back.
        return
    expected = request.cookies.get(CSRF_COOKIE)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and is_form:
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not (expected and sent and expected.isascii() and sent.isascii()):
        raise NotAllowed("The form expired or came from another site; reload the page.")
    if not hmac.compare_digest(expected, sent):
        raise NotAllowed("The form expired or came from another site; reload the page.")
