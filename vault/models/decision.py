"""Evidence of what the vault told merchants."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, LargeBinary
from sqlmodel import Field, SQLModel

from vault.models.types import UTCDateTime


class Decision(SQLModel, table=True):
    """One answer to one merchant's question, kept so it can be shown later.

    Holds the subject exactly as the merchant asked (even an unknown one) and
    never an address: ``reach`` is not stored.
    """

    __tablename__ = "decision"
    __table_args__ = (Index("ix_decision_merchant_time", "merchant_id", "decided_at"),)

    id: str = Field(primary_key=True, max_length=32)
    merchant_id: str = Field(max_length=32)
    subscription_id: str | None = Field(default=None, max_length=32, index=True)
    subject: str = Field(max_length=128)
    channel: str = Field(max_length=16)
    purpose: str = Field(max_length=32)
    asked_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    decided_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    allowed: bool
    reason: str = Field(max_length=32)


class DecisionBatch(SQLModel, table=True):
    """A campaign check: the whole answer list, compressed, with its SHA-256."""

    __tablename__ = "decision_batch"

    id: str = Field(primary_key=True, max_length=32)
    merchant_id: str = Field(max_length=32, index=True)
    channel: str = Field(max_length=16)
    purpose: str = Field(max_length=32)
    asked_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    decided_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    size: int
    allowed_count: int
    results_sha256: str = Field(max_length=64)
    results: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
