"""When to retry a request, and how long to wait first.

The policy is pure (no I/O, no sleeping) so the sync and the async client
share it and only differ in how they wait. What may be retried:

- a connection that could not be opened (nothing was sent): always;
- any other transport failure (timeout, dropped connection), 429 and 5xx
  answers: only for idempotent calls, since the vault (or a proxy in front
  of it) may have acted on the first try. Decisions are questions and may
  be asked again; a POST carrying an ``Idempotency-Key`` counts as
  idempotent. The one call that is neither, the authorization-code
  exchange, is never re-sent: a replayed code makes the vault revoke
  everything the code led to.

Waits grow exponentially (capped) with jitter, so a fleet of merchants'
workers that failed together does not come back together. A ``Retry-After``
from the vault is honoured as given, unless it asks for longer than
``max_retry_after``: then the error is raised rather than blocking the caller.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

#: answers worth another try, for idempotent calls
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

#: failures that happen before a single byte of the request was sent
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

# Jitter only spreads retries out; it guards no secret.
_jitter = random.Random()  # noqa: S311


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` (RFC 9110 §10.2.3) in seconds: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait; see the module docstring."""

    max_retries: int = 2
    backoff_base: float = 0.25
    backoff_cap: float = 8.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")

    def backoff(self, retry: int) -> float:
        """Seconds before retry number ``retry + 1``: doubling, capped, with equal jitter."""
        delay = min(self.backoff_cap, self.backoff_base * 2.0 ** retry)
        return delay * (0.5 + _jitter.random() / 2)

    def after_error(self, retry: int, error: httpx.TransportError, *,
                    idempotent: bool) -> float | None:
        """The wait before trying again after a transport failure, or None to give up."""
        if retry >= self.max_retries:
            return None
        if idempotent or isinstance(error, _NOT_SENT):
            return self.backoff(retry)
        return None

    def after_response(self, retry: int, response: httpx.Response, *,
                       idempotent: bool) -> float | None:
        """The wait before trying again after an error answer, or None to give up."""
        if retry >= self.max_retries or not idempotent \
                or response.status_code not in RETRY_STATUSES:
            return None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            return self.backoff(retry)
        if retry_after > self.max_retry_after:
            return None
        return retry_after


__all__ = ["RETRY_STATUSES", "RetryPolicy", "parse_retry_after"]
