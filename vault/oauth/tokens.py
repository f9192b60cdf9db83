"""Issuing, finding and revoking OAuth tokens, which are stored only as SHA-256 hashes.

A client's own access token (client credentials: no person behind it) is
kept in this process's memory for a few seconds after it was read, so the
decision API does not read it on every call (``find_client_token``). That
can never widen access: only a token found unrevoked is kept, it is kept
with its own expiry (checked on every use), a token acting for a person is
never kept (person grants, whose revocation must be immediate, are always
read), and any revocation committed in this process empties the memory.
A token revoked through another worker process keeps working there for at
most ``CLIENT_TOKEN_MEMORY_SECONDS``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import event, update
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import object_session
from sqlmodel import Session, select

from vault.db import Driver
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


@dataclass(frozen=True, slots=True)
class ClientToken:
    """An unrevoked access token and the client it was issued to, read for the hot path."""

    client_pk: str
    client_kind: str
    scopes: frozenset[str]
    expires_at: datetime
    #: issued through a person's grant rather than to the client itself
    for_person: bool


_ACCESS_LOOKUP_SQL = (
    "SELECT t.scope, t.access_expires_at, t.revoked_at, t.person_id, t.subscription_id, "
    "m.id, m.kind FROM oauth_token t JOIN merchant m ON m.client_id = t.client_id "
    "WHERE t.access_token_hash = :hash"
)


#: how long a client's own token, once read unrevoked, is trusted without reading it again
CLIENT_TOKEN_MEMORY_SECONDS = 5.0
_REMEMBERED_AT_MOST = 10_000
#: token hash -> (monotonic deadline, token)
_remembered: dict[str, tuple[float, ClientToken]] = {}
_FORGET_ON_COMMIT = "prefvault_forget_client_tokens"


def find_client_token(db: Driver, value: str) -> ClientToken | None:
    """An access token with its client, or None if unknown or revoked.

    One driver-level query (the ORM lookup, ``find_by_access_token``, costs
    many times that on a route that is otherwise a few small queries), and
    none at all for a client's own token read in the last few seconds (see
    the module docstring).
    """
    digest = token_hash(value)
    now = time.monotonic()
    remembered = _remembered.get(digest)
    if remembered is not None and now < remembered[0]:
        return remembered[1]
    found = db.rows(_ACCESS_LOOKUP_SQL, {"hash": digest})
    if not found:
        return None
    scope, expires_at, revoked_at, person_id, subscription_id, client_pk, kind = found[0]
    if revoked_at is not None:
        return None
    token = ClientToken(client_pk, kind, frozenset(scope.split()), db.moment(expires_at),
                        person_id is not None or subscription_id is not None)
    if not token.for_person:
        if len(_remembered) >= _REMEMBERED_AT_MOST:
            _remembered.clear()
        _remembered[digest] = (now + CLIENT_TOKEN_MEMORY_SECONDS, token)
    return token


def forget_client_tokens(session: Session | None = None) -> None:
    """Drop every remembered token now and, given a session, again when it commits."""
    _remembered.clear()
    if session is not None:
        session.info[_FORGET_ON_COMMIT] = True


@event.listens_for(OAuthToken.revoked_at, "set")
def _on_revoke(target: OAuthToken, value: object, _old: object, _initiator: object) -> None:
    if value is not None:
        forget_client_tokens(object_session(target))  # type: ignore[arg-type]


@event.listens_for(OrmSession, "after_commit")
def _after_commit(session: OrmSession) -> None:
    if session.info.pop(_FORGET_ON_COMMIT, False):
        _remembered.clear()


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
    forget_client_tokens(session)
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
