"""Queueing webhook events in the outbox, inside the change's own transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlmodel import Session

from vault.clock import Clock
from vault.models import WebhookOutbox
from vault.models.types import new_id

EVENT_TYPES = ("subscription.created", "subscription.updated", "subscription.revoked",
               "profile.updated")


def queue_webhook(
    session: Session,
    *,
    clock: Clock,
    merchant_id: str,
    event_type: str,
    subject: str,
    data: Mapping[str, object],
) -> WebhookOutbox:
    """Add one event for a merchant; the worker delivers it after commit.

    The payload is the exact body DESIGN.md fixes: ``{id, type, created,
    subject, data}``; ``data`` never carries profile values, only what changed.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    now = clock.now()
    event_id = new_id()
    payload = {
        "id": event_id,
        "type": event_type,
        "created": int(now.timestamp()),
        "subject": subject,
        "data": dict(data),
    }
    row = WebhookOutbox(
        id=event_id,
        merchant_id=merchant_id,
        event_type=event_type,
        subject=subject,
        payload=json.dumps(payload, separators=(",", ":"), sort_keys=True),
        created_at=now,
        next_attempt_at=now,
    )
    session.add(row)
    return row
