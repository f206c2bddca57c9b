"""What the JSON API documents about its errors: one body shape for every
error, and the statuses any /api/v1 operation may answer with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (400, "Malformed request"),
        (401, "Not authenticated"),
        (403, "Not allowed for this role"),
        (404, "No such workshop or object"),
        (409, "Not possible in the current phase or state"),
        (413, "Request body too large"),
        (422, "Invalid input"),
        (429, "Rate limited; see Retry-After"),
    )
}
