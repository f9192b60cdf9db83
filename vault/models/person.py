"""A person, their wrapped data key, their sealed profile and their global rules."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, LargeBinary, String
from sqlmodel import Field, SQLModel

from vault.models.types import UTCDateTime


class Person(SQLModel, table=True):
    """An account. After erasure only the tombstone (id and times) is left."""

    __tablename__ = "person"

    id: str = Field(primary_key=True, max_length=32)
    email_index: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary(32), unique=True, nullable=True)
    )
    password_hash: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    erased_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class PersonKey(SQLModel, table=True):
    """A person's data key, wrapped by one KEK of the key ring.

    Deleting this row is crypto-shredding: every ciphertext of the person
    becomes noise.
    """

    __tablename__ = "person_key"

    person_id: str = Field(
        sa_column=Column(String(32), ForeignKey("person.id", ondelete="CASCADE"),
                         primary_key=True)
    )
    kek_id: str = Field(max_length=64, index=True)
    wrapped: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    rewrapped_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class Profile(SQLModel, table=True):
    """The person's profile; every column but the key and time is sealed."""

    __tablename__ = "profile"

    person_id: str = Field(
        sa_column=Column(String(32), ForeignKey("person.id", ondelete="CASCADE"),
                         primary_key=True)
    )
    name: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    email: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    phone: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    address: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    language: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    interests: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    time_zone: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    channel_order: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class GlobalRules(SQLModel, table=True):
    """Rules that override every merchant, sealed as one JSON record.

    ``version`` grows by one on every change so a stale editor can be refused
    instead of silently overwriting a newer rule.
    """

    __tablename__ = "global_rules"

    person_id: str = Field(
        sa_column=Column(String(32), ForeignKey("person.id", ondelete="CASCADE"),
                         primary_key=True)
    )
    record: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    version: int = Field(default=1)
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
