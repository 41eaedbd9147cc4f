"""Domain errors: everything a caller can cause, each with a stable code and HTTP status.

The API door maps these to one error shape; the delivery path records their message.
"""

from __future__ import annotations


class MeshanicsError(Exception):
    """Base of every error a user of the platform can cause."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field

    def to_dict(self) -> dict[str, str]:
        body = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidInput(MeshanicsError):
    status = 400
    code = "invalid_request"


class Unauthenticated(MeshanicsError):
    status = 401
    code = "unauthorized"


class Forbidden(MeshanicsError):
    status = 403
    code = "forbidden"


class NotFound(MeshanicsError):
    status = 404
    code = "not_found"


class Conflict(MeshanicsError):
    status = 409
    code = "conflict"


class LimitExceeded(MeshanicsError):
    status = 422
    code = "limit_exceeded"


class EgressRefused(InvalidInput):
    """An outbound address or URL the egress guard refuses; `code` names the rule (egress.<rule>)."""

    code = "egress.refused"


class ConfigurationError(RuntimeError):
    """The deployment is misconfigured (not the caller's fault); fails loudly at cold start."""


class TransientFailure(RuntimeError):
    """An infrastructure failure that may pass (throttling, a service error): the work that met it
    is retried later, never settled."""
