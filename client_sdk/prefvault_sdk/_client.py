"""``VaultClient``: the synchronous merchant client.

One client per process is the intended use: it is thread-safe, keeps its
connections, the discovery document and the client-credentials token, and
renews the token before it expires. Everything without I/O lives in
``_base``, down to what each call retries and when it renews the token
(``_base.Attempts``); this module fetches, sends and sleeps as it is told.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import islice
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


class VaultClient(BaseClient):
    """Talk to a Preference Vault as a merchant (blocking I/O).

    >>> with VaultClient("https://vault.example", client_id=..., client_secret=...) as vault:
    ...     if vault.may_contact(subject, "email", "order_updates"):
    ...         send_the_email()

    ``fail_closed`` (default) turns "the vault cannot be reached" into a
    denied decision instead of an exception: a shop that cannot ask must not
    send. ``cache=True`` (or a ``DecisionCache``) keeps answers as long as the
    vault says they stand. ``transport`` is any ``httpx.BaseTransport`` (for
    tests, proxies or mounting a custom TLS setup).
    """

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        client_secret: str,
        timeout: float = 10.0,
        max_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
        fail_closed: bool = True,
        cache: bool | DecisionCache = False,
    ) -> None:
        super().__init__(base_url, client_id=client_id, client_secret=client_secret,
                         timeout=timeout, max_retries=max_retries, fail_closed=fail_closed,
                         cache=cache)
        self._http = httpx.Client(transport=transport, **self._http_settings())
        self._discovery_lock = threading.Lock()
        self._token_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- transport: retries, token renewal -------------------------------------------------

    def _send(self, method: str, url: str, **call: Any) -> httpx.Response:
        """Send one call (``call`` as ``Attempts`` takes it): a 2xx response or a VaultError.

        ``Attempts`` decides what to retry, renew, log and raise; this loop
        only fetches the token, sends and sleeps as it is told.
        """
        attempts = Attempts(self, self._http, method, url, **call)
        while True:
            request = attempts.request(self._access_token() if attempts.bearer else None)
            try:
                response = self._http.send(request)
            except httpx.TransportError as error:
                step = attempts.failed(error)
            else:
                step = attempts.answered(response)
            if isinstance(step, Done):
                return step.response
            if isinstance(step, Wait):
                time.sleep(step.seconds)

    def _ensure_metadata(self) -> None:
        """Read the discovery document once, on first need."""
        if self._metadata is not None:
            return
        with self._discovery_lock:
            if self._metadata is None:
                self._accept_metadata(self._send(
                    "GET", self._metadata_url, idempotent=True,
                    errors=discovery_error_from_response))

    def _access_token(self) -> str:
        """The client-credentials token, fetched on first need and renewed before expiry."""
        token = self._current_token()
        if token is not None:
            return token
        self._ensure_metadata()
        with self._token_lock:
            token = self._current_token()
            if token is not None:
                return token
            # Asking for a new token is harmless to repeat, so it may be retried.
            response = self._send("POST", self._endpoint("token_endpoint"), idempotent=True,
                                  auth="basic", errors=token_errors,
                                  data={"grant_type": "client_credentials"})
            return self._accept_token(response)

    # -- connecting people ---------------------------------------------------------------

    def connect_url(self, redirect_uri: str, scopes: str | Iterable[str],
                    state: str | None = None, *, nonce: str | None = None) -> ConnectRequest:
        """Where to send a person to subscribe them (PKCE S256, random state and nonce).

        Keep the returned ``code_verifier``, ``state`` and ``nonce`` in the
        person's server-side session; pass them to ``complete_connect``.
        """
        self._ensure_metadata()
        return self._connect_request(redirect_uri, scopes, state, nonce)

    def complete_connect(self, callback_url_or_code: str, code_verifier: str,
                         state: str | None, redirect_uri: str | None = None, *,
                         nonce: str | None = None) -> Subscription:
        """Finish the flow at your redirect URI: check the callback, exchange the code.

        Pass the whole callback URL so the SDK checks ``state``
        (``StateMismatch``) and reports a refusal (``ConnectDenied``). The code
        exchange is never retried once sent: a code is single-use, and a
        replay makes the vault revoke what the first exchange issued.
        """
        self._ensure_metadata()
        code, redirect = self._read_callback(callback_url_or_code, state, redirect_uri)
        response = self._send("POST", self._endpoint("token_endpoint"), idempotent=False,
                              auth="basic", errors=connect_errors,
                              data=self._code_exchange(code, code_verifier, redirect))
        return self._connected(response, nonce)

    # -- asking ----------------------------------------------------------------------------

    def may_contact(self, subject: str, channel: str, purpose: str,
                    at: datetime | None = None) -> Decision:
        """May this person be reached over ``channel`` for ``purpose`` (now, or ``at``)?

        Fails closed: when the vault cannot be reached after retries, the
        answer is a denial with reason ``vault_unreachable`` (or, with
        ``fail_closed=False``, ``ConnectionError``/``ServerError`` is raised).
        """
        question = self._question(subject, channel, purpose, at)
        cached = self._cached(subject, channel, purpose, at)
        if cached is not None:
            return cached
        try:
            response = self._send("POST", self._api_url("/decisions"), idempotent=True,
                                  auth="bearer", json=question)
        except (ConnectionError, ServerError) as error:
            if not self._fail_closed:
                raise
            return self._unreachable(error, subject, channel, purpose)
        return self._decided(response, at)

    def reachable(self, subjects: Iterable[str], channel: str, purpose: str,
                  at: datetime | None = None,
                  on_progress: Callable[[int], None] | None = None, *,
                  batch_size: int = MAX_BATCH_SIZE) -> Iterator[BatchResult]:
        """Check a campaign: one ``BatchResult`` per subject, in input order, streamed.

        ``subjects`` may be any iterable, a generator over millions included:
        it is read ``batch_size`` (at most 10,000) at a time, so memory stays
        constant. ``on_progress(n)`` is called with the number of subjects
        answered so far after each batch. Fails closed per batch like
        ``may_contact``.
        """
        if isinstance(subjects, str | bytes):
            raise TypeError("subjects must be an iterable of subjects, not one string")
        size = self._batch_size(batch_size)
        self._batch_question([], channel, purpose, at)  # check the arguments now, not lazily
        return self._stream(iter(subjects), channel, purpose, at, on_progress, size)

    def _stream(self, subjects: Iterator[str], channel: str, purpose: str,
                at: datetime | None, on_progress: Callable[[int], None] | None,
                size: int) -> Iterator[BatchResult]:
        answered = 0
        while chunk := list(islice(subjects, size)):
            answers = self._ask_batch(chunk, channel, purpose, at)
            answered += len(chunk)
            del chunk
            if on_progress is not None:
                on_progress(answered)
            yield from answers

    def _ask_batch(self, chunk: list[str], channel: str, purpose: str,
                   at: datetime | None) -> list[BatchResult]:
        body = self._batch_question(chunk, channel, purpose, at)
        try:
            response = self._send("POST", self._api_url("/decisions/batch"), idempotent=True,
                                  auth="bearer", json=body)
        except (ConnectionError, ServerError) as error:
            if not self._fail_closed:
                raise
            return self._unreachable_batch(error, chunk)
        return self._batch_answers(chunk, response)

    # -- reporting and reading -------------------------------------------------------------

    def report_contact(self, subject: str, channel: str, purpose: str,
                       decision_id: str | None = None, at: datetime | None = None, *,
                       idempotency_key: str | None = None) -> ContactReceipt:
        """Tell the vault you contacted this person; returns the vault's record.

        Sent with an ``Idempotency-Key`` (a fresh one unless given) that stays
        the same across retries, so a retry after a lost answer is one contact.
        """
        body = self._contact(subject, channel, purpose, decision_id, at)
        key = idempotency_key or str(uuid.uuid4())
        response = self._send("POST", self._api_url("/contacts"), idempotent=True,
                              auth="bearer", json=body, headers={"Idempotency-Key": key})
        return ContactReceipt.from_json(json_body(response))

    def subscription(self, subject: str) -> Subscription:
        """One subscription with its current terms; ``NotFound`` if the subject is unknown."""
        response = self._send("GET", self._subscription_url(subject), idempotent=True,
                              auth="bearer")
        return Subscription.from_json(json_body(response))

    def receipt(self, subject: str) -> Receipt:
        """The vault's signed consent receipt for this subscription's latest state, verified.

        The signature, the signed tree head and the inclusion proof of the
        consent-log event are checked against the vault's JWKS (read from its
        discovery document's ``jwks_uri``, kept, and read again once if the
        receipt names a key it lacks): ``SignatureVerificationError`` if any
        fails, ``NotFound`` for an unknown subject. Keep ``receipt.jws`` as
        evidence; ``prefvault_sdk.verify_receipt`` checks it again offline.
        """
        response = self._send("GET", self._receipt_url(subject), idempotent=True,
                              auth="bearer")
        token = self._receipt_token(response)
        verified = self._receipt_or_none(token, subject)
        if verified is not None:
            return verified
        jwks = self._accept_jwks(self._send("GET", self._endpoint("jwks_uri"), idempotent=True))
        return self._verify_receipt(token, subject, jwks)

    def subscriptions(self, *, page_size: int = 100) -> Iterator[Subscription]:
        """Every subscription of this merchant, oldest first, fetched a page at a time."""
        return self._pages(self._first_page(page_size))

    def _pages(self, query: dict[str, Any] | None) -> Iterator[Subscription]:
        while query is not None:
            response = self._send("GET", self._api_url("/subscriptions"), idempotent=True,
                                  auth="bearer", params=query)
            items, query = self._page(response, query)
            yield from items


__all__ = ["VaultClient"]
