"""The SDK when the network or the vault misbehaves: fail closed, retry what is safe.

Faults are injected by an httpx transport in front of the real server (it
answers 503 or 429, or fails as a network does, the first N times, then
passes requests through), or by pointing the client where nothing listens or
nothing answers. These tests are
about the client, not storage, so the live ones run on SQLite only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import prefvault_sdk
import pytest
from oauth_helpers import LiveVault, Person
from prefvault_sdk import (
    AuthenticationError,
    RateLimited,
    Reason,
    ServerError,
    VaultClient,
    VaultError,
)
from prefvault_sdk._retry import RetryPolicy, parse_retry_after
from sdk_helpers import (
    REDIRECT_URI,
    AsyncFlakyTransport,
    Fault,
    FlakyTransport,
    Outage,
    Seen,
    approve,
    async_client_for,
    client_for,
    closed_port_url,
    logged_in,
    register_shop,
    silent_server,
    subscribe,
)
from sqlalchemy import text

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _offline_client(base_url: str, **options: object) -> VaultClient:
    return VaultClient(base_url, client_id="m-shop", client_secret="not-a-real-secret",
                       **options)  # type: ignore[arg-type]


def test_an_unreachable_vault_means_no_contact() -> None:
    with _offline_client(closed_port_url(), max_retries=1) as vault:
        started = time.monotonic()
        decision = vault.may_contact("sub_ada", "email", "offers")
        assert not decision and decision.allowed is False
        assert decision.reason == Reason.VAULT_UNREACHABLE and decision.decision_id is None
        assert (decision.subject, decision.channel, decision.purpose) == ("sub_ada", "email",
                                                                         "offers")
        assert [(r.subject, r.allowed, r.reason) for r in vault.reachable(
            ["sub_a", "sub_b"], "email", "offers")] == [
            ("sub_a", False, "vault_unreachable"), ("sub_b", False, "vault_unreachable")]
        assert time.monotonic() - started < 3
        # Only questions fail closed: a report or a read cannot be answered with "no".
        with pytest.raises(prefvault_sdk.ConnectionError) as report:
            vault.report_contact("sub_ada", "email", "offers")
        assert report.value.status is None and isinstance(report.value.__cause__,
                                                          httpx.ConnectError)
        with pytest.raises(prefvault_sdk.ConnectionError):
            vault.subscription("sub_ada")
    with _offline_client(closed_port_url(), max_retries=0, fail_closed=False) as vault, \
            pytest.raises(prefvault_sdk.ConnectionError):
        vault.may_contact("sub_ada", "email", "offers")


def test_a_vault_that_never_answers_times_out_into_a_denial() -> None:
    with silent_server() as url:
        with _offline_client(url, timeout=0.2, max_retries=0) as vault:
            assert vault.may_contact("sub_ada", "sms", "service").reason == "vault_unreachable"
        with _offline_client(url, timeout=0.2, max_retries=0, fail_closed=False) as vault, \
                pytest.raises(prefvault_sdk.ConnectionError) as error:
            vault.may_contact("sub_ada", "sms", "service")
        assert isinstance(error.value.__cause__, httpx.TimeoutException)


@SQLITE_ONLY
def test_503s_are_retried_until_the_vault_answers_or_retries_run_out(
        live_vault: LiveVault) -> None:
    shop = register_shop(live_vault)
    ada = subscribe(live_vault, shop, "ada@example.org")
    flaky = FlakyTransport(Fault("/oauth/token", 503, times=1),
                           Fault("/api/v1/decisions", 503, times=2),
                           Fault("/api/v1/subscriptions", 502, times=1))
    with client_for(live_vault, shop, transport=flaky) as vault:
        assert vault.may_contact(ada.subject, "email", "offers").allowed
        assert flaky.count("/oauth/token") == 2 and flaky.count("/api/v1/decisions") == 3
        assert vault.subscription(ada.subject).subject == ada.subject
        assert flaky.count("/api/v1/subscriptions") == 2

    # Three 503s in a row are one more than two retries: the answer is a denial...
    flaky = FlakyTransport(Fault("/api/v1/decisions", 503, times=3))
    with client_for(live_vault, shop, transport=flaky) as vault:
        decision = vault.may_contact(ada.subject, "email", "offers")
        assert decision.reason == "vault_unreachable" and flaky.count("/api/v1/decisions") == 3
        results = list(vault.reachable([ada.subject], "email", "offers"))
        assert [r.reason for r in results] == ["allowed"]  # the faults are used up
    # ...or, when failing open is chosen, the ServerError itself.
    flaky = FlakyTransport(Fault("/api/v1/decisions", 503, times=1,
                                 headers={"X-Request-Id": "req-42"}))
    with client_for(live_vault, shop, transport=flaky, max_retries=0,
                    fail_closed=False) as vault, pytest.raises(ServerError) as error:
        vault.may_contact(ada.subject, "email", "offers")
    assert error.value.status == 503 and error.value.request_id == "req-42"


@SQLITE_ONLY
def test_429_waits_as_long_as_retry_after_says(live_vault: LiveVault) -> None:
    shop = register_shop(live_vault)
    ada = subscribe(live_vault, shop, "ada@example.org")
    flaky = FlakyTransport(Fault("/api/v1/decisions", 429, times=1,
                                 headers={"Retry-After": "1"}))
    with client_for(live_vault, shop, transport=flaky) as vault:
        vault.subscription(ada.subject)  # discovery and token out of the way
        started = time.monotonic()
        assert vault.may_contact(ada.subject, "email", "offers").allowed
        assert time.monotonic() - started >= 1.0
        assert flaky.count("/api/v1/decisions") == 2

    # A wait longer than the SDK will block for is the caller's decision: RateLimited.
    flaky = FlakyTransport(Fault("/api/v1/contacts", 429, times=1,
                                 headers={"Retry-After": "3600"}))
    with client_for(live_vault, shop, transport=flaky) as vault:
        started = time.monotonic()
        with pytest.raises(RateLimited) as limited:
            vault.report_contact(ada.subject, "email", "offers")
        assert limited.value.retry_after == 3600 and limited.value.status == 429
        assert time.monotonic() - started < 1 and flaky.count("/api/v1/contacts") == 1


@SQLITE_ONLY
def test_only_safe_posts_are_retried(live_vault: LiveVault) -> None:
    shop = register_shop(live_vault)
    ada = subscribe(live_vault, shop, "ada@example.org")
    flaky = FlakyTransport(Fault("/api/v1/contacts", 503, times=1))
    with client_for(live_vault, shop, transport=flaky) as vault:
        receipt = vault.report_contact(ada.subject, "email", "offers")
        vault.report_contact(ada.subject, "email", "offers", idempotency_key="order-1-mail")
    keys = [s.headers.get("idempotency-key") for s in flaky.seen
            if s.path == "/api/v1/contacts"]
    assert len(keys) == 3 and keys[0] == keys[1] and keys[2] == "order-1-mail"
    assert keys[0] and keys[0] != keys[2]
    assert receipt.allowed
    with live_vault.runtime.database.read() as session:
        contacts = session.connection().execute(text("SELECT count(*) FROM contact_event"))
        assert contacts.scalar_one() == 2

    # The code exchange is never retried: a code is single-use, a replay revokes.
    with logged_in(live_vault, "grace@example.org") as person:
        flaky = FlakyTransport(Fault("/oauth/token", 503, times=1))
        with client_for(live_vault, shop, transport=flaky) as vault:
            request = vault.connect_url(REDIRECT_URI, "contact:email:offers")
            location = approve(person, request.url, ["contact:email:offers"])
            with pytest.raises(ServerError):
                vault.complete_connect(location, request.code_verifier, request.state)
            assert flaky.count("/oauth/token") == 1
            # That 503 never reached the vault, so the code is still good.
            subscription = vault.complete_connect(location, request.code_verifier,
                                                  request.state)
            assert subscription.scopes == ("contact:email:offers",)


@SQLITE_ONLY
def test_the_token_is_cached_renewed_early_and_never_shown(
        live_vault: LiveVault, caplog: pytest.LogCaptureFixture) -> None:
    shop = register_shop(live_vault)
    ada = subscribe(live_vault, shop, "ada@example.org")
    issued: list[str] = []

    def short_lived(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path != "/oauth/token" or response.status_code != 200:
            return response
        doc = json.loads(response.content)
        issued.append(doc["access_token"])
        doc["expires_in"] = lifetime
        return httpx.Response(200, json=doc, request=request)

    caplog.set_level(logging.DEBUG)
    lifetime = 3600
    flaky = FlakyTransport(rewrite=short_lived)
    with client_for(live_vault, shop, transport=flaky) as vault:
        for _ in range(3):
            assert vault.may_contact(ada.subject, "email", "offers").allowed
        vault.subscription(ada.subject)
        assert flaky.count("/oauth/token") == 1 and flaky.count("/.well-known/") == 1

        # The vault's clock moves past the token's life: the 401 is met with a new token.
        live_vault.clock.advance(timedelta(hours=2))
        assert vault.may_contact(ada.subject, "email", "offers").allowed
        assert flaky.count("/oauth/token") == 2 and flaky.count("/api/v1/decisions") == 5

        shown = repr(vault)

    # A token is replaced 30 s before it expires: one that lives 30 s is never reused.
    lifetime = 30
    with client_for(live_vault, shop, transport=flaky) as vault:
        vault.may_contact(ada.subject, "email", "offers")
        vault.may_contact(ada.subject, "email", "offers")
        assert flaky.count("/oauth/token") == 4
    shown += caplog.text

    assert shop.client_secret not in shown and all(token not in shown for token in issued)
    assert repr(vault) == f"VaultClient(base_url={live_vault.base_url!r}, " \
                          f"client_id={shop.client_id!r})"

    # One client shared by threads discovers once and fetches one token.
    lifetime = 3600
    flaky = FlakyTransport(rewrite=short_lived)
    with client_for(live_vault, shop, transport=flaky) as shared, \
            ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: shared.may_contact(ada.subject, "email", "offers"),
                                range(16)))
    assert all(answers) and len({a.decision_id for a in answers}) == 16
    assert flaky.count("/.well-known/") == 1 and flaky.count("/oauth/token") == 1

    # Wrong credentials are a configuration error: loud, even when failing closed.
    with VaultClient(live_vault.base_url, client_id=shop.client_id,
                     client_secret="wrong") as wrong, pytest.raises(AuthenticationError) as bad:
        wrong.may_contact(ada.subject, "email", "offers")
    assert bad.value.status == 401
    # A base URL with no vault behind it is a configuration error, not a NotFound...
    with VaultClient(live_vault.base_url + "/nope", client_id=shop.client_id,
                     client_secret=shop.client_secret) as lost, \
            pytest.raises(VaultError, match="check base_url") as nowhere:
        lost.may_contact(ada.subject, "email", "offers")
    assert type(nowhere.value) is VaultError and nowhere.value.status == 404
    # ...and one that is not the vault's issuer is refused (RFC 8414 mix-up defence).
    other_name = live_vault.base_url.replace("127.0.0.1", "localhost")
    with VaultClient(other_name, client_id=shop.client_id,
                     client_secret=shop.client_secret) as confused, \
            pytest.raises(VaultError, match="issuer"):
        confused.connect_url(REDIRECT_URI, "contact:email:offers")


#: What either client logs through ``_every_way_a_call_fails``, jittered waits shown as "…"
#: (a ``Retry-After: 0`` is waited as given, 0.00s).
TRANSCRIPT = [
    # A token refused twice is renewed once, then AuthenticationError, failing closed or not.
    "prefvault: GET /.well-known/oauth-authorization-server -> 200",
    "prefvault: POST /oauth/token -> 503",
    "prefvault: POST /oauth/token -> 503; retry 1 in …s",
    "prefvault: POST /oauth/token -> 200",
    "prefvault: new client-credentials token, valid 3600s",
    "prefvault: POST /api/v1/decisions -> 401",
    "prefvault: POST /oauth/token -> 200",
    "prefvault: new client-credentials token, valid 3600s",
    "prefvault: POST /api/v1/decisions -> 401",
    # A renewal is not one of the retries: one retry and one renewal in one call.
    "prefvault: POST /api/v1/decisions -> 503",
    "prefvault: POST /api/v1/decisions -> 503; retry 1 in 0.00s",
    "prefvault: POST /api/v1/decisions -> 401",
    "prefvault: POST /oauth/token -> 200",
    "prefvault: new client-credentials token, valid 3600s",
    "prefvault: POST /api/v1/decisions -> 200",
    # Retries run out: a denial.
    "prefvault: POST /api/v1/decisions -> 503",
    "prefvault: POST /api/v1/decisions -> 503; retry 1 in 0.00s",
    "prefvault: POST /api/v1/decisions -> 503",
    "prefvault: vault unreachable (injected (HTTP 503)); denying email/offers (fail closed)",
    # Paging, with a retried page.
    "prefvault: GET /api/v1/subscriptions -> 502",
    "prefvault: GET /api/v1/subscriptions -> 502; retry 1 in …s",
    "prefvault: GET /api/v1/subscriptions -> 200",
    # A wait longer than the SDK blocks for: no retry.
    "prefvault: POST /api/v1/contacts -> 429",
    # The code exchange: a timeout is not retried, a connection never opened is.
    "prefvault: POST /oauth/token failed (ConnectError); retry 1 in …s",
    "prefvault: POST /oauth/token -> 200",
]


def _logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The SDK's log lines so far (jittered waits masked), cleared for the next run."""
    lines = [re.sub(r"in (?!0\.00s)\d+\.\d\ds$", "in …s", record.getMessage())
             for record in caplog.records if record.name == "prefvault_sdk"]
    caplog.clear()
    return lines


