"""The Fietsen & Co example shop (examples/shop) end to end against a live vault.

The example is documentation that runs: if the SDK or the vault changes in a
way that breaks the flow a merchant copies from it, this test says so. The
shop runs in Flask's test client; the vault is real (HTTP on 127.0.0.1); the
person is a cookie-keeping HTTP client that posts the consent form.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from oauth_helpers import LiveVault
from prefvault_sdk import VaultClient, webhooks
from sdk_helpers import approve, logged_in
from sqlmodel import select

from vault.models import ContactEvent, Subscription
from vault.services import subscriptions as subscription_service
from vault.services.merchants import register_client

SHOP_DIR = Path(__file__).resolve().parent.parent / "examples" / "shop"
SHOP_URL = "http://127.0.0.1:5001"
REDIRECT_URI = f"{SHOP_URL}/connect/callback"
WEBHOOK_URL = f"{SHOP_URL}/webhooks/vault"


def _shop_module(name: str) -> ModuleType:
    """Import one of the example's modules the way ``python app.py`` would (its folder first)."""
    if str(SHOP_DIR) not in sys.path:
        sys.path.insert(0, str(SHOP_DIR))
    return importlib.import_module(name)


shop_app = _shop_module("app")
abandoned_cart = _shop_module("abandoned_cart")


class ShopUnderTest:
    """The example shop wired to a live vault, and what the test needs to drive it."""

    def __init__(self, live_vault: LiveVault, instance: Path) -> None:
        rt = live_vault.runtime
        with rt.database.write() as session:
            issued = register_client(session, clock=rt.clock, name="Fietsen & Co",
                                     redirect_uris=[REDIRECT_URI], webhook_url=WEBHOOK_URL,
                                     webhook_key=rt.keyring.webhook_key)
        assert issued.webhook_secret is not None
        self.live_vault = live_vault
        self.client_id = issued.client_id
        self.client_secret = issued.client_secret
        self.webhook_secret = issued.webhook_secret
        self.app: Flask = shop_app.create_app({
            "PREFVAULT_URL": live_vault.base_url,
            "SHOP_CLIENT_ID": issued.client_id,
            "SHOP_CLIENT_SECRET": issued.client_secret,
            "SHOP_WEBHOOK_SECRET": issued.webhook_secret,
            "SHOP_INSTANCE_PATH": str(instance),
        })

    def connect(self, email: str, profile: dict[str, object], grant: list[str]) -> str:
        """A person clicks "Connect", allows ``grant`` at the vault, comes back; the subject."""
        browser = self.app.test_client()
        before = {c.subject for c in shop_app.store_of(self.app).customers()}
        # The shop's own address, so the session cookie set here comes back on the callback.
        started = browser.get("/connect", base_url=SHOP_URL)
        assert started.status_code == 302
        authorize = started.headers["Location"]
        assert authorize.startswith(self.live_vault.base_url + "/oauth/authorize?")
        with logged_in(self.live_vault, email, profile) as person:
            callback = approve(person, authorize, grant)
        assert callback.startswith(REDIRECT_URI + "?")
        back = browser.get(callback)
        assert back.status_code == 302 and "Bedankt" in back.headers["Location"]
        (subject,) = {c.subject for c in shop_app.store_of(self.app).customers()} - before
        return str(subject)

    def job(self) -> tuple[Any, list[str]]:
        """One run of the nightly job with its own client, as ``abandoned_cart.py`` makes."""
        printed: list[str] = []
        with VaultClient(self.live_vault.base_url, client_id=self.client_id,
                         client_secret=self.client_secret) as vault:
            summary = abandoned_cart.run(vault, shop_app.store_of(self.app), say=printed.append)
        return summary, printed

    def webhook(self, body: bytes, signature: str) -> tuple[int, object]:
        answer = self.app.test_client().post(
            "/webhooks/vault", data=body, headers={webhooks.SIGNATURE_HEADER: signature,
                                                   "Content-Type": "application/json"})
        return answer.status_code, answer.get_json(silent=True)


@pytest.fixture
def shop(live_vault: LiveVault, tmp_path: Path) -> Iterator[ShopUnderTest]:
    if live_vault.runtime.database.dialect != "sqlite":
        pytest.skip("the example is about the shop, not the vault's storage: SQLite is enough")
    under_test = ShopUnderTest(live_vault, tmp_path / "instance")
    try:
        yield under_test
    finally:
        shop_app.vault_of(under_test.app).close()


def _revoke(live_vault: LiveVault, subject: str) -> None:
    """The person revokes the shop in their vault (as the subscriptions page does)."""
    rt = live_vault.runtime
    with rt.database.write() as session:
        sub = session.exec(select(Subscription).where(Subscription.subject == subject)).one()
        subscription_service.revoke(session, person_id=sub.person_id, subscription_id=sub.id,
                                    data_keys=rt.data_keys, clock=rt.clock)


