"""Webhook delivery from the outbox to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlmodel import select

from vault.clock import FixedClock
from vault.extensions import Runtime
from vault.models import Merchant, WebhookAttempt, WebhookOutbox
from vault.services import subscriptions
from vault.services.merchants import IssuedClient, register_client
from vault.services.scopes import PersonGrant
from vault.services.webhooks import BASE_DELAY, MAX_DELAY, backoff, deliver_due


class Receiver:
    """A merchant's webhook endpoint that answers from a script of status codes."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def _post(http: httpx.Client):  # type: ignore[no-untyped-def]
    def post(url: str, body: bytes, headers: dict[str, str]) -> int:
        return http.post(url, content=body, headers=headers).status_code

    return post


def _subscribe(runtime: Runtime, url: str) -> tuple[IssuedClient, str]:
    """A merchant with a webhook URL and one grant, which queues subscription.created."""
    with runtime.database.write() as session:
        person = runtime.accounts.sign_up(session, email="hook@example.org",
                                          password="a long enough password")
        issued = register_client(session, clock=runtime.clock, name="Hook Shop",
                                 redirect_uris=["https://shop.example/cb"], webhook_url=url,
                                 webhook_key=runtime.keyring.webhook_key)
        merchant = session.exec(select(Merchant).where(
            Merchant.client_id == issued.client_id)).one()
        grant = PersonGrant.parse("contact:email:order_updates")
        sub = subscriptions.grant(session, person_id=person, merchant=merchant, granted=grant,
                                  requested=grant, data_keys=runtime.data_keys,
                                  clock=runtime.clock)
        return issued, sub.subject


def _verify(secret: str, header: str, body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def test_event_is_delivered_signed_once(runtime: Runtime, receiver: Receiver,
                                        http: httpx.Client) -> None:
    issued, subject = _subscribe(runtime, receiver.url)
    assert issued.webhook_secret
    report = deliver_due(runtime.database, webhook_key=runtime.keyring.webhook_key,
                         clock=runtime.clock, post=_post(http))
    assert report.delivered == 1
    headers, body = receiver.requests[0]
    event = json.loads(body)
    assert event["type"] == "subscription.created" and event["subject"] == subject
    assert set(event) == {"id", "type", "created", "subject", "data"}
    assert _verify(issued.webhook_secret, headers["Vault-Signature"], body)
    assert not _verify("whsec_wrong", headers["Vault-Signature"], body)
    again = deliver_due(runtime.database, webhook_key=runtime.keyring.webhook_key,
                        clock=runtime.clock, post=_post(http))
    assert again.delivered == 0 and len(receiver.requests) == 1
    with runtime.database.read() as session:
        row = session.exec(select(WebhookOutbox)).one()
        assert row.status == "delivered" and row.attempts == 1


def test_failures_retry_with_backoff_until_success(runtime: Runtime, receiver: Receiver,
                                                   http: httpx.Client,
                                                   clock: FixedClock) -> None:
    _subscribe(runtime, receiver.url)
    receiver.statuses = [500, 503]
    first = deliver_due(runtime.database, webhook_key=runtime.keyring.webhook_key,
                        clock=clock, post=_post(http))
    assert first.retried == 1
    early = deliver_due(runtime.database, webhook_key=runtime.keyring.webhook_key,
                        clock=clock, post=_post(http))
    assert early.retried == 0 and len(receiver.requests) == 1, "not before the backoff"
    for _ in range(2):
        clock.advance(MAX_DELAY)
        deliver_due(runtime.database, webhook_key=runtime.keyring.webhook_key, clock=clock,
                    post=_post(http))
    assert len(receiver.requests) == 3
    with runtime.database.read() as session:
        row = session.exec(select(WebhookOutbox)).one()
        attempts = session.exec(select(WebhookAttempt).order_by(WebhookAttempt.attempt)).all()
    assert row.status == "delivered"
    assert [a.status_code for a in attempts] == [500, 503, 200]
    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1, "every retry sends the same event"


def test_gives_up_after_max_attempts(runtime: Runtime, receiver: Receiver, http: httpx.Client,
                                     clock: FixedClock) -> None:
    _subscribe(runtime, receiver.url)
    receiver.statuses = [500] * 10
    for _ in range(5):
        deliver_due(runtime.database, webhook_key=runtime.keyring.webhook_key, clock=clock,
                    post=_post(http), max_attempts=3)
        clock.advance(MAX_DELAY)
    assert len(receiver.requests) == 3
    with runtime.database.read() as session:
        row = session.exec(select(WebhookOutbox)).one()
    assert row.status == "failed" and row.attempts == 3 and row.last_error == "HTTP 500"


def test_unreachable_merchant_is_retried_with_the_error_recorded(
    runtime: Runtime, http: httpx.Client
) -> None:
    closed = Receiver()  # bound, never serving, then closed: nothing listens on its port
    closed.server.server_close()
    _subscribe(runtime, closed.url)
    report = deliver_due(runtime.database, webhook_key=runtime.keyring.webhook_key,
                         clock=runtime.clock, post=_post(http))
    assert report.retried == 1
    with runtime.database.read() as session:
        attempt = session.exec(select(WebhookAttempt)).one()
    assert attempt.status_code is None and attempt.error and "Connect" in attempt.error


def test_backoff_doubles_is_capped_and_jittered() -> None:
    low = [backoff(n, rng=lambda: 0.0) for n in range(1, 15)]
    high = [backoff(n, rng=lambda: 1.0) for n in range(1, 15)]
    assert high[0] == BASE_DELAY and high[1] == BASE_DELAY * 2
    assert all(b >= a for a, b in itertools.pairwise(high))
    assert max(high) == MAX_DELAY
    assert all(lo == hi / 2 for lo, hi in zip(low, high, strict=True))
    assert backoff(3) <= timedelta(seconds=40)


def test_profile_change_notifies_only_merchants_that_see_the_field(runtime: Runtime) -> None:
    with runtime.database.write() as session:
        person = runtime.accounts.sign_up(session, email="p@example.org",
                                          password="a long enough password")
        merchants = []
        for name, scope in (("Sees phone", "contact:sms:service profile:phone"),
                            ("Sees name", "contact:sms:service profile:name")):
            issued = register_client(session, clock=runtime.clock, name=name,
                                     redirect_uris=["https://shop.example/cb"])
            merchant = session.exec(select(Merchant).where(
                Merchant.client_id == issued.client_id)).one()
            grant = PersonGrant.parse(scope)
            subscriptions.grant(session, person_id=person, merchant=merchant, granted=grant,
                                requested=grant, data_keys=runtime.data_keys,
                                clock=runtime.clock)
            merchants.append(merchant.id)
    with runtime.database.write() as session:
        runtime.accounts.update_profile(session, person, {"phone": "+31 6 9999 0000"})
    with runtime.database.read() as session:
        events = session.exec(select(WebhookOutbox).where(
            WebhookOutbox.event_type == "profile.updated")).all()
    assert [e.merchant_id for e in events] == [merchants[0]]
    payload = json.loads(events[0].payload)
    assert payload["data"] == {"fields": ["phone"]}
    assert "9999" not in events[0].payload
