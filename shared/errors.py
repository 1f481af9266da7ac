"""Errors the domain raises and the HTTP layer turns into RFC 9457 problems.

Plain Python, so domain code and workers use them without Flask. A ``detail``
is shown to the client: write what went wrong and what to do, never personal
data (names, addresses, birth dates, phones).
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of the errors with a meaning for the client; ``code`` names the problem type."""

    status: int = 400
    title: str = "Bad request"
    code: str = "bad-request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: dict[str, list[str]] | None = None,
        title: str | None = None,
        code: str | None = None,
    ) -> None:
        self.detail: str = detail or self.title
        self.errors: dict[str, list[str]] | None = errors
        if title is not None:
            self.title = title
        if code is not None:
            self.code = code
        super().__init__(self.detail)


class BadRequest(DomainError):
    """The request itself is malformed (e.g. a bad header), before any domain rule applies."""


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"
    code = "unauthorized"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"
    code = "forbidden"


class NotFound(DomainError):
    status = 404
    title = "Not found"
    code = "not-found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"
    code = "conflict"


class RuleViolation(DomainError):
    """A domain guard refused the change, e.g. "the plan has no measure"."""

    status = 422
    title = "Rule violated"
    code = "rule-violation"


class ServiceUnavailable(DomainError):
    """A dependency (database, key server) is down; the client may retry later."""

    status = 503
    title = "Service unavailable"
    code = "unavailable"
