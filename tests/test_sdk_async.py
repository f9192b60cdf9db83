"""``AsyncVaultClient`` does what ``VaultClient`` does, awaited, against the same live vault.

pytest-asyncio is not part of the test stack: each test drives its coroutine
with ``asyncio.run`` from a plain test function. The consent page is still
answered by the (synchronous) browser helper, between awaits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import prefvault_sdk
import pytest
from oauth_helpers import LiveVault
from prefvault_sdk import (
    AsyncVaultClient,
    ConnectDenied,
    NotFound,
    ServerError,
    StateMismatch,
    webhooks,
)
from sdk_helpers import (
    REDIRECT_URI,
    AsyncFlakyTransport,
    Fault,
    approve,
    async_client_for,
    closed_port_url,
    deny,
    logged_in,
    register_shop,
    set_permission,
    subscribe,
    vault_clock_cache,
)

from vault.services.webhooks import deliver_due

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_the_async_client_connects_asks_streams_reports_and_lists(
        live_vault: LiveVault) -> None:
    shop = register_shop(live_vault)
    known = subscribe(live_vault, shop, "bob@example.org", scope="contact:sms:order_updates")

    async def subjects(connected: str) -> AsyncIterator[str]:
        for i in range(12_000):
            yield connected if i % 1000 == 0 else known.subject if i % 1000 == 1 \
                else f"sub_unknown_{i}"
            if i % 4000 == 0:
                await asyncio.sleep(0)

    with logged_in(live_vault, "ada@example.org") as person:
        async def scenario() -> None:
            async with async_client_for(live_vault, shop) as vault:
                assert isinstance(vault, AsyncVaultClient)
                request = await vault.connect_url(REDIRECT_URI, ["openid",
                                                                 "contact:email:offers"])
                refusal = await vault.connect_url(REDIRECT_URI, "contact:sms:offers")
                location = approve(person, request.url, ["contact:email:offers"])
                with pytest.raises(StateMismatch):
                    await vault.complete_connect(location, request.code_verifier, refusal.state)
                subscription = await vault.complete_connect(
                    location, request.code_verifier, request.state, nonce=request.nonce)
                assert set(subscription.scopes) == {"openid", "contact:email:offers"}

                with pytest.raises(ConnectDenied):
                    await vault.complete_connect(deny(person, refusal.url),
                                                 refusal.code_verifier, refusal.state)

                decision = await vault.may_contact(subscription.subject, "email", "offers")
                assert decision and decision.decision_id
                assert not await vault.may_contact(known.subject, "email", "offers")

                progress: list[int] = []
                results = [r async for r in vault.reachable(
                    subjects(subscription.subject), "email", "offers",
                    on_progress=progress.append)]
                assert progress == [10_000, 12_000] and len(results) == 12_000
                for i, result in enumerate(results):
                    expected = (subscription.subject if i % 1000 == 0 else known.subject
                                if i % 1000 == 1 else f"sub_unknown_{i}")
                    assert result.subject == expected
                    assert bool(result) is (i % 1000 == 0)
                assert results[1].reason == "not_granted"
                # A plain iterable works as well.
                plain = [r async for r in vault.reachable([known.subject], "sms",
                                                          "order_updates")]
                assert [r.allowed for r in plain] == [True]

                receipt = await vault.report_contact(subscription.subject, "email", "offers",
                                                     decision_id=decision.decision_id)
                assert receipt.allowed and not receipt.violation
                listed = [s.subject async for s in vault.subscriptions(page_size=1)]
                assert sorted(listed) == sorted([known.subject, subscription.subject])
                assert (await vault.subscription(known.subject)).scopes == (
                    "contact:sms:order_updates",)
                with pytest.raises(NotFound):
                    await vault.subscription("sub_not_ours")

        asyncio.run(scenario())


@SQLITE_ONLY
def test_the_async_client_retries_fails_closed_and_follows_webhooks(
        live_vault: LiveVault) -> None:
    shop = register_shop(live_vault)
    assert shop.webhook_secret is not None
    ada = subscribe(live_vault, shop, "ada@example.org")

    async def scenario() -> None:
        flaky = AsyncFlakyTransport(Fault("/api/v1/decisions", 503, times=2),
                                    Fault("/api/v1/contacts", 429, times=1,
                                          headers={"Retry-After": "0"}))
        async with async_client_for(live_vault, shop, transport=flaky,
                                    cache=vault_clock_cache(live_vault)) as vault:
            first = await vault.may_contact(ada.subject, "email", "offers")
            assert first.allowed and flaky.count("/api/v1/decisions") == 3
            assert await vault.may_contact(ada.subject, "email", "offers") is first
            await vault.report_contact(ada.subject, "email", "offers")
            keys = {s.headers["idempotency-key"] for s in flaky.seen
                    if s.path == "/api/v1/contacts"}
            assert flaky.count("/api/v1/contacts") == 2 and len(keys) == 1

            set_permission(live_vault, ada, "email", "offers", allowed=False)
            bodies: list[tuple[bytes, str]] = []
            rt = live_vault.runtime
            deliver_due(rt.database, webhook_key=rt.keyring.webhook_key, clock=rt.clock,
                        post=lambda url, body, headers: bodies.append(
                            (body, headers["Vault-Signature"])) or 204)
            for body, header in bodies:
                vault.handle_event(webhooks.verify(body, header, shop.webhook_secret,
                                                   now=rt.clock.now()))
            assert (await vault.may_contact(ada.subject, "email", "offers")).reason == \
                "not_granted"

        flaky = AsyncFlakyTransport(Fault("/api/v1/decisions", 503, times=5))
        async with async_client_for(live_vault, shop, transport=flaky, max_retries=1,
                                    fail_closed=False) as vault:
            with pytest.raises(ServerError):
                await vault.may_contact(ada.subject, "email", "offers")
            with pytest.raises(ServerError):
                async for _ in vault.reachable([ada.subject], "email", "offers"):
                    pass

        async with AsyncVaultClient(closed_port_url(), client_id="m-shop",
                                    client_secret="secret", max_retries=0) as offline:
            decision = await offline.may_contact(ada.subject, "email", "offers")
            assert decision.reason == "vault_unreachable" and decision.decision_id is None
            answers = [r.reason async for r in offline.reachable(["a", "b"], "email",
                                                                 "offers")]
            assert answers == ["vault_unreachable"] * 2
            with pytest.raises(prefvault_sdk.ConnectionError):
                await offline.report_contact(ada.subject, "email", "offers")

    asyncio.run(scenario())
