"""OAuth 2 authorization codes and tokens, stored only as hashes.

These are typed SQLModel tables implementing Authlib's model interfaces
(Authlib's ready-made SQLAlchemy mixins do not work on SQLModel tables). A
code or token is a random string handed to the merchant once; the database
keeps its SHA-256, so a copy of the database cannot be used to call the API.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, ForeignKey, String
from sqlmodel import Field, SQLModel

from vault.models.types import UTCDateTime


class AuthorizationCode(SQLModel, table=True):
    """A one-time code from the consent page, exchanged at most once within 10 minutes."""

    __tablename__ = "oauth_code"

    id: str = Field(primary_key=True, max_length=32)
    code_hash: str = Field(max_length=64, unique=True)
    client_id: str = Field(max_length=64, index=True)
    person_id: str = Field(sa_column=Column(String(32), ForeignKey("person.id"), nullable=False))
    subscription_id: str = Field(
        sa_column=Column(String(32), ForeignKey("subscription.id"), nullable=False)
    )
    redirect_uri: str = Field(max_length=2000)
    scope: str = Field(max_length=4000)
    nonce: str | None = Field(default=None, max_length=255)
    code_challenge: str = Field(max_length=128)
    code_challenge_method: str = Field(max_length=8)
    auth_time: int
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))

    # -- Authlib AuthorizationCodeMixin / OIDC -----------------------------------------
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str] | None:
        return ["pwd"]


class OAuthToken(SQLModel, table=True):
    """An access token and, for person grants, its refresh token.

    Tokens descending from one authorization code share a ``family_id``:
    presenting a refresh token that was already used revokes the whole
    family, and so does replaying the code. ``refresh_expires_at`` is the
    family's absolute deadline; rotation never extends it.
    """

    __tablename__ = "oauth_token"

    id: str = Field(primary_key=True, max_length=32)
    client_id: str = Field(max_length=64, index=True)
    person_id: str | None = Field(
        default=None, sa_column=Column(String(32), ForeignKey("person.id"), nullable=True)
    )
    subscription_id: str | None = Field(
        default=None,
        sa_column=Column(String(32), ForeignKey("subscription.id"), nullable=True, index=True),
    )
    family_id: str = Field(max_length=32, index=True)
    code_id: str | None = Field(default=None, max_length=32, index=True)
    scope: str = Field(max_length=4000)
    access_token_hash: str = Field(max_length=64, unique=True)
    refresh_token_hash: str | None = Field(default=None, max_length=64, unique=True)
    issued_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    access_expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    refresh_expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    refresh_used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))

    # -- Authlib TokenMixin --------------------------------------------------------
    def check_client(self, client: object) -> bool:
        return getattr(client, "client_id", None) == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int((self.access_expires_at - self.issued_at).total_seconds())

    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self) -> bool:
        return datetime.now(UTC) >= self.access_expires_at
