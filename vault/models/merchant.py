"""Merchants and auditors: the vault's OAuth clients."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, LargeBinary
from sqlmodel import Field, SQLModel

from vault.models.types import UTCDateTime

MERCHANT = "merchant"
AUDITOR = "auditor"


class Merchant(SQLModel, table=True):
    """A registered client: a shop (``kind='merchant'``) or an auditor.

    The client secret is kept only as a hash. The webhook secret must be
    recoverable to sign deliveries, so it is sealed instead.
    """

    __tablename__ = "merchant"

    id: str = Field(primary_key=True, max_length=32)
    client_id: str = Field(max_length=64, unique=True, index=True)
    client_secret_hash: str = Field(max_length=255)
    kind: str = Field(default=MERCHANT, max_length=16)
    name: str = Field(max_length=200)
    contact_email: str | None = Field(default=None, max_length=320)
    redirect_uris: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    allowed_scopes: str = Field(default="", max_length=2000)
    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_secret: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    secret_rotated_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    disabled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
