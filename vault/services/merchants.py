"""Registering merchants and auditors (the vault's OAuth clients) and their secrets."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlmodel import Session, select

from vault.clock import Clock
from vault.crypto.secrets import hash_secret, new_secret
from vault.errors import NotFound, ValidationFailed
from vault.models import Merchant
from vault.models.merchant import AUDITOR, MERCHANT
from vault.models.types import new_id
from vault.services.audit import AuditTag, record_event
from vault.services.scopes import AUDITOR_SCOPES, MERCHANT_SCOPES
from vault.services.validation import clean_email, clean_text
from vault.services.webhooks import webhook_secret

_CLIENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def clean_redirect_uri(value: object, *, field: str = "redirect_uri") -> str:
    """An absolute https URI (http only on loopback), no fragment, nothing to normalise.

    Redirect URIs are compared byte for byte at authorisation time, so they
    are stored exactly as the operator typed them once they pass.
    """
    text = clean_text(value, field=field, max_length=2000)
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValidationFailed(f"{field} must be an absolute https URL", field=field)
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ValidationFailed(f"{field} must use https (http only for 127.0.0.1/localhost)",
                               field=field)
    if parts.fragment or "#" in text:
        raise ValidationFailed(f"{field} may not contain a fragment", field=field)
    if parts.username or parts.password:
        raise ValidationFailed(f"{field} may not contain credentials", field=field)
    return text


def clean_webhook_url(value: object) -> str:
    return clean_redirect_uri(value, field="webhook_url")


@dataclass(frozen=True)
class IssuedClient:
    """A client as the operator sees it right after registering: the only time with its secret."""

    client_id: str
    client_secret: str
    name: str
    kind: str
    webhook_secret: str | None = None


def register_client(
    session: Session,
    *,
    clock: Clock,
    name: str,
    kind: str = MERCHANT,
    redirect_uris: Sequence[str] = (),
    webhook_url: str | None = None,
    contact_email: str | None = None,
    client_id: str | None = None,
    webhook_key: bytes | None = None,
) -> IssuedClient:
    """Register a merchant or an auditor; the secret is returned once and stored hashed."""
    if kind not in (MERCHANT, AUDITOR):
        raise ValidationFailed("kind must be merchant or auditor", field="kind")
    clean_name = clean_text(name, field="name", max_length=200)
    uris = [clean_redirect_uri(u) for u in redirect_uris]
    if kind == MERCHANT and not uris:
        raise ValidationFailed("a merchant needs at least one redirect URI",
                               field="redirect_uri")
    if kind == AUDITOR and (uris or webhook_url):
        raise ValidationFailed("an auditor has no redirect URI or webhook", field="kind")
    hook = clean_webhook_url(webhook_url) if webhook_url else None
    contact = clean_email(contact_email, field="contact_email") if contact_email else None
    if client_id is None:
        client_id = f"{kind[0]}-{secrets.token_hex(10)}"
    elif not _CLIENT_ID.fullmatch(client_id):
        raise ValidationFailed("client_id must be 3-63 lower-case letters, digits or dashes",
                               field="client_id")
    if session.exec(select(Merchant.id).where(Merchant.client_id == client_id)).first():
        raise ValidationFailed("this client_id is taken", field="client_id")
    secret = new_secret()
    merchant = Merchant(
        id=new_id(),
        client_id=client_id,
        client_secret_hash=hash_secret(secret),
        kind=kind,
        name=clean_name,
        contact_email=contact,
        redirect_uris=uris,
        allowed_scopes=" ".join(MERCHANT_SCOPES if kind == MERCHANT else AUDITOR_SCOPES),
        webhook_url=hook,
        webhook_secret=secrets.token_bytes(16) if hook else None,
        created_at=clock.now(),
    )
    session.add(merchant)
    session.flush()
    record_event(session, clock=clock, tag=AuditTag.MERCHANT_REGISTERED, actor="operator",
                 merchant_id=merchant.id, data={"kind": kind, "client_id": client_id})
    signing = (webhook_secret(webhook_key, merchant.webhook_secret)
               if webhook_key is not None and merchant.webhook_secret is not None else None)
    return IssuedClient(client_id, secret, clean_name, kind, signing)


def find_client(session: Session, client_id: str) -> Merchant:
    merchant = session.exec(select(Merchant).where(Merchant.client_id == client_id)).first()
    if merchant is None:
        raise NotFound(f"no client {client_id!r}", field="client_id")
    return merchant


def rotate_client_secret(session: Session, client_id: str, *, clock: Clock) -> IssuedClient:
    """Replace a client's secret; the old one stops working at commit."""
    merchant = find_client(session, client_id)
    secret = new_secret()
    merchant.client_secret_hash = hash_secret(secret)
    merchant.secret_rotated_at = clock.now()
    session.add(merchant)
    record_event(session, clock=clock, tag=AuditTag.MERCHANT_SECRET_ROTATED, actor="operator",
                 merchant_id=merchant.id, data={"client_id": client_id})
    return IssuedClient(merchant.client_id, secret, merchant.name, merchant.kind)


def list_clients(session: Session) -> list[Merchant]:
    return list(session.exec(select(Merchant).order_by(Merchant.created_at, Merchant.client_id)))
