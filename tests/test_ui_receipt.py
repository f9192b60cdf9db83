"""The person downloads their consent receipt and anyone can verify it with the JWKS alone."""

from __future__ import annotations

import pytest
from api_helpers import Vault, register_merchant, revoke, subscribe
from prefvault_sdk import SignatureVerificationError, verify_receipt
from ui_helpers import log_in, logged_in


@pytest.fixture
def vault(app, client, runtime, clock) -> Vault:  # type: ignore[no-untyped-def]
    return Vault(app, client, runtime, clock)


def test_the_person_downloads_a_receipt_that_verifies_offline(vault: Vault) -> None:
    shop = register_merchant(vault.runtime, "Fietsen & Co")
    sub = subscribe(vault.runtime, shop, scope="contact:email:offers profile:email")
    client = vault.app.test_client()
    assert log_in(client, sub.email).status_code == 302
    page = client.get(f"/subscriptions/{sub.subscription_id}")
    assert f"/subscriptions/{sub.subscription_id}/receipt" in page.text
    download = client.get(f"/subscriptions/{sub.subscription_id}/receipt")
    assert download.status_code == 200 and download.mimetype == "application/json"
    assert "attachment" in download.headers["Content-Disposition"]
    document = download.get_json()
    jwks = vault.client.get("/.well-known/jwks.json").get_json()
    receipt = verify_receipt(document["receipt"], jwks, subject=sub.subject)
    assert receipt.status == "active"
    assert document["claims"] == dict(receipt.claims)
    assert ("email", "offers") in {(p.channel, p.purpose) for p in receipt.permissions}
    assert sub.email not in download.get_data(as_text=True), "no personal data in a receipt"

    forged = document["receipt"][:-4] + ("AAAA" if not document["receipt"].endswith("AAAA")
                                         else "BBBB")
    with pytest.raises(SignatureVerificationError):
        verify_receipt(forged, jwks)


def test_after_revoking_the_receipt_says_revoked(vault: Vault) -> None:
    shop = register_merchant(vault.runtime)
    sub = subscribe(vault.runtime, shop)
    revoke(vault.runtime, sub)
    client = vault.app.test_client()
    log_in(client, sub.email)
    document = client.get(f"/subscriptions/{sub.subscription_id}/receipt").get_json()
    jwks = vault.client.get("/.well-known/jwks.json").get_json()
    assert verify_receipt(document["receipt"], jwks).status == "revoked"


def test_another_persons_receipt_is_not_found(vault: Vault) -> None:
    shop = register_merchant(vault.runtime)
    sub = subscribe(vault.runtime, shop)
    stranger = logged_in(vault)
    response = stranger.get(f"/subscriptions/{sub.subscription_id}/receipt")
    assert response.status_code == 404 and response.mimetype == "text/html"
