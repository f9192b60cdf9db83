"""Rate limits on the token endpoint and the merchant API: 429, Retry-After, problem+json.

Each test builds its own app with a tiny limit, so the counters start at zero
and other tests are never throttled.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import (
    API,
    PROBLEMS,
    Vault,
    register_merchant,
    request_token,
    subscribe,
    token_header,
)
from flask import Flask

from vault.app import create_app
from vault.clock import FixedClock
from vault.config import Settings
from vault.crypto.keyring import KeyRing


@pytest.fixture
def limited(settings: Settings, keyring: KeyRing, clock: FixedClock) -> Iterator[Vault]:
    app: Flask = create_app(settings.replace(rate_limit_token="3 per minute",
                                             rate_limit_api="4 per minute"),
                            keyring=keyring, clock=clock)
    yield Vault(app, app.test_client(), app.extensions["prefvault"], clock)
    app.extensions["prefvault"].database.dispose()


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
    before = limited.runtime.database
    with before.read() as session:
        stored = session.connection().exec_driver_sql("SELECT count(*) FROM decision").scalar()
    _assert_429(limited.client.post(f"{API}/decisions", json=ask, headers=headers))
    with before.read() as session:
        assert session.connection().exec_driver_sql(
            "SELECT count(*) FROM decision").scalar() == stored


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
