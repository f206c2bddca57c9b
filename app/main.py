"""The application factory: settings, engine, middleware, routers, error
handling, and the lifespan that starts the realtime hub."""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from sqlalchemy.exc import DataError, StatementError
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.config import Settings, get_settings
from app.db import checkpoint_sqlite, make_engine, read_engine
from app.domain import organizers
from app.domain.errors import DomainError, RateLimited
from app.exports.prepared import PreparedExports
from app.realtime.service import Realtime
from app.render import render
from app.web import api, console, docs, organizer, pages, reports, suggestions, ws
from app.web.common import links
from app.web.ratelimit import RateLimiter
from app.web.security import BodyLimit, SecurityHeaders, csrf_protect

log = logging.getLogger("lessons")
STATIC = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _check_schema(engine)
        with Session(engine) as session:
            if not organizers.any_organizer(session):
                app.state.setup_token = secrets.token_urlsafe(24)
                print(  # noqa: T201 - the one-time link is meant for the console
                    "\n  No organizer yet. Open this one-time link to set one up:\n"
                    f"  {settings.public_url.rstrip('/')}/setup?token={app.state.setup_token}\n",
                    flush=True,
                )
        await app.state.realtime.start()
        try:
            yield
        finally:
            await app.state.realtime.stop()
            app.state.exports.close()

    app = FastAPI(
        title="Lessons learned",
        version="1.0",
        lifespan=lifespan,
        dependencies=[Depends(csrf_protect)],
        # FastAPI's pages load Swagger UI and ReDoc from a CDN with an inline
        # script, which our CSP blocks: app/web/docs.py serves /docs instead.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.limiter = RateLimiter.from_settings(settings)
    app.state.setup_token = None
    app.state.ws_counts = {}
    app.state.origins = settings.origins
    app.state.realtime = Realtime(settings, engine, lambda w: links(settings, w)["join_url"])
    app.state.checkpoint = lambda: _checkpoint(engine, settings)
    app.state.exports = PreparedExports(read_engine(engine))
    # A deleted workshop's files go in every process (the broker's "gone"),
    # and so do the card texts kept for suggestions.
    app.state.realtime.hub.on_gone.append(app.state.exports.forget_uid)
    app.state.realtime.hub.on_gone.append(_forget_texts)

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (pages, organizer, console, reports, suggestions, api, ws, docs):
        app.include_router(module.router)
    _install_error_handlers(app)
    return app


def _forget_texts(uid: str) -> None:
    """The suggestion engine keeps vectors under card texts (one cache for all
    workshops, so it cannot tell whose): a deletion empties it whole, and it
    refills as people type. Not loaded yet: nothing kept."""
    embedding = sys.modules.get("app.suggest.embedding")
    if embedding is not None:
        embedding.clear_cache()


def _check_schema(engine: Any) -> None:
    """Refuse to start on a database whose schema is not current."""
    from app.migrate import current_head, database_revision

    have, want = database_revision(engine), current_head()
    if have != want:
        raise RuntimeError(
            f"The database schema is at {have or 'nothing'}, the app needs {want}. "
            "Run `lessons db upgrade` first."
        )


def _checkpoint(engine: Any, settings: Settings) -> None:
    """After a deletion, squeeze deleted pages out of SQLite's WAL file."""
    if settings.is_sqlite:
        checkpoint_sqlite(engine)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get(
        "accept", ""
    )


def _error(request: Request, status: int, code: str, message: str, **extra: Any) -> Response:
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra.pop("retry_after"))
    if _wants_json(request) or request.headers.get("hx-request") == "true":
        body = {"error": {"code": code, "message": message, **extra}}
        return JSONResponse(body, status_code=status, headers=headers)
    html = render("pages/error.html", message=message, heading=_HEADINGS.get(status), csrf_token="")
    return Response(html, status_code=status, media_type="text/html", headers=headers)


_HEADINGS = {
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible right now",
    413: "Too large",
    429: "Slow down",
}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        extra: dict[str, Any] = {"field": exc.field} if exc.field else {}
        if isinstance(exc, RateLimited):
            extra["retry_after"] = exc.retry_after
        return _error(request, exc.status, exc.code, exc.message, **extra)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        # Locations start with where the value was ("body", "query"...); a JSON
        # body's fields are named without it. Only that first step goes: a
        # card's own field ``body`` must keep its name.
        errors = [
            {**e, "loc": tuple(e["loc"][1:])} if tuple(e.get("loc", ()))[:1] == ("body",) else e
            for e in exc.errors()
        ]
        return _validation(request, errors)

    @app.exception_handler(ValidationError)
    async def pydantic_error(request: Request, exc: ValidationError) -> Response:
        return _validation(request, exc.errors())

    @app.exception_handler(StatementError)
    async def unstorable(request: Request, exc: StatementError) -> Response:
        # A NUL character (PostgreSQL) or an id beyond 64 bits: bad input, not a crash.
        if isinstance(exc, DataError) or isinstance(exc.orig, OverflowError | ValueError):
            return _error(
                request,
                422,
                "invalid",
                "The request holds a value that cannot be stored "
                "(a NUL character, or a number out of range).",
            )
        raise exc

    @app.exception_handler(OverflowError)
    async def overflow(request: Request, exc: OverflowError) -> Response:
        return _error(request, 404, "not_found", "No such object.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = _error(request, exc.status_code, "http_error", str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        if exc.status_code == 405:
            response.headers["Allow"] = _allowed_methods(request)
        return response


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path: Starlette's own 405 names
    only the first route whose path matched (RFC 9110 asks for all)."""
    allowed = [
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.routes
        )
    ]
    return ", ".join(allowed)


def _validation(request: Request, errors: Any) -> Response:
    from app.web.pages import _field_message

    clean = [
        {
            "field": ".".join(str(x) for x in e.get("loc", ())),
            "message": _field_message(e),
        }
        for e in errors
    ]
    message = "; ".join(e["message"] for e in clean) or "The request is not valid."
    if any(e.get("type") == "json_invalid" for e in errors):
        return _error(request, 400, "malformed", "The request body is not valid JSON.")
    return _error(request, 422, "invalid", message, details=clean)