def _every_way_a_call_fails(live_vault: LiveVault, person: Person) -> list[Seen]:
    shop = register_shop(live_vault, "Sync Shop")
    ada = subscribe(live_vault, shop, "ada.sync@example.org")
    flaky = FlakyTransport(Fault("/oauth/token", 503, times=1),
                           Fault("/api/v1/decisions", 401, times=2))
    with client_for(live_vault, shop, transport=flaky, max_retries=1) as vault:
        with pytest.raises(AuthenticationError):
            vault.may_contact(ada.subject, "email", "offers")
        flaky.faults += [Fault("/api/v1/decisions", 503, times=1, headers={"Retry-After": "0"}),
                         Fault("/api/v1/decisions", 401, times=1)]
        assert vault.may_contact(ada.subject, "email", "offers").allowed
        flaky.faults.append(Fault("/api/v1/decisions", 503, times=2,
                                  headers={"Retry-After": "0"}))
        assert vault.may_contact(ada.subject, "email", "offers").reason == "vault_unreachable"
        flaky.faults.append(Fault("/api/v1/subscriptions", 502, times=1))
        assert [s.subject for s in vault.subscriptions()] == [ada.subject]
        flaky.faults.append(Fault("/api/v1/contacts", 429, times=1,
                                  headers={"Retry-After": "3600"}))
        with pytest.raises(RateLimited):
            vault.report_contact(ada.subject, "email", "offers")
        request = vault.connect_url(REDIRECT_URI, "contact:email:offers")
        location = approve(person, request.url, ["contact:email:offers"])
        flaky.faults += [Outage("/oauth/token", httpx.ReadTimeout, times=1),
                         Outage("/oauth/token", httpx.ConnectError, times=1)]
        with pytest.raises(prefvault_sdk.ConnectionError) as lost:
            vault.complete_connect(location, request.code_verifier, request.state)
        assert isinstance(lost.value.__cause__, httpx.ReadTimeout)
        vault.complete_connect(location, request.code_verifier, request.state)
    return flaky.seen


