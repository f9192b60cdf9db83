"""Delivering webhook events from the outbox, signed, with retries.

Each event is claimed with a short lease (so parallel workers never send it
at the same time), sent outside any database transaction, and its outcome
recorded with the attempt. A 2xx answer marks it delivered and it is never
sent again; anything else is retried with capped exponential backoff and
jitter until ``max_attempts``, then marked failed. A worker that dies between
the merchant's 2xx and the record may send that one event again after the
lease: merchants deduplicate by the event ``id``.

Signature header (DESIGN.md): ``Vault-Signature: t=<unix>,v1=<hex>`` where
``hex = HMAC-SHA256(secret, "<t>.<body>")``.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import select

from vault.clock import Clock
from vault.db import Database
from vault.models import Merchant, WebhookAttempt, WebhookOutbox
from vault.models.outbox import DELIVERED, FAILED, PENDING
from vault.models.types import new_id

NO_ENDPOINT = "no_endpoint"
BASE_DELAY = timedelta(seconds=10)
MAX_DELAY = timedelta(hours=1)
LEASE = timedelta(seconds=60)

#: ``post(url, body, headers) -> status code``; raises when the merchant is unreachable
Post = Callable[[str, bytes, dict[str, str]], int]


def webhook_secret(webhook_key: bytes, salt: bytes) -> str:
    """A merchant's signing secret, derived from the key ring and its stored salt."""
    return "whsec_" + hmac.new(webhook_key, b"webhook\x00" + salt, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def backoff(attempts: int, *, rng: Callable[[], float] = random.random) -> timedelta:
    """Delay before the next try: doubling from 10 s, capped at an hour, with jitter."""
    delay = min(BASE_DELAY * (2 ** max(attempts - 1, 0)), MAX_DELAY)
    return delay * (0.5 + rng() / 2)


@dataclass
class DeliveryReport:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0


def _claim(database: Database, now: datetime, limit: int) -> list[tuple[str, int]]:
    """Lease up to ``limit`` due events; returns (id, attempt number)."""
    with database.write() as session:
        query = (
            select(WebhookOutbox)
            .where(WebhookOutbox.status == PENDING, WebhookOutbox.next_attempt_at <= now)
            .order_by(WebhookOutbox.next_attempt_at)
            .limit(limit)
        )
        if database.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = list(session.exec(query))
        for row in rows:
            row.next_attempt_at = now + LEASE
            session.add(row)
        return [(row.id, row.attempts + 1) for row in rows]


def deliver_due(
    database: Database,
    *,
    webhook_key: bytes,
    clock: Clock,
    post: Post,
    limit: int = 50,
    max_attempts: int = 8,
    rng: Callable[[], float] = random.random,
) -> DeliveryReport:
    """Send every due event once; returns what happened."""
    report = DeliveryReport()
    for outbox_id, attempt in _claim(database, clock.now(), limit):
        with database.read() as session:
            event = session.get(WebhookOutbox, outbox_id)
            merchant = session.get(Merchant, event.merchant_id) if event else None
        if event is None or merchant is None:
            continue
        status_code: int | None = None
        error: str | None = None
        started = time.monotonic()
        if not merchant.webhook_url or not merchant.webhook_secret:
            error = "merchant has no webhook URL"
        else:
            body = event.payload.encode()
            secret = webhook_secret(webhook_key, merchant.webhook_secret)
            headers = {
                "Content-Type": "application/json",
                "Vault-Signature": signature_header(secret, int(clock.now().timestamp()), body),
                "Vault-Event-Id": event.id,
                "User-Agent": "PreferenceVault-Webhooks/1",
            }
            try:
                status_code = post(merchant.webhook_url, body, headers)
            except Exception as exc:  # any failure to reach the merchant is a failed attempt
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
        duration = int((time.monotonic() - started) * 1000)
        _record(database, outbox_id, attempt, status_code, error, duration, clock=clock,
                max_attempts=max_attempts, rng=rng, report=report)
    return report


def _record(database: Database, outbox_id: str, attempt: int, status_code: int | None,
            error: str | None, duration_ms: int, *, clock: Clock, max_attempts: int,
            rng: Callable[[], float], report: DeliveryReport) -> None:
    now = clock.now()
    with database.write() as session:
        event = session.get(WebhookOutbox, outbox_id, with_for_update=True, populate_existing=True)
        if event is None or event.status != PENDING:
            return
        session.add(WebhookAttempt(id=new_id(), outbox_id=outbox_id, attempt=attempt,
                                   attempted_at=now, status_code=status_code, error=error,
                                   duration_ms=duration_ms))
        event.attempts = attempt
        if status_code is not None and 200 <= status_code < 300:
            event.status = DELIVERED
            event.delivered_at = now
            event.last_error = None
            report.delivered += 1
        elif error == "merchant has no webhook URL":
            event.status = NO_ENDPOINT
            event.last_error = error
            report.skipped += 1
        elif attempt >= max_attempts:
            event.status = FAILED
            event.last_error = error or f"HTTP {status_code}"
            report.failed += 1
        else:
            event.next_attempt_at = now + backoff(attempt, rng=rng)
            event.last_error = error or f"HTTP {status_code}"
            report.retried += 1
        session.add(event)
