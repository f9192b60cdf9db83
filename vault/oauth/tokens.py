"""Issuing, finding and revoking OAuth tokens, which are stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, select

from vault.models.oauth import OAuthToken

ACCESS_TOKEN_SECONDS = 900
CLIENT_TOKEN_SECONDS = 3600
REFRESH_FAMILY_LIFETIME = timedelta(days=90)
CODE_LIFETIME = timedelta(minutes=10)


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class GrantUser:
    """The resource owner as Authlib sees it: a person through one subscription.

    ``get_user_id`` is the pairwise subject, so the id_token's ``sub`` is the
    id this merchant knows the person by, never the vault's own person id.
    """

    person_id: str
    subscription_id: str
    subject: str
    granted_scope: str = ""

    def get_user_id(self) -> str:
        return self.subject


def find_by_access_token(session: Session, value: str) -> OAuthToken | None:
    return session.exec(
        select(OAuthToken).where(OAuthToken.access_token_hash == token_hash(value))
    ).first()


def find_by_refresh_token(session: Session, value: str, *, lock: bool = False) -> OAuthToken | None:
    query = select(OAuthToken).where(OAuthToken.refresh_token_hash == token_hash(value))
    if lock:
        query = query.with_for_update()
    return session.exec(query).first()


def find_any(session: Session, value: str, hint: str | None) -> OAuthToken | None:
    """A token by either of its values, trying the hinted type first (RFC 7009/7662)."""
    finders = [find_by_access_token, find_by_refresh_token]
    if hint == "refresh_token":
        finders.reverse()
    for finder in finders:
        token = finder(session, value)
        if token is not None:
            return token
    return None


def revoke_family(session: Session, family_id: str, now: datetime) -> None:
    session.execute(
        update(OAuthToken)
        .where(OAuthToken.family_id == family_id, OAuthToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def revoke_issued_from_code(session: Session, code_id: str, now: datetime) -> None:
    """A replayed code revokes every token that code led to (RFC 6749 §4.1.2)."""
    families = session.exec(
        select(OAuthToken.family_id).where(OAuthToken.code_id == code_id).distinct()
    ).all()
    for family in families:
        revoke_family(session, family, now)


def is_active(token: OAuthToken, now: datetime) -> bool:
    return token.revoked_at is None and now < token.access_expires_at
