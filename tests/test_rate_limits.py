"""Rate limits: token endpoint and merchant API (problem+json), sign-up and password pages.

Each test builds its own app with a tiny limit, so the counters start at zero
and other tests are never throttled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from api_helpers import (
    API,
    PASSWORD,
    PROBLEMS,
    Vault,
    register_merchant,
    request_token,
    row_counts,
    subscribe,
    token_header,
    unique_email,
)
from flask import Flask
from ui_helpers import csrf_token, log_in, logged_in

from vault.app import create_app
from vault.clock import FixedClock
from vault.config import Settings
from vault.crypto.keyring import KeyRing
from vault.models import Person


@contextmanager
def _vault_with(settings: Settings, keyring: KeyRing, clock: FixedClock,
                **limits: str) -> Iterator[Vault]:
    """A vault of its own with the given rate limits, so its counters start at zero."""
    app: Flask = create_app(settings.replace(**limits), keyring=keyring, clock=clock)
    try:
        yield Vault(app, app.test_client(), app.extensions["prefvault"], clock)
    finally:
        app.extensions["prefvault"].database.dispose()


@pytest.fixture
def limited(settings: Settings, keyring: KeyRing, clock: FixedClock) -> Iterator[Vault]:
    with _vault_with(settings, keyring, clock, rate_limit_token="3 per minute",
                     rate_limit_api="4 per minute") as vault:
        yield vault


def _assert_429(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == PROBLEMS + "too-many-requests"
    assert int(response.headers["Retry-After"]) > 0


def test_the_token_endpoint_answers_429_after_its_limit(limited: Vault) -> None:
    merchant = register_merchant(limited.runtime)
    for _ in range(3):
        assert request_token(limited.client, merchant.client_id,
                             merchant.client_secret).status_code == 200
    _assert_429(request_token(limited.client, merchant.client_id, merchant.client_secret))
    other = register_merchant(limited.runtime, "Other Shop")
    assert request_token(limited.client, other.client_id, other.client_secret).status_code == 200


def test_decisions_answer_429_per_token_and_write_no_evidence(limited: Vault) -> None:
    merchant = register_merchant(limited.runtime)
    headers = token_header(limited.client, merchant)
    sub = subscribe(limited.runtime, merchant)
    ask = {"subject": sub.subject, "channel": "email", "purpose": "offers"}
    for _ in range(4):
        assert limited.client.post(f"{API}/decisions", json=ask,
                                   headers=headers).status_code == 200
    stored = row_counts(limited.runtime, ["decision"])
    _assert_429(limited.client.post(f"{API}/decisions", json=ask, headers=headers))
    assert row_counts(limited.runtime, ["decision"]) == stored


def test_the_api_limit_counts_every_route_of_one_token_together(limited: Vault) -> None:
    merchant = register_merchant(limited.runtime)
    headers = token_header(limited.client, merchant)
    sub = subscribe(limited.runtime, merchant)
    ask = {"subject": sub.subject, "channel": "email", "purpose": "offers"}
    assert limited.client.post(f"{API}/decisions", json=ask, headers=headers).status_code == 200
    assert limited.client.get(f"{API}/subscriptions", headers=headers).status_code == 200
    assert limited.client.get(f"{API}/subscriptions/{sub.subject}",
                              headers=headers).status_code == 200
    assert limited.client.post(f"{API}/contacts", json=ask, headers=headers).status_code == 201
    stored = row_counts(limited.runtime, ["contact_event", "decision"])
    _assert_429(limited.client.post(f"{API}/contacts", json=ask, headers=headers))
    _assert_429(limited.client.get(f"{API}/subscriptions", headers=headers))
    assert row_counts(limited.runtime, ["contact_event", "decision"]) == stored
    other = register_merchant(limited.runtime, "Other Shop")
    assert limited.client.get(f"{API}/subscriptions",
                              headers=token_header(limited.client, other)).status_code == 200


def test_the_api_limit_keeps_a_constant_count_per_token_whatever_the_traffic(
        settings: Settings, keyring: KeyRing, clock: FixedClock) -> None:
    with _vault_with(settings, keyring, clock, rate_limit_api="100000 per minute") as vault:
        merchant = register_merchant(vault.runtime)
        headers = token_header(vault.client, merchant)
        for _ in range(300):
            assert vault.client.get(f"{API}/subscriptions", headers=headers).status_code == 200
        storage = next(iter(vault.app.extensions["limiter"])).limiter.storage
        api_keys = [key for key in storage.storage if "prefvault-api" in key]
        assert 1 <= len(api_keys) <= 2  # this window's counter and, at most, the last one's
        assert sum(storage.storage[key] for key in api_keys) == 300
        assert not [key for key in storage.events if "prefvault-api" in key]


def _redis_reachable(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.mark.skipif(not _redis_reachable(REDIS_URL), reason="no Redis at 127.0.0.1:6379")
def test_with_redis_every_worker_counts_one_token_together(
        settings: Settings, keyring: KeyRing, clock: FixedClock) -> None:
    with _vault_with(settings, keyring, clock, redis_url=REDIS_URL,
                     rate_limit_api="4 per minute") as first, \
            _vault_with(settings, keyring, clock, redis_url=REDIS_URL,
                        rate_limit_api="4 per minute") as second:
        merchant = register_merchant(first.runtime)
        headers = token_header(first.client, merchant)
        for worker in (first, second, first, second):
            assert worker.client.get(f"{API}/subscriptions",
                                     headers=headers).status_code == 200
        _assert_429(second.client.get(f"{API}/subscriptions", headers=headers))
        _assert_429(first.client.get(f"{API}/subscriptions", headers=headers))


def test_a_normal_vault_does_not_throttle_ordinary_traffic(vault_app: Vault) -> None:
    merchant = register_merchant(vault_app.runtime)
    headers = token_header(vault_app.client, merchant)
    sub = subscribe(vault_app.runtime, merchant)
    ask = {"subject": sub.subject, "channel": "email", "purpose": "offers"}
    for _ in range(30):
        assert vault_app.client.post(f"{API}/decisions", json=ask,
                                     headers=headers).status_code == 200


@pytest.fixture
def vault_app(app, client, runtime, clock) -> Vault:  # type: ignore[no-untyped-def]
    return Vault(app, client, runtime, clock)


@pytest.fixture
def limited_pages(settings: Settings, keyring: KeyRing, clock: FixedClock) -> Iterator[Vault]:
    with _vault_with(settings, keyring, clock, rate_limit_signup="2 per minute",
                     rate_limit_login_account="2 per minute") as vault:
        yield vault


def test_sign_ups_are_limited_per_address(limited_pages: Vault) -> None:
    def sign_up_once(email: str):  # type: ignore[no-untyped-def]
        client = limited_pages.app.test_client()
        page = client.get("/signup")
        return client.post("/signup", data={
            "csrf_token": csrf_token(page.text), "email": email, "password": PASSWORD,
            "password_confirm": PASSWORD, "language": "en", "time_zone": "Europe/Amsterdam"})

    assert sign_up_once(unique_email()).status_code == 302
    assert sign_up_once(unique_email()).status_code == 302
    before = row_counts(limited_pages.runtime, ["person"])
    refused = sign_up_once(unique_email())
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.mimetype == "text/html"
    assert row_counts(limited_pages.runtime, ["person"]) == before


def test_wrong_passwords_when_deleting_the_account_are_limited(limited_pages: Vault) -> None:
    browser = logged_in(limited_pages)
    for _ in range(2):
        wrong = browser.post_form("/my-data/delete", data={"password": "not the password"})
        assert wrong.status_code == 400
    blocked = browser.post_form("/my-data/delete", data={"password": PASSWORD})
    assert blocked.status_code == 429
    with limited_pages.runtime.database.read() as session:
        person = session.get(Person, browser.person_id)
        assert person is not None and person.erased_at is None


def test_wrong_current_passwords_when_changing_it_are_limited(limited_pages: Vault) -> None:
    browser = logged_in(limited_pages)
    new = "an entirely new passphrase"
    for _ in range(2):
        wrong = browser.post_form("/profile", "/profile/password", {
            "current_password": "not it", "new_password": new, "new_password_confirm": new})
        assert wrong.status_code == 400
    blocked = browser.post_form("/profile", "/profile/password", {
        "current_password": PASSWORD, "new_password": new, "new_password_confirm": new})
    assert blocked.status_code == 429
    assert log_in(limited_pages.app.test_client(), browser.email).status_code == 302
