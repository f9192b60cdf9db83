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

    ``terms`` is everything a decision reads about this subscription (the
    permission grid, the person's global rules, time zone and channel order,
    the shared fields), sealed as one record with the person's data key and
    rewritten in the transaction of every change to any of them (see
    ``vault.services.terms``). Beside it, ``wrapped_key`` and ``key_kek_id``
    are a copy of the person's wrapped data key (``PersonKey``), so a campaign
    reads one row per subject and unwraps and opens once. The copy is rewrapped
    with the original on every KEK rotation and deleted with it on erasure.

    ``terms_since`` is when the current state (these terms, or the status when
    the subscription is not active) took force; the states before it are kept
    in ``terms_history`` so a contact is judged by the terms of its moment.
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
    terms: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    key_kek_id: str | None = Field(default=None, max_length=64)
    wrapped_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    terms_since: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
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