def _reported(live_vault: LiveVault) -> list[tuple[str, str, str | None, bool]]:
    with live_vault.runtime.database.read() as session:
        rows = session.exec(select(ContactEvent).order_by(ContactEvent.recorded_at)).all()
        return [(r.channel, r.purpose, r.decision_id, r.allowed) for r in rows]


def test_the_example_shop_connects_reminds_by_phone_or_mail_and_stops_after_a_revoke(
        shop: ShopUnderTest, live_vault: LiveVault) -> None:
    caller = shop.connect("ada@example.org", {"phone": "+31 6 1234 5678"},
                          ["contact:phone:abandoned_cart", "contact:email:abandoned_cart",
                           "profile:email", "profile:phone"])
    mailer = shop.connect("bram@example.org", {"phone": "+31 6 8765 4321"},
                          ["contact:email:abandoned_cart", "contact:email:order_updates",
                           "profile:email"])
    quiet = shop.connect("dirk@example.org", {}, ["contact:email:order_updates", "profile:email"])

    # The shop keeps subjects only, never an address.
    raw = (Path(shop.app.instance_path) / "customers.db").read_bytes()
    assert b"@example.org" not in raw and b"+31 6 " not in raw

    summary, printed = shop.job()
    contacted = {c.subject: c.channel for c in summary.contacted}
    assert contacted == {caller: "phone", mailer: "email"}
    assert [(s.subject, s.reason) for s in summary.skipped] == [
        (quiet, "phone: not_granted; no other channel allowed")]
    assert any(line.startswith(f"{caller}: would CALL +31 6 1234 5678") for line in printed)
    assert any(line.startswith(f"{mailer}: would MAIL bram@example.org") for line in printed)
    assert printed[-2:] == ["contacted 2 (phone 1, email 1), skipped 1",
                            f"  skipped {quiet}: phone: not_granted; no other channel allowed"]
    reported = _reported(live_vault)
    assert sorted(reported) == sorted(
        (c.channel, "abandoned_cart", c.decision_id, True) for c in summary.contacted)

    # All three revoke in their vault: the next night nobody is contacted, and nothing is reported.
    _revoke(live_vault, caller)
    _revoke(live_vault, mailer)
    _revoke(live_vault, quiet)
    summary, printed = shop.job()
    assert summary.contacted == []
    assert {(s.subject, s.reason) for s in summary.skipped} == {
        (caller, "revoked"), (mailer, "revoked"), (quiet, "revoked")}
    assert not any("would" in line for line in printed)
    assert len(_reported(live_vault)) == 2
    # The job noticed the revocations itself, so the night after it asks about no one.
    assert shop_app.store_of(shop.app).customers(status="active") == []


def test_the_webhook_endpoint_acts_only_on_signed_deliveries(
        shop: ShopUnderTest, live_vault: LiveVault) -> None:
    subject = shop.connect("cor@example.org", {}, ["contact:email:abandoned_cart",
                                                   "profile:email"])
    body = json.dumps({"id": "evt_test_1", "type": "subscription.revoked",
                       "created": int(time.time()), "subject": subject, "data": {}}).encode()
    store = shop_app.store_of(shop.app)

    forged = webhooks.construct_test_header(body, "whsec_not-the-shops-secret")
    assert shop.webhook(body, forged)[0] == 400
    assert shop.webhook(body, "t=1,v1=deadbeef")[0] == 400
    assert shop.webhook(body, "")[0] == 400
    assert [c.status for c in store.customers()] == ["active"]

    signed = webhooks.construct_test_header(body, shop.webhook_secret)
    assert shop.webhook(body, signed) == (200, {"received": True})
    assert [c.status for c in store.customers()] == ["revoked"]
    # The vault delivers at least once: a repeat is acknowledged and changes nothing.
    assert shop.webhook(body, signed) == (200, {"received": True, "duplicate": True})

    summary, printed = shop.job()
    assert summary.contacted == [] and summary.skipped == []
    assert printed == ["contacted 0 (phone 0, email 0), skipped 0"]


def test_the_shop_refuses_to_start_without_its_settings(tmp_path: Path) -> None:
    with pytest.raises(shop_app.MissingConfig) as missing:
        shop_app.create_app({"PREFVAULT_URL": "http://127.0.0.1:8000",
                             "SHOP_CLIENT_ID": "demo-shop",
                             "SHOP_INSTANCE_PATH": str(tmp_path)})
    message = str(missing.value)
    assert "\n" not in message
    assert "SHOP_CLIENT_SECRET, SHOP_WEBHOOK_SECRET" in message
