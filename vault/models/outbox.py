"""Webhook events waiting to be delivered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, String, Text
from sqlmodel import Field, SQLModel

from vault.models.types import UTCDateTime

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


class WebhookOutbox(SQLModel, table=True):
    """An event for one merchant, written in the same transaction as its change.

    The worker delivers it later; writing it here first means a change can
    never be committed without its notification, nor the other way round.
    """

    __tablename__ = "webhook_outbox"
    __table_args__ = (Index("ix_webhook_outbox_due", "status", "next_attempt_at"),)

    id: str = Field(primary_key=True, max_length=32)
    merchant_id: str = Field(
        sa_column=Column(String(32), ForeignKey("merchant.id"), nullable=False, index=True)
    )
    event_type: str = Field(max_length=64)
    subject: str = Field(max_length=64)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=PENDING, max_length=16)
    attempts: int = Field(default=0)
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    next_attempt_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    last_error: str | None = Field(default=None, max_length=500)


class WebhookAttempt(SQLModel, table=True):
    """One try at delivering an outbox event: what the merchant answered, or why not."""

    __tablename__ = "webhook_attempt"

    id: str = Field(primary_key=True, max_length=32)
    outbox_id: str = Field(
        sa_column=Column(String(32), ForeignKey("webhook_outbox.id"), nullable=False, index=True)
    )
    attempt: int
    attempted_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    duration_ms: int
