"""Typed domain errors. Each carries a stable ``code`` and an HTTP status so
the web layer can answer without knowing the rule that failed."""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    status = 404
    code = "not_found"


class NotAllowed(DomainError):
    status = 403
    code = "forbidden"


class NotAuthenticated(DomainError):
    status = 401
    code = "unauthenticated"


class Invalid(DomainError):
    status = 422
    code = "invalid"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class PhaseClosed(Conflict):
    code = "phase_closed"


class VoteBudgetExceeded(Conflict):
    code = "vote_budget_exceeded"


class JoinsLocked(Conflict):
    code = "joins_locked"


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after
