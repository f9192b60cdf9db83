"""Helpers for the merchant SDK tests: shops, people, and transports that misbehave.

Everything goes to a real vault (conftest's ``live_vault``) over HTTP. Shops
and subscriptions are set up through the vault's own services; the changes a
person makes go through the same services inside
``live_vault.runtime.database.write()``. The transports here sit in front of
the real server and inject the failures a network produces (503, 429 with
``Retry-After``, a timeout or a refused connection) a given number of times
before passing requests through.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, time

import httpx
from oauth_helpers import PASSWORD, REDIRECT_URI, LiveVault, Person, consent, sign_up
from prefvault_sdk import AsyncVaultClient, DecisionCache, VaultClient

from vault.models import Merchant
from vault.services import subscriptions as subscription_service
from vault.services.merchants import find_client, register_client
from vault.services.rules import QuietHours
from vault.services.rules import set_rules as save_rules
from vault.services.scopes import PersonGrant

WEBHOOK_URL = "https://shop.example/hooks/vault"


@dataclass(frozen=True)
class Shop:
    """A merchant registered with the vault: what the SDK is configured with."""

    id: str
    client_id: str
    client_secret: str
    name: str
    webhook_secret: str | None
    redirect_uri: str = REDIRECT_URI


@dataclass(frozen=True)
class Customer:
    """A person subscribed to a shop, as the test (and the services) know them."""

    person_id: str
    subscription_id: str
    subject: str
    email: str


def register_shop(live_vault: LiveVault, name: str = "Book Shop", *,
                  webhook_url: str | None = WEBHOOK_URL) -> Shop:
    rt = live_vault.runtime
    with rt.database.write() as session:
        issued = register_client(session, clock=rt.clock, name=name,
                                 redirect_uris=[REDIRECT_URI], webhook_url=webhook_url,
                                 webhook_key=rt.keyring.webhook_key)
        merchant_id = find_client(session, issued.client_id).id
    return Shop(merchant_id, issued.client_id, issued.client_secret, name,
                issued.webhook_secret)


def client_for(live_vault: LiveVault, shop: Shop, **options: object) -> VaultClient:
    return VaultClient(live_vault.base_url, client_id=shop.client_id,
                       client_secret=shop.client_secret, **options)  # type: ignore[arg-type]


def async_client_for(live_vault: LiveVault, shop: Shop, **options: object) -> AsyncVaultClient:
    return AsyncVaultClient(live_vault.base_url, client_id=shop.client_id,
                            client_secret=shop.client_secret, **options)  # type: ignore[arg-type]


def vault_clock_cache(live_vault: LiveVault) -> DecisionCache:
    """A decision cache that reads the vault's (fixed) clock, as a synced merchant's would."""
    return DecisionCache(clock=live_vault.clock.now)


def subscribe(live_vault: LiveVault, shop: Shop, email: str, *,
              scope: str = "contact:email:offers profile:email",
              profile: Mapping[str, object] | None = None) -> Customer:
    """A new person who granted ``scope`` to ``shop`` (as if through the consent page)."""
    rt = live_vault.runtime
    person_id = sign_up(live_vault, email, profile=dict(profile or {}))
    granted = PersonGrant.parse(scope)
    with rt.database.write() as session:
        merchant = session.get(Merchant, shop.id)
        assert merchant is not None
        sub = subscription_service.grant(session, person_id=person_id, merchant=merchant,
                                         granted=granted, requested=granted,
                                         data_keys=rt.data_keys, clock=rt.clock)
        return Customer(person_id, sub.id, sub.subject, email)


# -- what a person changes -------------------------------------------------------------------


def set_permission(live_vault: LiveVault, customer: Customer, channel: str, purpose: str, *,
                   allowed: bool = True, max_per_week: int | None = None,
                   quiet_hours: tuple[str, str] | None = None,
                   expires_at: datetime | None = None) -> None:
    rt = live_vault.runtime
    quiet = (QuietHours(time.fromisoformat(quiet_hours[0]), time.fromisoformat(quiet_hours[1]))
             if quiet_hours else None)
    with rt.database.write() as session:
        subscription_service.set_permission(
            session, person_id=customer.person_id, subscription_id=customer.subscription_id,
            channel=channel, purpose=purpose, allowed=allowed, max_per_week=max_per_week,
            quiet_hours=quiet, expires_at=expires_at, data_keys=rt.data_keys, clock=rt.clock)


def set_rules(live_vault: LiveVault, customer: Customer, rules: Mapping[str, object]) -> None:
    rt = live_vault.runtime
    with rt.database.write() as session:
        save_rules(session, customer.person_id, rules, data_keys=rt.data_keys, clock=rt.clock)


def revoke(live_vault: LiveVault, customer: Customer) -> None:
    rt = live_vault.runtime
    with rt.database.write() as session:
        subscription_service.revoke(session, person_id=customer.person_id,
                                    subscription_id=customer.subscription_id,
                                    data_keys=rt.data_keys, clock=rt.clock)


# -- the consent page ------------------------------------------------------------------------


@contextmanager
def logged_in(live_vault: LiveVault, email: str,
              profile: Mapping[str, object] | None = None) -> Iterator[Person]:
    """A new person at a browser, logged in to the vault."""
    sign_up(live_vault, email, profile=dict(profile or {}), password=PASSWORD)
    with Person(live_vault.base_url, email) as person:
        person.log_in()
        yield person


def approve(person: Person, url: str, grant: list[str]) -> str:
    """The person allows ``grant`` on the consent page; the redirect, not followed."""
    return consent(person, url, grant=grant)


def deny(person: Person, url: str) -> str:
    return consent(person, url, deny=True)


# -- networks that fail ----------------------------------------------------------------------


@dataclass
class Seen:
    """One request as it reached the transport."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Fault:
    """Answer ``status`` (with ``headers``) to the first ``times`` requests ``path`` matches."""

    path: str
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)

    def take(self, request: httpx.Request) -> httpx.Response | None:
        if self.times <= 0 or not request.url.path.startswith(self.path):
            return None
        self.times -= 1
        body = b'{"type": "about:blank", "title": "injected", "status": %d}' % self.status
        return httpx.Response(self.status, headers={
            "Content-Type": "application/problem+json", **self.headers}, content=body,
            request=request)


