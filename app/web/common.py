"""Helpers shared by the page routes: rendering a full page or an htmx
fragment (chosen by the ``HX-Request`` header, with ``Vary``), and links."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from app.config import Settings
from app.domain import access
from app.models import Workshop
from app.render import render
from app.web.security import csrf_token, ensure_csrf_cookie


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def html(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    ctx.setdefault("csrf_token", csrf_token(request))
    response = HTMLResponse(render(template, request=request, **ctx), status_code=status)
    response.headers["Vary"] = "HX-Request, Cookie"
    ensure_csrf_cookie(request, response, secure=cookie_secure(request))
    return response


def links(settings: Settings, workshop: Workshop) -> dict[str, str]:
    base = settings.public_url.rstrip("/")
    secret = settings.resolved_secret()
    fkey = access.derive_key(
        secret, uid=workshop.uid, role="facilitator", rotation=workshop.key_rotation
    )
    pkey = access.derive_key(
        secret, uid=workshop.uid, role="projector", rotation=workshop.key_rotation
    )
    return {
        "join_url": f"{base}/join/{workshop.code}",
        "facilitator_url": f"{base}/w/{workshop.code}/facilitate?key={fkey}",
        "projector_url": f"{base}/w/{workshop.code}/projector?key={pkey}",
    }


def cookie_secure(request: Request) -> bool:
    """Cookies carry the Secure flag when the setting says so, and whenever the
    request came over HTTPS (directly, or through a proxy whose forwarded
    headers uvicorn trusts)."""
    settings: Settings = request.app.state.settings
    return settings.cookie_secure or request.url.scheme == "https"


def set_cookie(request: Request, response: Any, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
        path="/",
    )
