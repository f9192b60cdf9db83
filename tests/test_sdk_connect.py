"""The SDK's connect flow against a live vault: consent page over HTTP, then complete_connect.

The person is a cookie-keeping HTTP client that logs in and posts the consent
form with its CSRF token; the vault's redirect is captured, not followed, and
handed to ``complete_connect`` as a merchant's callback view would.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from oauth_helpers import LiveVault
from prefvault_sdk import ConnectDenied, ConnectError, Reason, StateMismatch, Subscription
from sdk_helpers import REDIRECT_URI, approve, client_for, deny, logged_in, register_shop

ASKED = ["openid", "contact:email:order_updates", "contact:sms:offers", "profile:email",
         "profile:name"]


def test_a_person_connects_through_the_consent_page_and_the_shop_may_then_ask(
        live_vault: LiveVault) -> None:
    shop = register_shop(live_vault)
    with logged_in(live_vault, "ada@example.org", {"name": "Ada"}) as person, \
            client_for(live_vault, shop) as vault:
        request = vault.connect_url(REDIRECT_URI, ASKED)
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        assert request.url.startswith(live_vault.base_url + "/oauth/authorize?")
        assert query["code_challenge_method"] == "S256"
        assert query["client_id"] == shop.client_id
        assert query["state"] == request.state and query["nonce"] == request.nonce
        assert query["scope"].split() == ASKED
        assert "code_verifier" not in request.url and request.code_verifier not in repr(request)

        location = approve(person, request.url, ["contact:email:order_updates",
                                                 "profile:email"])
        assert location.startswith(REDIRECT_URI + "?")
        subscription = vault.complete_connect(location, request.code_verifier, request.state,
                                              nonce=request.nonce)

        assert isinstance(subscription, Subscription)
        assert subscription.subject.startswith("sub_")
        assert set(subscription.scopes) == {"openid", "contact:email:order_updates",
                                            "profile:email"}
        assert subscription.shared_fields == ("email",)
        assert subscription.active and subscription.permissions is None
        tokens = subscription.tokens
        assert tokens is not None and tokens.id_token and tokens.refresh_token
        assert tokens.access_token not in repr(subscription) + repr(tokens)

        # What was ticked may be used, with the address the grant shares; the rest may not.
        decision = vault.may_contact(subscription.subject, "email", "order_updates")
        assert decision and decision.reach == "ada@example.org"
        assert "ada@example.org" not in repr(decision)
        refused = vault.may_contact(subscription.subject, "sms", "offers")
        assert not refused and refused.reason == Reason.NOT_GRANTED

        terms = vault.subscription(subscription.subject)
        assert [(p.channel, p.purpose, p.allowed) for p in terms.permissions or ()] == [
            ("email", "order_updates", True)]
        assert set(terms.scopes) == {"contact:email:order_updates", "profile:email"}

        # A code is single-use: the same callback again is refused, as a connect error.
        with pytest.raises(ConnectError) as replay:
            vault.complete_connect(location, request.code_verifier, request.state)
        assert replay.value.error == "invalid_grant" and replay.value.status == 400


def test_forged_denied_and_wrongly_verified_callbacks_are_typed_errors(
        live_vault: LiveVault) -> None:
    shop = register_shop(live_vault)
    with logged_in(live_vault, "grace@example.org") as person, \
            client_for(live_vault, shop) as vault:
        # The person says no: a ConnectDenied, after the state was checked.
        refused = vault.connect_url(REDIRECT_URI, "contact:email:offers")
        denial = deny(person, refused.url)
        with pytest.raises(StateMismatch):
            vault.complete_connect(denial, refused.code_verifier, "someone-elses-state")
        with pytest.raises(ConnectDenied) as denied:
            vault.complete_connect(denial, refused.code_verifier, refused.state)
        assert denied.value.error == "access_denied"

        # A callback whose state is not this session's is refused before the code is used...
        request = vault.connect_url(REDIRECT_URI, "contact:email:offers", state="my-state-1")
        assert request.state == "my-state-1"
        location = approve(person, request.url, ["contact:email:offers"])
        forged = location.replace("state=my-state-1", "state=my-state-2")
        with pytest.raises(StateMismatch):
            vault.complete_connect(forged, request.code_verifier, request.state)
        with pytest.raises(StateMismatch):
            vault.complete_connect(location, request.code_verifier, "my-state-2")

        # ...and a wrong PKCE verifier is refused by the vault, which burns the code.
        with pytest.raises(ConnectError) as wrong:
            vault.complete_connect(location, "x" * 64, request.state)
        assert wrong.value.error == "invalid_grant"

        # A bare code works too (the caller checked state), given the redirect URI.
        again = vault.connect_url(REDIRECT_URI, "contact:email:offers")
        code = parse_qs(urlsplit(approve(person, again.url, ["contact:email:offers"])).query)
        with pytest.raises(ValueError, match="redirect_uri"):
            vault.complete_connect(code["code"][0], again.code_verifier, again.state)
        subscription = vault.complete_connect(code["code"][0], again.code_verifier, again.state,
                                              REDIRECT_URI)
        assert subscription.scopes == ("contact:email:offers",)
        assert vault.may_contact(subscription.subject, "email", "offers").allowed
