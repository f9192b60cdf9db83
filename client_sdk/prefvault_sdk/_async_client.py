"""``AsyncVaultClient``: the asyncio twin of ``VaultClient``, method for method.

Same behaviour, same errors, same fail-closed answers; calls that do I/O are
coroutines, ``reachable`` and ``subscriptions`` are async iterators, and the
pure helpers (``handle_event``, ``clear_cache``) stay plain methods. Use one
client per event loop: its connection pool belongs to the loop it first ran in.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import httpx

from ._base import (
    MAX_BATCH_SIZE,
    Attempts,
    BaseClient,
    Done,
    Wait,
    connect_errors,
    json_body,
    token_errors,
)
from ._cache import DecisionCache
from ._errors import ConnectionError, ServerError, discovery_error_from_response
from ._models import BatchResult, ConnectRequest, ContactReceipt, Decision, Subscription
from .audit.receipt import Receipt


async def _chunks(subjects: Iterable[str] | AsyncIterable[str],
                  size: int) -> AsyncIterator[list[str]]:
    """Lists of up to ``size`` subjects, read lazily from a sync or an async iterable."""
    chunk: list[str] = []
    if isinstance(subjects, AsyncIterable):
        async for subject in subjects:
            chunk.append(subject)
            if len(chunk) == size:
                yield chunk
                chunk = []
    else:
        iterator: Iterator[str] = iter(subjects)
        for subject in iterator:
            chunk.append(subject)
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


class AsyncVaultClient(BaseClient):
    """Talk to a Preference Vault as a merchant, from asyncio code.

    >>> async with AsyncVaultClient("https://vault.example", client_id=...,
    ...                             client_secret=...) as vault:
    ...     if await vault.may_contact(subject, "email", "order_updates"):
    ...         await send_the_email()

    See ``VaultClient`` for the meaning of every argument; ``transport`` is
    an ``httpx.AsyncBaseTransport`` here.
    """

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        client_secret: str,
        timeout: float = 10.0,
        max_retries: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
        fail_closed: bool = True,
        cache: bool | DecisionCache = False,
    ) -> None:
        super().__init__(base_url, client_id=client_id, client_secret=client_secret,
                         timeout=timeout, max_retries=max_retries, fail_closed=fail_closed,
                         cache=cache)
        self._http = httpx.AsyncClient(transport=transport, **self._http_settings())
        self._discovery_lock = asyncio.Lock()
        self._token_lock = asyncio.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- transport: retries, token renewal -------------------------------------------------

    async def _send(self, method: str, url: str, **call: Any) -> httpx.Response:
        """``VaultClient._send``, awaited: ``Attempts`` decides, this loop does the I/O."""
        attempts = Attempts(self, self._http, method, url, **call)
        while True:
            request = attempts.request(await self._access_token() if attempts.bearer else None)
            try:
                response = await self._http.send(request)
            except httpx.TransportError as error:
                step = attempts.failed(error)
            else:
                step = attempts.answered(response)
            if isinstance(step, Done):
                return step.response
            if isinstance(step, Wait):
                await asyncio.sleep(step.seconds)

    async def _ensure_metadata(self) -> None:
        if self._metadata is not None:
            return
        async with self._discovery_lock:
            if self._metadata is None:
                self._accept_metadata(await self._send(
                    "GET", self._metadata_url, idempotent=True,
                    errors=discovery_error_from_response))

    async def _access_token(self) -> str:
        token = self._current_token()
        if token is not None:
            return token
        await self._ensure_metadata()
        async with self._token_lock:
            token = self._current_token()
            if token is not None:
                return token
            response = await self._send("POST", self._endpoint("token_endpoint"),
                                        idempotent=True, auth="basic", errors=token_errors,
                                        data={"grant_type": "client_credentials"})
            return self._accept_token(response)

    # -- connecting people ---------------------------------------------------------------

    async def connect_url(self, redirect_uri: str, scopes: str | Iterable[str],
                          state: str | None = None, *,
                          nonce: str | None = None) -> ConnectRequest:
        """Where to send a person to subscribe them; see ``VaultClient.connect_url``."""
        await self._ensure_metadata()
        return self._connect_request(redirect_uri, scopes, state, nonce)

    async def complete_connect(self, callback_url_or_code: str, code_verifier: str,
                               state: str | None, redirect_uri: str | None = None, *,
                               nonce: str | None = None) -> Subscription:
        """Finish the flow at your redirect URI; see ``VaultClient.complete_connect``."""
        await self._ensure_metadata()
        code, redirect = self._read_callback(callback_url_or_code, state, redirect_uri)
        response = await self._send("POST", self._endpoint("token_endpoint"),
                                    idempotent=False, auth="basic", errors=connect_errors,
                                    data=self._code_exchange(code, code_verifier, redirect))
        return self._connected(response, nonce)

    # -- asking ----------------------------------------------------------------------------

    async def may_contact(self, subject: str, channel: str, purpose: str,
                          at: datetime | None = None) -> Decision:
        """May this person be reached now (or ``at``)? Fails closed; see ``VaultClient``."""
        question = self._question(subject, channel, purpose, at)
        cached = self._cached(subject, channel, purpose, at)
        if cached is not None:
            return cached
        try:
            response = await self._send("POST", self._api_url("/decisions"), idempotent=True,
                                        auth="bearer", json=question)
        except (ConnectionError, ServerError) as error:
            if not self._fail_closed:
                raise
            return self._unreachable(error, subject, channel, purpose)
        return self._decided(response, at)

    def reachable(self, subjects: Iterable[str] | AsyncIterable[str], channel: str,
                  purpose: str, at: datetime | None = None,
                  on_progress: Callable[[int], None] | None = None, *,
                  batch_size: int = MAX_BATCH_SIZE) -> AsyncIterator[BatchResult]:
        """Check a campaign, streamed in input order (``async for``); see ``VaultClient``.

        ``subjects`` may be a plain or an async iterable.
        """
        if isinstance(subjects, str | bytes):
            raise TypeError("subjects must be an iterable of subjects, not one string")
        size = self._batch_size(batch_size)
        self._batch_question([], channel, purpose, at)
        return self._stream(subjects, channel, purpose, at, on_progress, size)

    async def _stream(self, subjects: Iterable[str] | AsyncIterable[str], channel: str,
                      purpose: str, at: datetime | None,
                      on_progress: Callable[[int], None] | None,
                      size: int) -> AsyncIterator[BatchResult]:
        answered = 0
        async for chunk in _chunks(subjects, size):
            answers = await self._ask_batch(chunk, channel, purpose, at)
            answered += len(chunk)
            if on_progress is not None:
                on_progress(answered)
            for answer in answers:
                yield answer

    async def _ask_batch(self, chunk: list[str], channel: str, purpose: str,
                         at: datetime | None) -> list[BatchResult]:
        body = self._batch_question(chunk, channel, purpose, at)
        try:
            response = await self._send("POST", self._api_url("/decisions/batch"),
                                        idempotent=True, auth="bearer", json=body)
        except (ConnectionError, ServerError) as error:
            if not self._fail_closed:
                raise
            return self._unreachable_batch(error, chunk)
        return self._batch_answers(chunk, response)

    # -- reporting and reading -------------------------------------------------------------

    async def report_contact(self, subject: str, channel: str, purpose: str,
                             decision_id: str | None = None, at: datetime | None = None, *,
                             idempotency_key: str | None = None) -> ContactReceipt:
        """Tell the vault you contacted this person; see ``VaultClient.report_contact``."""
        body = self._contact(subject, channel, purpose, decision_id, at)
        key = idempotency_key or str(uuid.uuid4())
        response = await self._send("POST", self._api_url("/contacts"), idempotent=True,
                                    auth="bearer", json=body,
                                    headers={"Idempotency-Key": key})
        return ContactReceipt.from_json(json_body(response))

    async def subscription(self, subject: str) -> Subscription:
        """One subscription with its current terms; ``NotFound`` if the subject is unknown."""
        response = await self._send("GET", self._subscription_url(subject), idempotent=True,
                                    auth="bearer")
        return Subscription.from_json(json_body(response))

    async def receipt(self, subject: str) -> Receipt:
        """The vault's signed consent receipt for this subscription's latest state, verified.

        As ``VaultClient.receipt``: signature, tree head and log inclusion
        proof checked against the vault's JWKS (``SignatureVerificationError``
        otherwise), ``NotFound`` for an unknown subject.
        """
        response = await self._send("GET", self._receipt_url(subject), idempotent=True,
                                    auth="bearer")
        token = self._receipt_token(response)
        verified = self._receipt_or_none(token, subject)
        if verified is not None:
            return verified
        jwks = self._accept_jwks(await self._send("GET", self._endpoint("jwks_uri"),
                                                  idempotent=True))
        return self._verify_receipt(token, subject, jwks)

    def subscriptions(self, *, page_size: int = 100) -> AsyncIterator[Subscription]:
        """Every subscription of this merchant, oldest first (``async for``)."""
        return self._pages(self._first_page(page_size))

    async def _pages(self, query: dict[str, Any] | None) -> AsyncIterator[Subscription]:
        while query is not None:
            response = await self._send("GET", self._api_url("/subscriptions"),
                                        idempotent=True, auth="bearer", params=query)
            items, query = self._page(response, query)
            for item in items:
                yield item


__all__ = ["AsyncVaultClient"]