@dataclass
class Outage:
    """Fail the first ``times`` requests ``path`` matches with ``error``: no answer at all.

    ``httpx.ConnectError`` stands for a request that never left (safe to send
    again); ``httpx.ReadTimeout`` for one the vault may have acted on.
    """

    path: str
    error: type[httpx.TransportError]
    times: int

    def take(self, request: httpx.Request) -> httpx.Response | None:
        if self.times <= 0 or not request.url.path.startswith(self.path):
            return None
        self.times -= 1
        raise self.error("injected", request=request)


class _Recorder:
    def __init__(self, faults: list[Fault | Outage],
                 rewrite: Callable[[httpx.Request, httpx.Response], httpx.Response] | None
                 ) -> None:
        self.faults = faults
        self.rewrite = rewrite
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    def _fault(self, request: httpx.Request) -> httpx.Response | None:
        with self._lock:
            self.seen.append(Seen(request.method, request.url.path, dict(request.headers)))
            for fault in self.faults:
                answer = fault.take(request)
                if answer is not None:
                    return answer
        return None

    def count(self, path: str, method: str | None = None) -> int:
        return sum(1 for s in self.seen if s.path.startswith(path)
                   and (method is None or s.method == method))


class FlakyTransport(httpx.BaseTransport, _Recorder):
    """In front of the real server: injected faults first, then ``httpx.HTTPTransport``."""

    def __init__(self, *faults: Fault | Outage,
                 rewrite: Callable[[httpx.Request, httpx.Response], httpx.Response] | None = None
                 ) -> None:
        _Recorder.__init__(self, list(faults), rewrite)
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        injected = self._fault(request)
        if injected is not None:
            return injected
        response = self.inner.handle_request(request)
        if self.rewrite is not None:
            response.read()
            return self.rewrite(request, response)
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncFlakyTransport(httpx.AsyncBaseTransport, _Recorder):
    """The async twin of ``FlakyTransport``."""

    def __init__(self, *faults: Fault | Outage) -> None:
        _Recorder.__init__(self, list(faults), None)
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        injected = self._fault(request)
        if injected is not None:
            return injected
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens: every connection is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def silent_server() -> Iterator[str]:
    """A base URL whose server accepts connections and never answers: requests time out."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


__all__ = [
    "REDIRECT_URI",
    "WEBHOOK_URL",
    "AsyncFlakyTransport",
    "Customer",
    "Fault",
    "FlakyTransport",
    "Outage",
    "Seen",
    "Shop",
    "approve",
    "async_client_for",
    "client_for",
    "closed_port_url",
    "deny",
    "logged_in",
    "register_shop",
    "revoke",
    "set_permission",
    "set_rules",
    "silent_server",
    "subscribe",
    "vault_clock_cache",
]
