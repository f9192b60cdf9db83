"""``may_contact``, ``report_contact`` and subscriptions through the SDK, against a live vault.

Each change a person makes goes through the vault's services (as the
person's own pages would) and the SDK's next answer must follow it; the
decision cache must follow it too once the webhook about it arrives.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from oauth_helpers import LiveVault
from prefvault_sdk import (
    Channel,
    Decision,
    InvalidRequest,
    NotFound,
    Purpose,
    Reason,
    webhooks,
)
from sdk_helpers import (
    FlakyTransport,
    client_for,
    register_shop,
    revoke,
    set_permission,
    set_rules,
    subscribe,
    vault_clock_cache,
)

from vault.services.webhooks import deliver_due


def test_may_contact_follows_each_change_the_person_makes(live_vault: LiveVault) -> None:
    shop = register_shop(live_vault)
    ada = subscribe(live_vault, shop, "ada@example.org")
    now = live_vault.clock.now()  # 10:00 UTC, 11:00 in Amsterdam
    with client_for(live_vault, shop) as vault:
        first = vault.may_contact(ada.subject, Channel.EMAIL, Purpose.OFFERS)
        assert isinstance(first, Decision) and first and first.reason == Reason.ALLOWED
        assert first.decision_id and first.reach == "ada@example.org"
        assert first.alternatives == () and first.next_allowed_at is None
        assert first.valid_until.tzinfo is not None and first.valid_until > now
        assert (first.subject, first.channel, first.purpose) == (ada.subject, "email", "offers")

        set_permission(live_vault, ada, "sms", "offers")
        assert vault.may_contact(ada.subject, "email", "offers").alternatives == ("sms",)

        set_permission(live_vault, ada, "email", "offers", allowed=False)
        withdrawn = vault.may_contact(ada.subject, "email", "offers")
        assert not withdrawn and withdrawn.reason == "not_granted" and withdrawn.reach is None
        assert withdrawn.alternatives == ("sms",)

        set_permission(live_vault, ada, "email", "offers", quiet_hours=("10:30", "12:00"))
        quiet = vault.may_contact(ada.subject, "email", "offers")
        assert quiet.reason == "quiet_hours"
        assert quiet.next_allowed_at == datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
        assert vault.may_contact(ada.subject, "email", "offers",
                                 at=now + timedelta(hours=2)).allowed

        set_permission(live_vault, ada, "email", "offers", max_per_week=1)
        set_rules(live_vault, ada, {"channels_off": ["email"]})
        assert vault.may_contact(ada.subject, "email", "offers").reason == "blocked_by_person"
        set_rules(live_vault, ada, {})

        decision = vault.may_contact(ada.subject, "email", "offers")
        assert decision.allowed
        receipt = vault.report_contact(ada.subject, "email", "offers",
                                       decision_id=decision.decision_id)
        assert receipt.allowed and not receipt.violation and receipt.occurred_at == now
        capped = vault.may_contact(ada.subject, "email", "offers")
        assert capped.reason == "frequency_cap" and capped.next_allowed_at == now + timedelta(
            days=7)
        assert vault.report_contact(ada.subject, "email", "offers").violation

        revoke(live_vault, ada)
        assert vault.may_contact(ada.subject, "email", "offers").reason == "revoked"
        unknown = vault.may_contact("sub_nobody", "email", "offers")
        assert not unknown and unknown.reason == "unknown_subject"

        with pytest.raises(ValueError, match="aware"):
            vault.may_contact(ada.subject, "email", "offers", at=datetime(2026, 11, 23, 10))
        with pytest.raises(InvalidRequest) as invalid:
            vault.may_contact(ada.subject, "fax", "offers")
        assert invalid.value.status == 422 and invalid.value.field == "channel"
        assert invalid.value.problem["type"].endswith("/invalid-request")


def test_cached_answers_stand_until_valid_until_or_a_webhook_about_the_subject(
        live_vault: LiveVault) -> None:
    shop = register_shop(live_vault)
    assert shop.webhook_secret is not None and shop.webhook_secret.startswith("whsec_")
    ada = subscribe(live_vault, shop, "ada@example.org")
    bob = subscribe(live_vault, shop, "bob@example.org")
    transport = FlakyTransport()
    with client_for(live_vault, shop, cache=vault_clock_cache(live_vault),
                    transport=transport) as vault:
        first = vault.may_contact(ada.subject, "email", "offers")
        assert vault.may_contact(ada.subject, "email", "offers") is first
        assert vault.may_contact(bob.subject, "email", "offers").allowed
        assert transport.count("/api/v1/decisions") == 2
        # Questions about another moment are always asked.
        vault.may_contact(ada.subject, "email", "offers", at=live_vault.clock.now())
        assert transport.count("/api/v1/decisions") == 3

        # Ada withdraws: the cached answer still stands until the vault's webhook arrives.
        set_permission(live_vault, ada, "email", "offers", allowed=False)
        assert vault.may_contact(ada.subject, "email", "offers") is first
        deliveries: list[tuple[bytes, dict[str, str]]] = []

        def receive(url: str, body: bytes, headers: dict[str, str]) -> int:
            deliveries.append((body, headers))
            return 200

        rt = live_vault.runtime
        report = deliver_due(rt.database, webhook_key=rt.keyring.webhook_key, clock=rt.clock,
                             post=receive)
        assert report.delivered == len(deliveries) == 3  # two grants, one change
        events = [webhooks.verify(body, headers["Vault-Signature"], shop.webhook_secret,
                                  now=live_vault.clock.now()) for body, headers in deliveries]
        for event in events:
            vault.handle_event(event)
        assert events[-1].type == "subscription.updated" and events[-1].subject == ada.subject

        assert vault.may_contact(ada.subject, "email", "offers").reason == "not_granted"
        assert transport.count("/api/v1/decisions") == 4

        # valid_until is honoured (by the cache's clock, here the vault's)...
        vault.may_contact(bob.subject, "email", "offers")
        calls = transport.count("/api/v1/decisions")
        vault.may_contact(bob.subject, "email", "offers")
        assert transport.count("/api/v1/decisions") == calls
        live_vault.clock.advance(timedelta(minutes=6))
        vault.may_contact(bob.subject, "email", "offers")
        assert transport.count("/api/v1/decisions") == calls + 1
        # ...and clear_cache() forgets everything.
        assert vault.cache is not None and len(vault.cache) == 2
        vault.clear_cache()
        assert len(vault.cache) == 0
        vault.may_contact(bob.subject, "email", "offers")
        assert transport.count("/api/v1/decisions") == calls + 2


def test_reports_and_subscriptions_page_through_everything(live_vault: LiveVault) -> None:
    shop = register_shop(live_vault)
    other = register_shop(live_vault, "Other Shop")
    customers = [subscribe(live_vault, shop, f"p{i}@example.org",
                           scope="contact:email:order_updates contact:post:offers profile:name")
                 for i in range(5)]
    subscribe(live_vault, other, "elsewhere@example.org")
    set_permission(live_vault, customers[0], "email", "order_updates", max_per_week=3,
                   quiet_hours=("22:00", "07:00"))
    revoke(live_vault, customers[4])
    with client_for(live_vault, shop) as vault:
        listed = list(vault.subscriptions(page_size=2))
        assert sorted(s.subject for s in listed) == sorted(c.subject for c in customers)
        by_subject = {s.subject: s for s in listed}
        assert by_subject[customers[4].subject].status == "revoked"
        assert by_subject[customers[4].subject].scopes == ()

        one = vault.subscription(customers[0].subject)
        assert one == by_subject[customers[0].subject]
        assert one.active and one.shared_fields == ("name",)
        assert set(one.scopes) == {"contact:email:order_updates", "contact:post:offers",
                                   "profile:name"}
        email = next(p for p in one.permissions or () if p.channel == "email")
        assert email.max_per_week == 3 and email.quiet_hours is not None
        assert (email.quiet_hours.start.hour, email.quiet_hours.end.hour) == (22, 7)
        assert one.created_at is not None and one.created_at.tzinfo is not None

        with pytest.raises(NotFound) as missing:
            vault.subscription("sub_not_ours")
        assert missing.value.status == 404
        with pytest.raises(NotFound):
            vault.report_contact("sub_not_ours", "email", "order_updates")
        with pytest.raises(InvalidRequest) as early:
            vault.report_contact(customers[1].subject, "email", "order_updates",
                                 at=live_vault.clock.now() + timedelta(hours=1))
        assert early.value.field == "at"
        receipt = vault.report_contact(customers[1].subject, "post", "offers",
                                       at=live_vault.clock.now() - timedelta(hours=1))
        assert receipt.allowed and receipt.contact_id
        assert receipt.occurred_at == live_vault.clock.now() - timedelta(hours=1)
        with pytest.raises(ValueError, match="page_size"):
            vault.subscriptions(page_size=501)
