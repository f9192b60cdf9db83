"""Subscriptions (a person ↔ a merchant) and their sealed contact permissions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, LargeBinary, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from vault.models.types import UTCDateTime

ACTIVE = "active"
REVOKED = "revoked"
ERASED = "erased"


class Subscription(SQLModel, table=True):
    """One merchant's standing with one person, created by an OAuth grant.

    ``subject`` is the pairwise id the merchant knows the person by: random,
    different for every merchant. ``shared_fields`` (which profile fields the
    grant shares) is sealed with the person's data key.
    """

    __tablename__ = "subscription"
    __table_args__ = (UniqueConstraint("person_id", "merchant_id"),)

    id: str = Field(primary_key=True, max_length=32)
    person_id: str = Field(
        sa_column=Column(String(32), ForeignKey("person.id"), nullable=False, index=True)
    )
    merchant_id: str = Field(
        sa_column=Column(String(32), ForeignKey("merchant.id"), nullable=False, index=True)
    )
    subject: str = Field(max_length=64, unique=True, index=True)
    status: str = Field(default=ACTIVE, max_length=16)
    shared_fields: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class ContactPermission(SQLModel, table=True):
    """The contact permissions of one subscription, sealed as one record.

    The record is the whole channel x purpose grid (allowed, ``max_per_week``,
    quiet hours, expiry), so a decision opens one ciphertext per subject and
    a copy of the database shows not even which channels a shop may use.
    """

    __tablename__ = "contact_permission"

    subscription_id: str = Field(
        sa_column=Column(String(32), ForeignKey("subscription.id", ondelete="CASCADE"),
                         primary_key=True)
    )
    record: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    version: int = Field(default=1)
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
