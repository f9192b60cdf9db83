"""The terms a subscription had before its current ones, each with when it was in force."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, LargeBinary, String
from sqlmodel import Field, SQLModel

from vault.models.types import UTCDateTime


class TermsHistory(SQLModel, table=True):
    """One state a subscription was in from ``valid_from`` until ``valid_until``.

    A contact report about a moment in the past is judged by the state in
    force then (see ``vault.services.terms_history``). ``status`` is the
    subscription's status in that interval; an ``active`` row carries the
    terms record of the interval in ``terms``, sealed with the person's data
    key and bound to this row and its subscription, and a ``revoked`` row
    carries none. Rows are written once and never changed; ``prefvault
    worker`` deletes those that ended before any report may still be about.
    """

    __tablename__ = "terms_history"
    __table_args__ = (
        Index("ix_terms_history_subscription", "subscription_id", "valid_until"),
    )

    id: str = Field(primary_key=True, max_length=32)
    subscription_id: str = Field(
        sa_column=Column(String(32), ForeignKey("subscription.id"), nullable=False)
    )
    status: str = Field(max_length=16)
    terms: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    valid_from: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    valid_until: datetime = Field(sa_column=Column(UTCDateTime, nullable=False, index=True))
