"""Consent receipts: signed, bound to the consent log, verifiable with the JWKS alone.

A receipt describes a subscription's latest state (after the grant, a
permission change, the revocation), names the log leaf that recorded it with
an inclusion proof against a signed tree head, and carries pseudonymous ids
only. Every check here uses nothing of the vault's but ``/.well-known/jwks.json``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from api_helpers import (
    API,
    REDIRECT_URI,
    ApiMerchant,
    Subscribed,
    Vault,
    assert_problem,
    erase,
    register_merchant,
    revoke,
    rows,
    set_permission,
    subscribe,
    token_header,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jws
from joserfc.jwk import KeySet
from oauth_helpers import LiveVault
from prefvault_sdk import NotFound, Receipt, SignatureVerificationError, verify_receipt
from sdk_helpers import async_client_for, client_for, register_shop
from sdk_helpers import revoke as sdk_revoke
from sdk_helpers import subscribe as sdk_subscribe
from sqlalchemy import text

from vault.audit.merkle import verify_inclusion
from vault.audit.tree_head import verify_tree_head
from vault.clock import FixedClock
from vault.crypto.keyring import KeyRing, SigningKey
from vault.errors import NotFound as VaultNotFound
from vault.extensions import Runtime
from vault.services.merchants import find_client, register_client
from vault.services.receipts import receipt_for_person, sign_receipt

SUBSCRIPTIONS = f"{API}/subscriptions"
SCOPE = "contact:email:offers contact:sms:order_updates profile:email profile:language"


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    return Vault(app, client, runtime, clock)


@pytest.fixture
def shop(vault: Vault) -> ApiMerchant:
    """A shop that gave a privacy contact, as `merchant add --contact-email` records it."""
    rt = vault.runtime
    with rt.database.write() as session:
        issued = register_client(session, clock=rt.clock, name="Book Shop",
                                 redirect_uris=[REDIRECT_URI],
                                 contact_email="privacy@books.example")
        merchant_id = find_client(session, issued.client_id).id
    return ApiMerchant(merchant_id, issued.client_id, issued.client_secret, "Book Shop")


def jwks(vault: Vault) -> dict[str, Any]:
    response = vault.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


def fetch(vault: Vault, shop: ApiMerchant, subject: str) -> str:
    response = vault.client.get(f"{SUBSCRIPTIONS}/{subject}/receipt",
                                headers=token_header(vault.client, shop))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["subject"] == subject
    token: str = body["receipt"]
    return token


def state_event(vault: Vault, subject: str) -> dict[str, Any]:
    """The newest grant/change/revocation event about ``subject``."""
    return rows(vault.runtime, "SELECT seq, id, tag FROM audit_event WHERE subject = :s "
                "AND tag LIKE 'subscription:%' ORDER BY seq DESC", s=subject)[0]


def assert_bound_to_the_log(vault: Vault, receipt: Receipt, subject: str) -> None:
    """The leaf is the event that recorded the state, proven under a head the JWKS signed."""
    event = state_event(vault, subject)
    assert (receipt.log_index, receipt.event_id, receipt.record_id) == (
        event["seq"] - 1, event["id"], event["id"])
    assert receipt.claims["log"]["tag"] == event["tag"]
    assert verify_tree_head(receipt.tree_head, jwks(vault))
    assert receipt.tree_head.tree_size > receipt.log_index
    assert verify_inclusion(receipt.leaf_hash, receipt.log_index, receipt.tree_head.tree_size,
                            list(receipt.inclusion_proof), receipt.tree_head.root_hash)


def payload(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    document: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "==="))
    return document


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- the three states -----------------------------------------------------------------------


def test_receipt_after_the_grant(vault: Vault, shop: ApiMerchant) -> None:
    sub = subscribe(vault.runtime, shop, scope=SCOPE)
    token = fetch(vault, shop, sub.subject)
    receipt = verify_receipt(token, jwks(vault), issuer=vault.runtime.settings.issuer,
                             subject=sub.subject)
    assert receipt.active and receipt.status == "active"
    assert (receipt.controller, receipt.controller_contact, receipt.controller_id) == (
        "Book Shop", "privacy@books.example", shop.client_id)
    assert receipt.purposes == ("offers", "order_updates")
    assert receipt.channels == ("email", "sms")
    assert [(p.channel, p.purpose, p.allowed) for p in receipt.permissions] == [
        ("email", "offers", True), ("sms", "order_updates", True)]
    assert receipt.data_categories == ("email", "language")
    assert receipt.collection_method == "consent_page"
    assert receipt.language == "en"
    assert receipt.valid_until is None and receipt.revoked_at is None
    assert (receipt.withdrawal_method, receipt.withdrawal_url) == (
        "vault_ui", vault.runtime.settings.issuer + "/subscriptions")
    assert receipt.consent_at == vault.clock.now()
    assert receipt.schema_version == "prefvault-consent-receipt/1"
    assert receipt.jws == token
    assert_bound_to_the_log(vault, receipt, sub.subject)


def test_receipt_after_a_permission_change(vault: Vault, shop: ApiMerchant) -> None:
    rt = vault.runtime
    sub = subscribe(rt, shop, scope=SCOPE)
    before = verify_receipt(fetch(vault, shop, sub.subject), jwks(vault))
    vault.clock.advance(timedelta(days=1))
    set_permission(rt, sub, "email", "offers", allowed=False)
    expires = vault.clock.now() + timedelta(days=30)
    with rt.database.write() as session:
        from vault.services import subscriptions as service

        service.set_permission(session, person_id=sub.person_id,
                               subscription_id=sub.subscription_id, channel="post",
                               purpose="surveys", allowed=True, max_per_week=2,
                               expires_at=expires, data_keys=rt.data_keys, clock=rt.clock)
    after = verify_receipt(fetch(vault, shop, sub.subject), jwks(vault))
    assert after.record_id != before.record_id and after.log_index > before.log_index
    assert after.claims["log"]["tag"] == "subscription:permission:changed"
    assert after.purposes == ("order_updates", "surveys")
    assert after.channels == ("post", "sms")
    surveys = next(p for p in after.permissions if p.purpose == "surveys")
    assert (surveys.max_per_week, surveys.expires_at) == (2, expires)
    assert after.valid_until is None  # order updates by sms never expire
    assert after.consent_at == vault.clock.now()
    assert_bound_to_the_log(vault, after, sub.subject)


def test_receipt_after_the_revocation(vault: Vault, shop: ApiMerchant) -> None:
    sub = subscribe(vault.runtime, shop, scope=SCOPE)
    vault.clock.advance(timedelta(hours=2))
    revoke(vault.runtime, sub)
    receipt = verify_receipt(fetch(vault, shop, sub.subject), jwks(vault))
    assert not receipt.active and receipt.status == "revoked"
    assert receipt.revoked_at == vault.clock.now()
    assert receipt.permissions == () and receipt.purposes == () and receipt.channels == ()
    assert receipt.data_categories == ()
    assert receipt.claims["log"]["tag"] == "subscription:grant:revoked"
    assert_bound_to_the_log(vault, receipt, sub.subject)


def test_every_expiring_permission_bounds_the_validity(vault: Vault, shop: ApiMerchant) -> None:
    rt = vault.runtime
    sub = subscribe(rt, shop, scope="contact:email:offers")
    until = vault.clock.now() + timedelta(days=90)
    with rt.database.write() as session:
        from vault.services import subscriptions as service

        service.set_permission(session, person_id=sub.person_id,
                               subscription_id=sub.subscription_id, channel="email",
                               purpose="offers", allowed=True, expires_at=until,
                               data_keys=rt.data_keys, clock=rt.clock)
    assert verify_receipt(fetch(vault, shop, sub.subject), jwks(vault)).valid_until == until


# -- what the receipt holds and who may have it --------------------------------------------


def test_a_receipt_carries_pseudonymous_ids_only(vault: Vault, shop: ApiMerchant) -> None:
    sub = subscribe(vault.runtime, shop, scope=SCOPE,
                    profile={"name": "Ada Lovelace", "phone": "+31612345678"})
    text_of_receipt = json.dumps(payload(fetch(vault, shop, sub.subject)))
    for personal in (sub.email, sub.person_id, "Ada Lovelace", "+31612345678"):
        assert personal not in text_of_receipt
    assert sub.subject in text_of_receipt


def test_another_merchants_subject_is_the_same_404_as_an_unknown_one(
        vault: Vault, shop: ApiMerchant) -> None:
    sub = subscribe(vault.runtime, shop)
    other = register_merchant(vault.runtime, "Wine Shop")
    headers = token_header(vault.client, other)
    theirs = vault.client.get(f"{SUBSCRIPTIONS}/{sub.subject}/receipt", headers=headers)
    unknown = vault.client.get(f"{SUBSCRIPTIONS}/sub_nobody/receipt", headers=headers)
    plain = vault.client.get(f"{SUBSCRIPTIONS}/{sub.subject}", headers=headers)
    for response in (theirs, unknown, plain):
        assert_problem(response, 404, "not-found", field="subject")
    assert theirs.get_json() == unknown.get_json() == plain.get_json()


def test_a_receipt_needs_the_merchants_subscriptions_scope(vault: Vault,
                                                           shop: ApiMerchant) -> None:
    sub = subscribe(vault.runtime, shop)
    path = f"{SUBSCRIPTIONS}/{sub.subject}/receipt"
    assert_problem(vault.client.get(path), 401)
    assert_problem(vault.client.get(path, headers=token_header(vault.client, shop,
                                                               "decisions")), 403)
    auditor = register_merchant(vault.runtime, "Audit Co", kind="auditor")
    assert_problem(vault.client.get(path, headers=token_header(vault.client, auditor)), 403)


def test_an_erased_person_has_no_receipt(vault: Vault, shop: ApiMerchant) -> None:
    sub = subscribe(vault.runtime, shop)
    erase(vault.runtime, sub.person_id)
    response = vault.client.get(f"{SUBSCRIPTIONS}/{sub.subject}/receipt",
                                headers=token_header(vault.client, shop))
    assert_problem(response, 404, field="subject")


def test_the_first_receipt_after_a_change_signs_a_head_and_later_ones_reuse_it(
        vault: Vault, shop: ApiMerchant) -> None:
    sub = subscribe(vault.runtime, shop)
    assert rows(vault.runtime, "SELECT count(*) AS n FROM tree_head")[0]["n"] == 0
    first = verify_receipt(fetch(vault, shop, sub.subject), jwks(vault))
    second = verify_receipt(fetch(vault, shop, sub.subject), jwks(vault))
    assert first.tree_head == second.tree_head
    assert first.receipt_id != second.receipt_id  # each issue is its own record of issue
    assert rows(vault.runtime, "SELECT count(*) AS n FROM tree_head")[0]["n"] == 1


def test_no_receipt_for_a_state_the_log_does_not_hold_as_signed(vault: Vault,
                                                                shop: ApiMerchant) -> None:
    sub = subscribe(vault.runtime, shop)
    fetch(vault, shop, sub.subject)  # the grant is now under a signed head
    with vault.runtime.database.write() as session:
        session.execute(text("UPDATE audit_event SET data = '{}' WHERE subject = :s"),
                        {"s": sub.subject})
    response = vault.client.get(f"{SUBSCRIPTIONS}/{sub.subject}/receipt",
                                headers=token_header(vault.client, shop))
    assert_problem(response, 500, "log-integrity")


# -- the person's own receipt ---------------------------------------------------------------


def person_receipt(vault: Vault, sub: Subscribed, person_id: str | None = None) -> str:
    rt = vault.runtime
    with rt.database.read() as session:
        return receipt_for_person(session, person_id or sub.person_id, sub.subscription_id,
                                  database=rt.database, data_keys=rt.data_keys,
                                  signing_key=rt.keyring.signing_key,
                                  issuer=rt.settings.issuer, clock=rt.clock, language="nl")


def test_a_person_gets_the_receipt_of_their_own_subscription(vault: Vault,
                                                             shop: ApiMerchant) -> None:
    sub = subscribe(vault.runtime, shop, scope=SCOPE)
    receipt = verify_receipt(person_receipt(vault, sub), jwks(vault), subject=sub.subject)
    assert receipt.language == "nl" and receipt.controller == "Book Shop"
    assert_bound_to_the_log(vault, receipt, sub.subject)
    stranger = subscribe(vault.runtime, shop)
    with pytest.raises(VaultNotFound):
        person_receipt(vault, sub, person_id=stranger.person_id)


# -- verifying: the JWKS alone, and nothing else passes --------------------------------------


def test_an_independent_jose_library_verifies_it_with_the_served_jwks(
        vault: Vault, shop: ApiMerchant) -> None:
    sub = subscribe(vault.runtime, shop)
    token = fetch(vault, shop, sub.subject)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))
    assert header == {"alg": "Ed25519", "typ": "consent-receipt+jwt",
                      "kid": vault.runtime.keyring.signing_key.kid}
    verified = jws.deserialize_compact(token, KeySet.import_key_set(jwks(vault)),
                                       algorithms=["Ed25519"])
    assert json.loads(verified.payload)["sub"] == sub.subject


def _resigned(vault: Vault, token: str, **changes: Any) -> str:
    """The same claims with ``changes``, signed again with the vault's own key."""
    return sign_receipt({**payload(token), **changes}, vault.runtime.keyring.signing_key)