async def _every_way_an_async_call_fails(live_vault: LiveVault, person: Person) -> list[Seen]:
    shop = register_shop(live_vault, "Async Shop")
    ada = subscribe(live_vault, shop, "ada.async@example.org")
    flaky = AsyncFlakyTransport(Fault("/oauth/token", 503, times=1),
                                Fault("/api/v1/decisions", 401, times=2))
    async with async_client_for(live_vault, shop, transport=flaky, max_retries=1) as vault:
        with pytest.raises(AuthenticationError):
            await vault.may_contact(ada.subject, "email", "offers")
        flaky.faults += [Fault("/api/v1/decisions", 503, times=1, headers={"Retry-After": "0"}),
                         Fault("/api/v1/decisions", 401, times=1)]
        assert (await vault.may_contact(ada.subject, "email", "offers")).allowed
        flaky.faults.append(Fault("/api/v1/decisions", 503, times=2,
                                  headers={"Retry-After": "0"}))
        assert (await vault.may_contact(ada.subject, "email", "offers")).reason == \
            "vault_unreachable"
        flaky.faults.append(Fault("/api/v1/subscriptions", 502, times=1))
        assert [s.subject async for s in vault.subscriptions()] == [ada.subject]
        flaky.faults.append(Fault("/api/v1/contacts", 429, times=1,
                                  headers={"Retry-After": "3600"}))
        with pytest.raises(RateLimited):
            await vault.report_contact(ada.subject, "email", "offers")
        request = await vault.connect_url(REDIRECT_URI, "contact:email:offers")
        location = approve(person, request.url, ["contact:email:offers"])
        flaky.faults += [Outage("/oauth/token", httpx.ReadTimeout, times=1),
                         Outage("/oauth/token", httpx.ConnectError, times=1)]
        with pytest.raises(prefvault_sdk.ConnectionError) as lost:
            await vault.complete_connect(location, request.code_verifier, request.state)
        assert isinstance(lost.value.__cause__, httpx.ReadTimeout)
        await vault.complete_connect(location, request.code_verifier, request.state)
    return flaky.seen


