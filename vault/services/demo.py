"""Demo data: a person, the demo shop, and shops already subscribed to that person.

The demo shop starts unconnected so the example shop can walk through the
consent page; three other shops are subscribed already, with a few reported
contacts (one of them a violation), so the person's pages show a lived-in
vault from the first click.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, select

from vault.clock import Clock
from vault.crypto.blind_index import email_index
from vault.models import Merchant, Person
from vault.services import subscriptions as subscription_service
from vault.services.accounts import AccountService
from vault.services.contacting import report_contact
from vault.services.merchants import find_client, register_client, rotate_client_secret
from vault.services.scopes import PersonGrant
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
class DemoRelationship:
    """A shop already subscribed to the demo person, and contacts it reported."""

    client_id: str
    name: str
    scope: str
    #: (channel, purpose, days ago) of each reported contact, oldest first
    contacts: tuple[tuple[str, str, int], ...] = ()
    #: (channel, purpose, max_per_week) caps the person set
    caps: tuple[tuple[str, str, int], ...] = ()


DEMO_RELATIONSHIPS = (
    DemoRelationship(
        "demo-fietsen", "Fietsen & Co",
        "contact:email:order_updates contact:email:offers contact:sms:order_updates "
        "profile:name profile:email",
        contacts=(("email", "order_updates", 20), ("sms", "order_updates", 19),
                  ("email", "offers", 9), ("email", "offers", 3), ("email", "offers", 2)),
        caps=(("email", "offers", 1),)),
    DemoRelationship(
        "demo-boekhandel", "Boekhandel De Lezer",
        "contact:email:order_updates contact:email:service contact:post:offers "
        "profile:name profile:email profile:address",
        contacts=(("email", "order_updates", 12), ("post", "offers", 6))),
    DemoRelationship(
        "demo-partnerdeals", "Partner Deals BV",
        "contact:email:partner_offers profile:email",
        contacts=(("phone", "partner_offers", 4),)),
)


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
        person_id = accounts.sign_up(session, email=DEMO_EMAIL, password=password,
                                     profile=DEMO_PROFILE)
        seed_relationships(session, person_id, accounts=accounts, clock=clock)
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


def seed_relationships(session: Session, person_id: str, *, accounts: AccountService,
                       clock: Clock) -> None:
    """Subscribe the demo shops to a new demo person, back-dating their contacts.

    Contacts go through the same judgement as real reports, so a contact
    past a cap the person set shows up as a violation.
    """
    now = clock.now()
    for demo in DEMO_RELATIONSHIPS:
        merchant = session.exec(
            select(Merchant).where(Merchant.client_id == demo.client_id)).first()
        if merchant is None:
            register_client(session, clock=clock, name=demo.name, client_id=demo.client_id,
                            redirect_uris=[DEMO_REDIRECT_URI])
            merchant = find_client(session, demo.client_id)
        granted = PersonGrant.parse(demo.scope)
        sub = subscription_service.grant(session, person_id=person_id, merchant=merchant,
                                         granted=granted, requested=granted,
                                         data_keys=accounts.data_keys, clock=clock)
        for channel, purpose, cap in demo.caps:
            subscription_service.set_permission(
                session, person_id=person_id, subscription_id=sub.id, channel=channel,
                purpose=purpose, allowed=True, max_per_week=cap,
                data_keys=accounts.data_keys, clock=clock)
        session.flush()
        for channel, purpose, days_ago in demo.contacts:
            report_contact(session, merchant_id=merchant.id, subject=sub.subject,
                           channel=channel, purpose=purpose, decision_id=None,
                           at=now - timedelta(days=days_ago, hours=2),
                           data_keys=accounts.data_keys, clock=clock)
