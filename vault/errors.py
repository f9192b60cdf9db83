"""Domain exceptions, each with the HTTP status and stable problem type it maps to.

Services raise these; the web layers turn them into RFC 9457 problem details
(API) or a message at a form field (UI) in one place, so a rule never needs to
know how it is shown.

    VaultError
    ├── ValidationFailed      400  bad input (carries the offending field)
    ├── AuthenticationFailed  401  wrong credentials; never says which part
    ├── Forbidden             403
    ├── NotFound              404
    ├── Conflict              409  e.g. an email address already registered
    ├── LogIntegrityError     500  the consent log does not match what the vault signed
    └── ConfigurationError    (not HTTP) the vault cannot start as configured
"""

from __future__ import annotations

PROBLEM_BASE = "https://prefvault.example/problems/"


class VaultError(Exception):
    """Base of every error the vault raises on purpose."""

    status: int = 500
    problem: str = "internal-error"
    title: str = "Internal error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.problem

    def to_problem(self) -> dict[str, object]:
        """The RFC 9457 body for this error."""
        body: dict[str, object] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.field is not None:
            body["field"] = self.field
        return body


class ValidationFailed(VaultError):
    status = 400
    problem = "invalid-request"
    title = "Invalid request"


class AuthenticationFailed(VaultError):
    status = 401
    problem = "unauthenticated"
    title = "Authentication failed"


class Forbidden(VaultError):
    status = 403
    problem = "forbidden"
    title = "Forbidden"


class NotFound(VaultError):
    status = 404
    problem = "not-found"
    title = "Not found"


class Conflict(VaultError):
    status = 409
    problem = "conflict"
    title = "Conflict"


class LogIntegrityError(VaultError):
    """The consent log no longer extends what the vault signed, so it signs nothing more.

    Raised instead of signing a tree head or a receipt that would contradict an
    earlier signature: someone or something changed the log's stored history.
    """

    status = 500
    problem = "log-integrity"
    title = "Consent log integrity failure"


class ConfigurationError(VaultError):
    """The vault cannot run as configured (missing key ring, bad URL...)."""

    problem = "configuration"
    title = "Configuration error"
