"""Verifying the vault's webhooks before acting on them.

The vault signs every delivery with the merchant's webhook secret
(``whsec_...``)::

    Vault-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

``verify`` recomputes the signature over the *raw* request body (parse the
JSON only afterwards: re-serialising changes bytes), compares in constant
time, and refuses timestamps further than ``tolerance`` seconds from now in
either direction, so a captured delivery cannot be replayed later. Several
``v1`` entries are accepted (any one may match) so the vault can roll a
secret without a gap.

In a Flask view::

    event = webhooks.verify(request.get_data(), request.headers.get("Vault-Signature"),
                            secret=WEBHOOK_SECRET)
    vault.handle_event(event)     # drops cached decisions for event.subject

``construct_test_header`` signs a body the same way, for merchants' own tests.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import datetime

from ._errors import SignatureVerificationError
from ._models import Event

#: the request header that carries the signature
SIGNATURE_HEADER = "Vault-Signature"
#: how far (seconds) a delivery's timestamp may be from now, either way
DEFAULT_TOLERANCE = 300
SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix every secret has, not a secret)
SCHEME = "v1"
_MAX_HEADER = 4096


def _check_secret(secret: str) -> bytes:
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX) \
            or len(secret) <= len(SECRET_PREFIX):
        # A configuration mistake (e.g. the client secret passed instead), not a bad request.
        raise ValueError(f"the webhook secret starts with {SECRET_PREFIX!r}")
    return secret.encode()


def _as_bytes(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise TypeError("body must be the raw request body (bytes)")


def _sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _parse_header(header: object) -> tuple[int, list[str]]:
    """``(t, [v1 signatures])`` from the header; SignatureVerificationError if malformed."""
    if not isinstance(header, str) or not header.strip():
        raise SignatureVerificationError(f"no {SIGNATURE_HEADER} header")
    if len(header) > _MAX_HEADER:
        raise SignatureVerificationError(f"the {SIGNATURE_HEADER} header is too long")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key or not value:
            raise SignatureVerificationError(f"malformed {SIGNATURE_HEADER} header")
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            signatures.append(value)
        # other schemes are ignored, so the vault can add one without breaking merchants
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit() \
            or len(timestamps[0]) > 12:
        raise SignatureVerificationError(f"the {SIGNATURE_HEADER} header needs one "
                                         "timestamp t=<unix time>")
    if not signatures:
        raise SignatureVerificationError(f"the {SIGNATURE_HEADER} header has no {SCHEME} "
                                         "signature")
    return int(timestamps[0]), signatures


def _now_seconds(now: float | datetime | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        return now.timestamp()
    return float(now)


def verify(body: bytes | bytearray | memoryview | str, header: str | None, secret: str,
           tolerance: int = DEFAULT_TOLERANCE, now: float | datetime | None = None) -> Event:
    """Check a delivery's signature and age; the ``Event`` it carries.

    Raises ``SignatureVerificationError`` for a missing or malformed header,
    a signature that does not match, or a timestamp more than ``tolerance``
    seconds in the past or the future; ``VaultError`` if an authentic body
    is not an event. ``now`` (Unix seconds or an aware datetime) is for tests.
    """
    if tolerance < 0:
        raise ValueError("tolerance must be 0 or more seconds")
    key = _check_secret(secret)
    raw = _as_bytes(body)
    timestamp, signatures = _parse_header(header)
    expected = _sign(key, timestamp, raw).encode()
    # Compare against every candidate without stopping early, in constant time each.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected, candidate.strip().lower().encode())
    if not matched:
        raise SignatureVerificationError("the signature does not match this body and secret")
    age = _now_seconds(now) - timestamp
    if age > tolerance:
        raise SignatureVerificationError(f"the delivery is too old ({int(age)}s, tolerance "
                                         f"{tolerance}s); possibly replayed")
    if -age > tolerance:
        raise SignatureVerificationError(f"the delivery is timestamped {int(-age)}s in the "
                                         f"future (tolerance {tolerance}s)")
    return Event.from_body(raw)


def construct_test_header(body: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """A valid ``Vault-Signature`` value for ``body``, as the vault would send it.

    For merchants' own tests of their webhook endpoint; ``timestamp``
    defaults to now.
    """
    key = _check_secret(secret)
    moment = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={moment},{SCHEME}={_sign(key, moment, _as_bytes(body))}"


__all__ = [
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "Event",
    "SignatureVerificationError",
    "construct_test_header",
    "verify",
]