def test_tampered_receipts_are_refused(vault: Vault, shop: ApiMerchant) -> None:
    sub = subscribe(vault.runtime, shop, scope=SCOPE)
    token = fetch(vault, shop, sub.subject)
    keys = jwks(vault)
    header, body, signature = token.split(".")
    claims = payload(token)
    revoked = b64(json.dumps({**claims, "status": "revoked"}).encode())
    widened = b64(json.dumps({**claims, "purposes": [*claims["purposes"],
                                                     "partner_offers"]}).encode())
    log = claims["log"]
    other_leaf = {**log, "index": log["index"] - 1}
    bad_proof = {**log, "inclusion_proof": ["00" * 32, *log["inclusion_proof"][1:]]}
    forged_head = {**log, "tree_head": {**log["tree_head"], "tree_size": log["index"] + 2}}
    none_header = b64(json.dumps({"alg": "none", "typ": "consent-receipt+jwt"}).encode())
    id_token_header = b64(json.dumps({"alg": "Ed25519", "kid": keys["keys"][0]["kid"],
                                      "typ": "JWT"}).encode())
    cases = {
        "status flipped": f"{header}.{revoked}.{signature}",
        "purpose added": f"{header}.{widened}.{signature}",
        "signature cut": f"{header}.{body}.{signature[:-4]}",
        "alg none": f"{none_header}.{body}.",
        "typed as something else": f"{id_token_header}.{body}.{signature}",
        "two parts": f"{header}.{body}",
        "not base64": f"{header}.{body}!.{signature}",
        "another leaf claimed": _resigned(vault, token, log=other_leaf),
        "proof altered": _resigned(vault, token, log=bad_proof),
        "head altered": _resigned(vault, token, log=forged_head),
        "unknown schema": _resigned(vault, token, schema_version="v0"),
        "unknown status": _resigned(vault, token, status="paused"),
    }
    for name, forged in cases.items():
        with pytest.raises(SignatureVerificationError):
            verify_receipt(forged, keys)
            pytest.fail(name)
    stranger = KeyRing.generate().signing_key.public_jwk()
    for other_keys in ({"keys": [{**stranger, "kid": keys["keys"][0]["kid"]}]}, {"keys": []}):
        with pytest.raises(SignatureVerificationError):
            verify_receipt(token, other_keys)
    with pytest.raises(SignatureVerificationError, match="another subject"):
        verify_receipt(token, keys, subject="sub_someone_else")
    with pytest.raises(SignatureVerificationError, match=r"not 'https://elsewhere\.example'"):
        verify_receipt(token, keys, issuer="https://elsewhere.example")


