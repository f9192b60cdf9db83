"""Contacts merchants report having made."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from vault.models.types import UTCDateTime


class ContactEvent(SQLModel, table=True):
    """One reported contact; ``allowed`` false marks a violation.

    Only pseudonymous ids and vocabulary words: it counts toward caps and is
    shown to the person and auditors, and it never holds an address.
    """

    __tablename__ = "contact_event"
    __table_args__ = (
        Index("ix_contact_event_window", "subscription_id", "channel", "purpose", "occurred_at"),
    )

    id: str = Field(primary_key=True, max_length=32)
    subscription_id: str = Field(
        sa_column=Column(String(32), ForeignKey("subscription.id"), nullable=False)
    )
    merchant_id: str = Field(
        sa_column=Column(String(32), ForeignKey("merchant.id"), nullable=False, index=True)
    )
    channel: str = Field(max_length=16)
    purpose: str = Field(max_length=32)
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    decision_id: str | None = Field(default=None, max_length=32)
    allowed: bool
    reason: str = Field(max_length=32)
