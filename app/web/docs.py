"""The JSON API's documentation page, /docs: Swagger UI served from this
app (vendored in app/static/vendor/, started by app/static/api-docs.js) so
the page works offline and under the app's own CSP, with no inline script.
FastAPI's own /docs and /redoc are switched off in app/main.py: they load
Swagger UI and ReDoc from a CDN with an inline script, which that CSP
blocks."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.render import render

SWAGGER_UI = "5.35.0"

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    page = render(
        "pages/api_docs.html",
        openapi_url=request.app.openapi_url,
        swagger_ui=SWAGGER_UI,
    )
    return HTMLResponse(page)