def rotate_signing_key(keyring: KeyRing) -> str:
    """A new newest signing key; the older ones stay published, as the key ring keeps them."""
    key = SigningKey(f"sig-test-{len(keyring.signing_keys)}", Ed25519PrivateKey.generate(),
                     "2026-11-23T10:00:00+00:00")
    keyring.signing_keys.append(key)
    return key.kid


def test_a_receipt_stays_verifiable_as_the_log_grows_and_keys_rotate(
        vault: Vault, shop: ApiMerchant) -> None:
    rt = vault.runtime
    sub = subscribe(rt, shop)
    token = fetch(vault, shop, sub.subject)
    for _ in range(5):
        subscribe(rt, shop)
    kid = rotate_signing_key(rt.keyring)
    newer_token = fetch(vault, shop, subscribe(rt, shop).subject)
    newer = verify_receipt(newer_token, jwks(vault))
    old = verify_receipt(token, jwks(vault))
    assert json.loads(base64.urlsafe_b64decode(newer_token.split(".")[0] + "==="))["kid"] == kid
    assert newer.tree_head.kid == kid and old.tree_head.kid != kid
    assert newer.tree_head.tree_size > old.tree_head.tree_size


# -- through the SDK, against a live vault -------------------------------------------------


def test_the_sdk_fetches_and_verifies_receipts(live_vault: LiveVault) -> None:
    shop = register_shop(live_vault)
    ada = sdk_subscribe(live_vault, shop, "ada@example.org", scope=SCOPE)
    with client_for(live_vault, shop) as client:
        receipt = client.receipt(ada.subject)
        assert isinstance(receipt, Receipt)
        assert receipt.subject == ada.subject and receipt.active
        assert receipt.issuer == live_vault.base_url
        assert receipt.channels == ("email", "sms")
        with pytest.raises(NotFound):
            client.receipt("sub_nobody")
        with pytest.raises(AttributeError):
            receipt.status = "revoked"  # type: ignore[misc]
        assert "jws" not in repr(receipt) and ada.subject in repr(receipt)

        # A key the client has not seen yet: it reads the JWKS again, once.
        kid = rotate_signing_key(live_vault.runtime.keyring)
        sdk_revoke(live_vault, ada)
        revoked = client.receipt(ada.subject)
        assert not revoked.active and revoked.tree_head.kid == kid
        assert revoked.log_index > receipt.log_index

    async def fetch_async() -> Receipt:
        async with async_client_for(live_vault, shop) as client:
            return await client.receipt(ada.subject)

    again = asyncio.run(fetch_async())
    assert again.record_id == revoked.record_id and again.tree_head == revoked.tree_head
    assert again.receipt_id != revoked.receipt_id
