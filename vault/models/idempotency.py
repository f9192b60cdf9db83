"""Remembered answers to retried POSTs (the ``Idempotency-Key`` header)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from vault.models.types import UTCDateTime


class IdempotentRequest(SQLModel, table=True):
    """A merchant's POST with its key: the request's digest and the answer given.

    A retry with the same key and body gets the same answer without doing the
    work twice; the same key with another body is refused.
    """

    __tablename__ = "idempotent_request"

    merchant_id: str = Field(primary_key=True, max_length=32)
    key: str = Field(primary_key=True, max_length=255)
    request_sha256: str = Field(max_length=64)
    status: int
    response: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False, index=True))
