"""Idempotency keys: a retried POST gets the first answer, and the work is done once."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session

from vault.clock import Clock
from vault.errors import ValidationFailed
from vault.models import IdempotentRequest

KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
RETENTION = timedelta(hours=24)


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict[str, object]


def digest(body: object) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def clean_key(key: str) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise ValidationFailed("Idempotency-Key must be 1-255 printable ASCII characters",
                               field="Idempotency-Key")
    return key


def replay(session: Session, *, merchant_id: str, key: str, request_sha256: str,
           clock: Clock) -> Replay | None:
    """The stored answer for this key, ``None`` if new; a reused key with another body fails."""
    found = session.get(IdempotentRequest, (merchant_id, key))
    if found is None or clock.now() - found.created_at > RETENTION:
        return None
    if found.request_sha256 != request_sha256:
        raise ValidationFailed("this Idempotency-Key was used for a different request",
                               field="Idempotency-Key")
    return Replay(found.status, json.loads(found.response))


def remember(session: Session, *, merchant_id: str, key: str, request_sha256: str,
             status: int, body: dict[str, object], clock: Clock) -> None:
    """Store the answer in the same transaction as the work it describes."""
    existing = session.get(IdempotentRequest, (merchant_id, key))
    if existing is not None:
        session.delete(existing)
        session.flush()
    session.add(IdempotentRequest(merchant_id=merchant_id, key=key,
                                  request_sha256=request_sha256, status=status,
                                  response=json.dumps(body, default=str),
                                  created_at=clock.now()))