@SQLITE_ONLY
def test_both_clients_retry_renew_and_log_alike(live_vault: LiveVault,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="prefvault_sdk")
    with logged_in(live_vault, "grace@example.org") as person:
        sent = _every_way_a_call_fails(live_vault, person)
        logged = _logged(caplog)
        sent_async = asyncio.run(_every_way_an_async_call_fails(live_vault, person))
        logged_async = _logged(caplog)
    assert logged == TRANSCRIPT
    assert logged_async == logged
    requests = [(s.method, s.path) for s in sent]
    assert requests == [(s.method, s.path) for s in sent_async]
    assert requests.count(("POST", "/api/v1/decisions")) == 7
    assert requests.count(("POST", "/oauth/token")) == 7
    # Each renewal carries the new token, each retry the same headers as the try before.
    bearers = [s.headers["authorization"] for s in sent if s.path == "/api/v1/decisions"]
    assert len(set(bearers[:2])) == 2 and len(set(bearers[2:5])) == 2
    assert bearers[2] == bearers[3] != bearers[4]


def test_backoff_grows_is_capped_jittered_and_retry_after_is_read() -> None:
    policy = RetryPolicy(max_retries=10, backoff_base=0.25, backoff_cap=2.0)
    for retry, ceiling in [(0, 0.25), (1, 0.5), (2, 1.0), (3, 2.0), (8, 2.0)]:
        delays = {policy.backoff(retry) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    moment = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert parse_retry_after("Mon, 23 Nov 2026 10:00:30 GMT", now=moment) == 30.0
    assert parse_retry_after("Mon, 23 Nov 2026 09:00:00 GMT", now=moment) == 0.0
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)
