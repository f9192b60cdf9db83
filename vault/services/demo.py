"""Demo data: one person and one shop, so a newcomer can click around at once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlmodel import Session, select

from vault.clock import Clock
from vault.crypto.blind_index import email_index
from vault.models import Merchant, Person
from vault.services.accounts import AccountService
from vault.services.merchants import register_client, rotate_client_secret
from vault.services.webhooks import webhook_secret

DEMO_EMAIL = "demo@example.org"
DEMO_CLIENT_ID = "demo-shop"
DEMO_REDIRECT_URI = "http://127.0.0.1:5001/connect/callback"
DEMO_WEBHOOK_URL = "http://127.0.0.1:5001/webhooks/vault"
DEMO_PROFILE = {
    "name": "Demo Person",
    "phone": "+31 20 555 0100",
    "address": "Demostraat 1\n1000 AA Amsterdam",
    "language": "en",
    "interests": "Cycling and cooking; order updates by mail, no phone calls for offers.",
}


@dataclass(frozen=True)
class DemoCredentials:
    """Fresh credentials for the demo person and shop (secrets are new on every run)."""

    email: str
    password: str
    client_id: str
    client_secret: str
    redirect_uri: str
    webhook_secret: str | None = None


def seed_demo(session: Session, *, accounts: AccountService, clock: Clock,
              webhook_key: bytes | None = None) -> DemoCredentials:
    """Create the demo person and shop, or give the existing ones new secrets.

    Secrets are stored only as hashes, so a second run cannot print the old
    ones; it replaces them instead.
    """
    password = "demo-" + secrets.token_urlsafe(12)
    index = email_index(accounts.blind_index_key, DEMO_EMAIL)
    person = session.exec(select(Person).where(Person.email_index == index)).first()
    if person is None:
        accounts.sign_up(session, email=DEMO_EMAIL, password=password, profile=DEMO_PROFILE)
    else:
        person.password_hash = accounts.passwords.hash(password)
        session.add(person)
    exists = session.exec(select(Merchant.id).where(Merchant.client_id == DEMO_CLIENT_ID)).first()
    if exists:
        issued = rotate_client_secret(session, DEMO_CLIENT_ID, clock=clock)
    else:
        issued = register_client(session, clock=clock, name="Demo Shop",
                                 webhook_key=webhook_key,
                                 client_id=DEMO_CLIENT_ID, redirect_uris=[DEMO_REDIRECT_URI],
                                 webhook_url=DEMO_WEBHOOK_URL,
                                 contact_email="privacy@demo-shop.example")
    hook = issued.webhook_secret
    if hook is None and webhook_key is not None:
        merchant = session.exec(select(Merchant).where(Merchant.client_id == DEMO_CLIENT_ID)).one()
        if merchant.webhook_secret is not None:
            hook = webhook_secret(webhook_key, merchant.webhook_secret)
    return DemoCredentials(DEMO_EMAIL, password, issued.client_id, issued.client_secret,
                           DEMO_REDIRECT_URI, hook)
