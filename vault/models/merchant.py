"""Merchants and auditors: the vault's OAuth clients."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, LargeBinary
from sqlmodel import Field, SQLModel

from vault.crypto.secrets import secret_matches
from vault.models.types import UTCDateTime
from vault.services.scopes import PERSON_SCOPES

MERCHANT = "merchant"
AUDITOR = "auditor"


class Merchant(SQLModel, table=True):
    """A registered client: a shop (``kind='merchant'``) or an auditor.

    The client secret is kept only as a hash. The webhook signing secret is
    never stored: it is derived from the key ring's webhook key and the random
    ``webhook_secret`` salt kept here, so a database copy cannot forge events.
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

    # -- Authlib ClientMixin ---------------------------------------------------------
    # Merchants use authorization code (+ refresh) for people and client credentials
    # for their own API calls; auditors only client credentials. No implicit, no
    # password grant, and redirect URIs match byte for byte.

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # Never guess: the request must name its redirect URI.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """Of the requested scopes, those this kind of client may ask for."""
        allowed = set(self.allowed_scopes.split())
        if self.kind == MERCHANT:
            allowed |= set(PERSON_SCOPES)
        return " ".join(s for s in dict.fromkeys((scope or "").split()) if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secret_matches(self.client_secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return self.kind == MERCHANT and response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        if self.disabled_at is not None:
            return False
        if self.kind == MERCHANT:
            return grant_type in ("authorization_code", "refresh_token", "client_credentials")
        return grant_type == "client_credentials"
