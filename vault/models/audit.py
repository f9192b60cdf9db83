"""The consent log: append-only, hash-chained audit events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, LargeBinary, Text
from sqlmodel import Field, SQLModel

from vault.models.types import UTCDateTime


class AuditEvent(SQLModel, table=True):
    """One consent change. Never updated, never deleted, not even on erasure.

    ``seq`` is gap-free; ``hash`` is SHA-256 over the previous hash and this
    event's canonical JSON, so removing or editing any event breaks the chain.
    Only pseudonymous ids appear here.
    """

    __tablename__ = "audit_event"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    id: str = Field(max_length=32, unique=True)
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False, index=True))
    tag: str = Field(max_length=64, index=True)
    actor: str = Field(max_length=80)
    person_ref: str | None = Field(default=None, max_length=32, index=True)
    merchant_id: str | None = Field(default=None, max_length=32, index=True)
    subject: str | None = Field(default=None, max_length=64, index=True)
    data: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))


class AuditHead(SQLModel, table=True):
    """The single row holding the chain's last sequence number and hash.

    Writers lock this row to append, which keeps ``seq`` gap-free and the
    chain linear even with many processes writing at once.
    """

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
