"""The exceptions the SDK raises, one class per thing a merchant does differently.

Every error raised on purpose is a ``VaultError``, so one ``except VaultError``
catches them all; the subclass tells what to do next (fix the call, fix the
credentials, slow down, try later)::

    VaultError                       .status, .request_id, .problem, .detail
    ├── AuthenticationError          401: wrong client credentials, token refused
    ├── PermissionDenied             403: the token lacks the scope for this call
    ├── InvalidRequest               400/413/415/422: fix the call (.field, .problem)
    ├── NotFound                     404: no subscription with this subject
    ├── RateLimited                  429: slow down (.retry_after, in seconds)
    ├── ServerError                  5xx: the vault failed (already retried)
    ├── ConnectionError              the vault could not be reached (refused, timed out)
    ├── ConnectError                 the connect (OAuth) flow did not complete (.error)
    │   ├── ConnectDenied            the person pressed Deny (error=access_denied)
    │   └── StateMismatch            the callback's state is not the one sent: forged?
    └── SignatureVerificationError   a webhook or a consent receipt is not authentic

``ConnectionError`` deliberately shares the builtin's name (as in requests);
refer to it as ``prefvault_sdk.ConnectionError`` to avoid shadowing the builtin.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from ._retry import parse_retry_after

#: the response header whose value is echoed as ``.request_id`` (quote it to support)
REQUEST_ID_HEADER = "X-Request-Id"


class VaultError(Exception):
    """Base of every error the SDK raises on purpose.

    ``status`` is the HTTP status when the vault answered (None otherwise),
    ``request_id`` the vault's ``X-Request-Id`` for support, ``problem`` the
    RFC 9457 body as sent and ``detail`` its human-readable explanation.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.problem: dict[str, Any] = dict(problem or {})

    @property
    def detail(self) -> str:
        """The problem's ``detail`` (or the message when the vault sent none)."""
        detail = self.problem.get("detail")
        return detail if isinstance(detail, str) else self.message

    @property
    def problem_type(self) -> str | None:
        """The problem's stable ``type`` URI, the thing to branch on rather than text."""
        value = self.problem.get("type")
        return value if isinstance(value, str) else None

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"(HTTP {self.status})")
        if self.request_id:
            parts.append(f"[request {self.request_id}]")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.message!r}, status={self.status!r}, "
                f"request_id={self.request_id!r})")


class AuthenticationError(VaultError):
    """401: the client credentials are wrong, or the vault refused the access token."""


class PermissionDenied(VaultError):
    """403: the token is valid but does not carry the scope this call needs."""


class InvalidRequest(VaultError):
    """400/413/415/422: the call itself is wrong; ``field`` names the offending input."""

    @property
    def field(self) -> str | None:
        value = self.problem.get("field")
        return value if isinstance(value, str) else None


class NotFound(VaultError):
    """404: the vault knows no subscription with this subject for this merchant."""


class RateLimited(VaultError):
    """429: too many requests; wait ``retry_after`` seconds (None if the vault did not say)."""

    def __init__(self, message: str, *, retry_after: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(VaultError):
    """5xx: the vault failed to answer; the SDK has already retried where that was safe."""


class ConnectionError(VaultError):  # shadows the builtin on purpose (see module doc)
    """The vault could not be reached: refused connection, DNS failure, timeout."""


class ConnectError(VaultError):
    """The connect flow did not give a subscription; ``error`` is the OAuth error code."""

    def __init__(self, message: str, *, error: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.error = error


class ConnectDenied(ConnectError):
    """The person chose Deny on the consent page: no subscription, and that is their right."""


class StateMismatch(ConnectError):
    """The callback's ``state`` is not the one this session sent: possibly a forged callback.

    Never exchange the code of such a callback; start the connect flow again.
    """


class SignatureVerificationError(VaultError):
    """A webhook or a consent receipt failed verification.

    For a webhook: a bad or missing signature, or a timestamp out of range;
    answer such a request with 400 and do not act on its body. For a receipt:
    a bad signature, an unknown key, malformed claims, or a log proof that
    does not check out; do not rely on it.
    """


def _problem_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON object in an error response, whatever its media type; {} if there is none."""
    try:
        body = json.loads(response.content or b"null")
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def error_from_response(response: httpx.Response) -> VaultError:
    """The typed error for a non-2xx answer of the vault's JSON API."""
    problem = _problem_of(response)
    status = response.status_code
    request_id = response.headers.get(REQUEST_ID_HEADER)
    title = problem.get("detail") or problem.get("title") or response.reason_phrase or "error"
    message = str(title)
    kwargs: dict[str, Any] = {"status": status, "request_id": request_id, "problem": problem}
    if status == 401:
        return AuthenticationError(message, **kwargs)
    if status == 403:
        return PermissionDenied(message, **kwargs)
    if status == 404:
        return NotFound(message, **kwargs)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RateLimited(message, retry_after=retry_after, **kwargs)
    if status in (400, 413, 415, 422):
        return InvalidRequest(message, **kwargs)
    if status >= 500:
        return ServerError(message, **kwargs)
    return VaultError(message, **kwargs)


def discovery_error_from_response(response: httpx.Response) -> VaultError:
    """A refused discovery request means a wrong ``base_url``, never "subject not found"."""
    if response.status_code == 429 or response.status_code >= 500:
        return error_from_response(response)
    return VaultError(f"no Preference Vault discovery document at {response.request.url} "
                      f"(HTTP {response.status_code}); check base_url",
                      status=response.status_code,
                      request_id=response.headers.get(REQUEST_ID_HEADER))


def oauth_error_from_response(response: httpx.Response, *, connect: bool) -> VaultError:
    """The typed error for an OAuth token-endpoint answer (``{"error", "error_description"}``).

    Wrong client credentials are an ``AuthenticationError`` in every flow; while
    completing a connect flow the other refusals (a used or expired code, a
    wrong verifier) are ``ConnectError`` so callers can restart the flow.
    """
    problem = _problem_of(response)
    status = response.status_code
    code = problem.get("error") if isinstance(problem.get("error"), str) else None
    description = problem.get("error_description")
    message = f"{code}: {description}" if code and description else str(code or description or
                                                                         response.reason_phrase)
    kwargs: dict[str, Any] = {"status": status, "request_id": response.headers.get(
        REQUEST_ID_HEADER), "problem": problem}
    if code in ("invalid_client", "unauthorized_client") or status == 401:
        return AuthenticationError(message, **kwargs)
    if status == 429 or status >= 500:
        return error_from_response(response)
    if connect:
        return ConnectError(message, error=code, **kwargs)
    return InvalidRequest(message, **kwargs)


__all__ = [
    "REQUEST_ID_HEADER",
    "AuthenticationError",
    "ConnectDenied",
    "ConnectError",
    "ConnectionError",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "SignatureVerificationError",
    "StateMismatch",
    "VaultError",
    "discovery_error_from_response",
    "error_from_response",
    "oauth_error_from_response",
]
