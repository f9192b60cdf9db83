"""What the sync and the async client share: configuration and every step without I/O.

Like httpx, the two clients are thin shells over this: building requests,
reading answers, the token's lifetime, the connect flow's checks, the
decision cache and each call's retries and token renewal (``Attempts``) live
here once; ``_client.py`` and ``_async_client.py`` only fetch, send and sleep
as they are told.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import httpx

from ._cache import DecisionCache
from ._errors import (
    ConnectDenied,
    ConnectError,
    ConnectionError,
    SignatureVerificationError,
    StateMismatch,
    VaultError,
    error_from_response,
    oauth_error_from_response,
)
from ._models import (
    BatchResult,
    ConnectRequest,
    Decision,
    Event,
    Subscription,
    format_moment,
)
from ._pkce import new_code_verifier, new_nonce, new_state, s256_challenge
from ._retry import RetryPolicy
from ._version import __version__
from .audit.receipt import Receipt, verify_receipt

log = logging.getLogger("prefvault_sdk")

API_PREFIX = "/api/v1"
METADATA_PATH = "/.well-known/oauth-authorization-server"
#: the vault answers at most this many subjects per batch
MAX_BATCH_SIZE = 10_000
#: the largest page ``GET /subscriptions`` serves
MAX_PAGE_SIZE = 500
#: a client-credentials token is replaced this many seconds before it expires
TOKEN_RENEW_EARLY = 30.0
USER_AGENT = f"prefvault-sdk-python/{__version__} httpx/{httpx.__version__}"

#: how a call authenticates: the client-credentials token, the client's secret, or not at all
Auth = Literal["bearer", "basic"] | None
#: turns a refused answer into the error a call raises
ErrorFactory = Callable[[httpx.Response], VaultError]


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float  # time.monotonic() after which a new token is fetched


def _clean_base_url(base_url: str) -> str:
    if not isinstance(base_url, str):
        raise TypeError("base_url must be a string such as 'https://vault.example'")
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("base_url must be an absolute http(s) URL such as 'https://vault.example'")
    if parts.query or parts.fragment:
        raise ValueError("base_url may not carry a query or a fragment")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _require_text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty string")
    return value


def _scope_string(scopes: str | Iterable[str]) -> str:
    items = scopes.split() if isinstance(scopes, str) else [str(s) for s in scopes]
    items = list(dict.fromkeys(i for i in items if i))
    if not items:
        raise ValueError("ask for at least one scope, e.g. 'contact:email:order_updates'")
    return " ".join(items)


def _single(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise ConnectError(f"the callback carries more than one {name!r}",
                           error="invalid_request")
    return values[0]


def _b64url_json(segment: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        doc = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ConnectError("the id_token is malformed", error="invalid_token") from None
    if not isinstance(doc, dict):
        raise ConnectError("the id_token is malformed", error="invalid_token")
    return doc


def release(response: httpx.Response) -> None:
    """Let a read response be freed at once instead of at the next full garbage collection.

    httpx binds each response's stream back to the response, a reference
    cycle: a dropped response (body and all) lingers until the cyclic GC's
    oldest generation runs, which in a long campaign means megabytes of
    answered batches piling up. The body is already read, so the stream can go.
    """
    response.stream = httpx.ByteStream(b"")


def json_body(response: httpx.Response) -> Any:
    """The JSON document of a 2xx answer (releasing the response); VaultError if not JSON."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        raise VaultError("the vault's answer is not JSON", status=response.status_code,
                         request_id=response.headers.get("X-Request-Id")) from None
    finally:
        release(response)


def connect_errors(response: httpx.Response) -> VaultError:
    """The error of a refused code exchange (a refusal of the person's grant)."""
    return oauth_error_from_response(response, connect=True)


def token_errors(response: httpx.Response) -> VaultError:
    """The error of a refused client-credentials request (a configuration error)."""
    return oauth_error_from_response(response, connect=False)


@dataclass(frozen=True)
class Done:
    """The call succeeded: hand this 2xx response to the caller."""

    response: httpx.Response


@dataclass(frozen=True)
class Wait:
    """Sleep this many seconds, then send the call again."""

    seconds: float


@dataclass(frozen=True)
class Renew:
    """The vault refused the token, which is now dropped: send again at once with a new one."""


class Attempts:
    """The tries of one call, decided without I/O: what to send and what each outcome means.

    The sync and the async client drive it with the same loop and differ only
    in how they fetch the token, send and sleep; with the decisions here once,
    the two cannot drift apart in what they retry, log or raise::

        attempts = Attempts(client, http, method, url, ...)
        while True:
            request = attempts.request(token() if attempts.bearer else None)
            try:
                response = send(request)
            except httpx.TransportError as error:
                step = attempts.failed(error)  # raises ConnectionError when spent
            else:
                step = attempts.answered(response)  # raises the call's error when spent
            if isinstance(step, Done):
                return step.response
            if isinstance(step, Wait):
                sleep(step.seconds)

    Retries follow the client's ``RetryPolicy``. A 401 to a bearer call drops
    the token and sends once more with a new one, outside the retry count:
    the token may have been revoked or have expired early (clock skew); if
    the new one is refused too, that 401 is the answer. One instance serves
    one call.
    """

    def __init__(self, client: BaseClient, http: httpx.Client | httpx.AsyncClient,
                 method: str, url: str, *, idempotent: bool, auth: Auth = None,
                 errors: ErrorFactory = error_from_response, json: Any = None,
                 data: dict[str, str] | None = None, params: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self._client = client
        self._http = http
        self._method = method
        self._url = url
        self._idempotent = idempotent
        self._auth = auth
        self._errors = errors
        self._content: dict[str, Any] = {"json": json, "data": data, "params": params}
        self._headers = headers or {}
        self._retry = 0
        self._renewed = False
        self._token: str | None = None
        self._path = ""

    @property
    def bearer(self) -> bool:
        """Whether each try needs the client-credentials token, which the driver fetches."""
        return self._auth == "bearer"

    def request(self, token: str | None) -> httpx.Request:
        """The next try, authenticated as the call asks (``token`` for a bearer call)."""
        headers = dict(self._headers)
        if self._auth == "bearer":
            headers["Authorization"] = f"Bearer {token}"
        elif self._auth == "basic":
            headers["Authorization"] = self._client._basic_auth()
        self._token = token
        request = self._http.build_request(self._method, self._url, headers=headers,
                                           **self._content)
        self._path = request.url.path
        return request

    def failed(self, error: httpx.TransportError) -> Wait:
        """After a transport failure: wait and try again, or raise ``ConnectionError``."""
        delay = self._client._retry.after_error(self._retry, error, idempotent=self._idempotent)
        if delay is None:
            raise ConnectionError(
                f"could not reach the vault at {self._client.base_url} "
                f"({type(error).__name__}: {error})") from error
        log.info("prefvault: %s %s failed (%s); retry %d in %.2fs", self._method,
                 self._path, type(error).__name__, self._retry + 1, delay)
        self._retry += 1
        return Wait(delay)

    def answered(self, response: httpx.Response) -> Done | Wait | Renew:
        """After an answer: return it, renew the token, wait and try again, or raise."""
        log.debug("prefvault: %s %s -> %d", self._method, self._path, response.status_code)
        if response.is_success:
            return Done(response)
        if response.status_code == 401 and self._auth == "bearer" and not self._renewed:
            release(response)
            self._client._drop_token(self._token)
            self._renewed = True
            return Renew()
        delay = self._client._retry.after_response(self._retry, response,
                                                   idempotent=self._idempotent)
        release(response)
        if delay is None:
            raise self._errors(response)
        log.info("prefvault: %s %s -> %d; retry %d in %.2fs", self._method, self._path,
                 response.status_code, self._retry + 1, delay)
        self._retry += 1
        return Wait(delay)


class BaseClient:
    """Configuration and the I/O-free half of ``VaultClient`` / ``AsyncVaultClient``."""

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        client_secret: str,
        timeout: float,
        max_retries: int,
        fail_closed: bool,
        cache: bool | DecisionCache,
    ) -> None:
        self._base_url = _clean_base_url(base_url)
        self._client_id = _require_text(client_id, "client_id")
        # Held privately and never logged, never shown in repr.
        self.__secret = _require_text(client_secret, "client_secret")
        self._timeout = httpx.Timeout(timeout)
        self._retry = RetryPolicy(max_retries=max_retries)
        self._fail_closed = bool(fail_closed)
        if isinstance(cache, DecisionCache):
            self._cache: DecisionCache | None = cache
        else:
            self._cache = DecisionCache() if cache else None
        self._metadata: dict[str, Any] | None = None
        self._token: _Token | None = None
        self._jwks: dict[str, Any] | None = None

    # -- configuration -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The vault's URL, which must equal the issuer its discovery document names."""
        return self._base_url

    @property
    def client_id(self) -> str:
        """This merchant's OAuth client id (the secret is never exposed)."""
        return self._client_id

    @property
    def fail_closed(self) -> bool:
        """Whether an unreachable vault means "denied" (True) rather than an exception."""
        return self._fail_closed

    @property
    def cache(self) -> DecisionCache | None:
        """The decision cache, or None when caching is off."""
        return self._cache

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base_url={self._base_url!r}, "
                f"client_id={self._client_id!r})")

    def _http_settings(self) -> dict[str, Any]:
        """The httpx client's settings, one set for both clients.

        Redirects are not followed: a call answered with one fails as that
        answer rather than being sent on, credentials and all, somewhere else.
        """
        return {"timeout": self._timeout, "follow_redirects": False,
                "headers": {"User-Agent": USER_AGENT, "Accept": "application/json"}}

    # -- discovery -----------------------------------------------------------------------

    @property
    def _metadata_url(self) -> str:
        return self._base_url + METADATA_PATH

    def _accept_metadata(self, response: httpx.Response) -> dict[str, Any]:
        """Check and keep the discovery document (RFC 8414)."""
        doc = json_body(response)
        if not isinstance(doc, dict):
            raise VaultError("the discovery document is not a JSON object")
        # RFC 8414 §3.3: the issuer must be the URL asked, or a mix-up is possible.
        if doc.get("issuer") != self._base_url:
            raise VaultError(f"the vault at {self._base_url} names another issuer "
                             f"({doc.get('issuer')!r}); check base_url")
        for name in ("authorization_endpoint", "token_endpoint"):
            if not isinstance(doc.get(name), str):
                raise VaultError(f"the discovery document lacks {name}")
        self._metadata = doc
        return doc

    def _endpoint(self, name: str) -> str:
        assert self._metadata is not None, "discovery must run first"
        value = self._metadata.get(name)
        if not isinstance(value, str):
            raise VaultError(f"the vault does not offer {name}")
        return value

    # -- client authentication and the client-credentials token --------------------------

    def _basic_auth(self) -> str:
        """``client_secret_basic`` (RFC 6749 §2.3.1: both parts form-encoded first)."""
        pair = f"{quote(self._client_id, safe='')}:{quote(self.__secret, safe='')}"
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")

    def _current_token(self) -> str | None:
        token = self._token
        if token is not None and time.monotonic() < token.renew_at:
            return token.value
        return None

    def _accept_token(self, response: httpx.Response) -> str:
        doc = json_body(response)
        value = doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(value, str) or not value:
            raise VaultError("the token endpoint answered without an access_token")
        expires_in = doc.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 0.0
        self._token = _Token(value, time.monotonic() + lifetime - TOKEN_RENEW_EARLY)
        log.debug("prefvault: new client-credentials token, valid %.0fs", lifetime)
        return value

    def _drop_token(self, value: str | None) -> None:
        """Forget a token the vault refused (unless another call already replaced it)."""
        if self._token is not None and (value is None or self._token.value == value):
            self._token = None

    # -- the JSON API --------------------------------------------------------------------

    def _api_url(self, path: str) -> str:
        return f"{self._base_url}{API_PREFIX}{path}"

    def _subscription_url(self, subject: str) -> str:
        return self._api_url("/subscriptions/" + quote(_require_text(subject, "subject"),
                                                        safe=""))

    @staticmethod
    def _question(subject: str, channel: str, purpose: str,
                  at: datetime | None) -> dict[str, Any]:
        body: dict[str, Any] = {"subject": _require_text(subject, "subject"),
                                "channel": str(_require_text(channel, "channel")),
                                "purpose": str(_require_text(purpose, "purpose"))}
        if at is not None:
            body["at"] = format_moment(at)
        return body

    def _cached(self, subject: str, channel: str, purpose: str,
                at: datetime | None) -> Decision | None:
        if self._cache is None or at is not None:
            return None
        return self._cache.get(subject, channel, purpose)

    def _decided(self, response: httpx.Response, at: datetime | None) -> Decision:
        decision = Decision.from_json(json_body(response))
        if self._cache is not None and at is None:
            self._cache.put(decision)
        return decision

    def _unreachable(self, error: VaultError, subject: str, channel: str,
                     purpose: str) -> Decision:
        log.warning("prefvault: vault unreachable (%s); denying %s/%s (fail closed)",
                    error, channel, purpose)
        return Decision.unreachable(subject, str(channel), str(purpose))

    @staticmethod
    def _unreachable_batch(error: VaultError, chunk: list[str]) -> list[BatchResult]:
        log.warning("prefvault: vault unreachable (%s); denying a batch of %d "
                    "(fail closed)", error, len(chunk))
        return [BatchResult.unreachable(subject) for subject in chunk]

    @staticmethod
    def _batch_size(batch_size: int) -> int:
        if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        return batch_size

    @staticmethod
    def _batch_question(chunk: list[str], channel: str, purpose: str,
                        at: datetime | None) -> dict[str, Any]:
        for subject in chunk:
            if not isinstance(subject, str) or not subject:
                raise TypeError(f"subjects must be non-empty strings, not {subject!r}")
        body: dict[str, Any] = {"channel": str(_require_text(channel, "channel")),
                                "purpose": str(_require_text(purpose, "purpose")),
                                "subjects": chunk}
        if at is not None:
            body["at"] = format_moment(at)
        return body

    @staticmethod
    def _batch_answers(chunk: list[str], response: httpx.Response) -> list[BatchResult]:
        """The batch's results, checked to answer exactly ``chunk``, in its order.

        A result attributed to the wrong person would be a consent breach, so an
        answer that does not line up with the question is refused outright.
        """
        doc = json_body(response)
        results = doc.get("results") if isinstance(doc, dict) else None
        if not isinstance(results, list) or len(results) != len(chunk):
            raise VaultError("the batch answer does not match the question "
                             f"({len(chunk)} subjects asked)")
        answers = [BatchResult.from_json(item) for item in results]
        for asked, answer in zip(chunk, answers, strict=True):
            if answer.subject != asked:
                raise VaultError("the batch answer is out of order; refusing to use it")
        return answers

    @staticmethod
    def _first_page(page_size: int) -> dict[str, Any]:
        """The query for the first page of ``GET /subscriptions``."""
        if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        return {"limit": page_size}

    @staticmethod
    def _page(response: httpx.Response,
              query: dict[str, Any]) -> tuple[list[Subscription], dict[str, Any] | None]:
        """A page's subscriptions, and the query for the next page (None after the last)."""
        doc = json_body(response)
        items = doc.get("items") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise VaultError("the subscriptions page has no items")
        cursor = doc.get("next_cursor")
        following = {**query, "cursor": cursor} if isinstance(cursor, str) and cursor else None
        return [Subscription.from_json(i) for i in items], following

    # -- consent receipts ----------------------------------------------------------------

    def _receipt_url(self, subject: str) -> str:
        return self._subscription_url(subject) + "/receipt"

    def _accept_jwks(self, response: httpx.Response) -> dict[str, Any]:
        """Keep the vault's public keys (its discovery document's ``jwks_uri``)."""
        doc = json_body(response)
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise VaultError("the vault's JWKS is not a key set")
        self._jwks = doc
        return doc

    @staticmethod
    def _receipt_token(response: httpx.Response) -> str:
        doc = json_body(response)
        token = doc.get("receipt") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise VaultError("the vault's answer carries no receipt")
        return token

    def _verify_receipt(self, token: str, subject: str, jwks: dict[str, Any]) -> Receipt:
        assert self._metadata is not None, "discovery must run first"
        return verify_receipt(token, jwks, issuer=self._metadata.get("issuer"), subject=subject)

    def _receipt_or_none(self, token: str, subject: str) -> Receipt | None:
        """The receipt verified with the keys already held, or None to fetch them anew.

        A key the vault rotated in since they were read is not among them,
        so a failure with cached keys is retried once with fresh ones.
        """
        if self._jwks is None:
            return None
        try:
            return self._verify_receipt(token, subject, self._jwks)
        except SignatureVerificationError:
            return None

    @staticmethod
    def _contact(subject: str, channel: str, purpose: str, decision_id: str | None,
                 at: datetime | None) -> dict[str, Any]:
        body = BaseClient._question(subject, channel, purpose, at)
        if decision_id is not None:
            body["decision_id"] = _require_text(decision_id, "decision_id")
        return body

    # -- the connect flow ----------------------------------------------------------------

    def _connect_request(self, redirect_uri: str, scopes: str | Iterable[str],
                         state: str | None, nonce: str | None) -> ConnectRequest:
        redirect_uri = _require_text(redirect_uri, "redirect_uri")
        verifier = new_code_verifier()
        state = state or new_state()
        nonce = nonce or new_nonce()
        params = {
            "response_type": "code",
            "client_id": self._client_id,
            "redirect_uri": redirect_uri,
            "scope": _scope_string(scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": s256_challenge(verifier),
            "code_challenge_method": "S256",
        }
        endpoint = self._endpoint("authorization_endpoint")
        url = endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)
        return ConnectRequest(url=url, code_verifier=verifier, state=state, nonce=nonce,
                              redirect_uri=redirect_uri)

    def _read_callback(self, callback_url_or_code: str, state: str | None,
                       redirect_uri: str | None) -> tuple[str, str]:
        """The code and redirect URI from the callback, after checking it is ours.

        ``state`` is compared first, before even an error is believed: a
        forged callback must not be able to tell the merchant anything.
        """
        value = _require_text(callback_url_or_code, "callback_url_or_code").strip()
        if "?" not in value and "://" not in value and not value.startswith("/"):
            if redirect_uri is None:
                raise ValueError("pass redirect_uri together with a bare code (or pass the "
                                 "whole callback URL, which also lets the SDK check state)")
            return value, redirect_uri
        if not state:
            raise ValueError("pass the state you stored when the flow started")
        parts = urlsplit(value)
        params = parse_qs(parts.query, keep_blank_values=True)
        received = _single(params, "state") or ""
        if not hmac.compare_digest(received.encode(), state.encode()):
            raise StateMismatch("the callback's state does not match this session's; "
                                "do not use its code", error="state_mismatch")
        issuer = _single(params, "iss")
        if issuer is not None and self._metadata is not None \
                and issuer != self._metadata.get("issuer"):
            raise ConnectError("the callback comes from another issuer", error="invalid_issuer")
        error = _single(params, "error")
        if error is not None:
            description = _single(params, "error_description") or error
            if error == "access_denied":
                raise ConnectDenied(f"the person declined: {description}", error=error)
            raise ConnectError(f"the vault refused the request: {description}", error=error)
        code = _single(params, "code")
        if not code:
            raise ConnectError("the callback carries no code", error="invalid_request")
        if redirect_uri is None:
            if not parts.scheme or not parts.netloc:
                raise ValueError("pass redirect_uri: the callback URL is not absolute")
            redirect_uri = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return code, redirect_uri

    @staticmethod
    def _code_exchange(code: str, code_verifier: str, redirect_uri: str) -> dict[str, str]:
        return {"grant_type": "authorization_code", "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": _require_text(code_verifier, "code_verifier")}

    def _connected(self, response: httpx.Response, nonce: str | None) -> Subscription:
        doc = json_body(response)
        if not isinstance(doc, dict):
            raise VaultError("the token endpoint's answer is not an object")
        subscription = Subscription.from_token_response(doc)
        id_token = subscription.tokens.id_token if subscription.tokens else None
        if id_token:
            self._check_id_token(id_token, subscription.subject, nonce)
        return subscription

    def _check_id_token(self, id_token: str, subject: str, nonce: str | None) -> None:
        """Check the id_token's claims (OIDC Core §3.1.3.7).

        It came straight from the token endpoint over the connection the SDK
        opened, so TLS stands in for the signature check (§3.1.3.7 item 6),
        which keeps the SDK free of a JOSE library. Issuer, audience, subject
        and nonce are still checked: they bind it to this flow.
        """
        segments = id_token.split(".")
        if len(segments) != 3:
            raise ConnectError("the id_token is malformed", error="invalid_token")
        claims = _b64url_json(segments[1])
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        problems = []
        if self._metadata is not None and claims.get("iss") != self._metadata.get("issuer"):
            problems.append("issuer")
        if self._client_id not in audiences:
            problems.append("audience")
        if claims.get("sub") != subject:
            problems.append("subject")
        if nonce is not None and not hmac.compare_digest(
                str(claims.get("nonce", "")).encode(), nonce.encode()):
            problems.append("nonce")
        if problems:
            raise ConnectError(f"the id_token does not match this flow ({', '.join(problems)})",
                               error="invalid_token")

    # -- webhooks and the cache ------------------------------------------------------------

    def handle_event(self, event: Event) -> None:
        """React to a verified webhook: forget cached answers about its subject.

        Any event about a person (a permission changed, a revocation, a new
        grant) may change what the vault would answer, so the SDK drops every
        cached decision for that subject rather than guess which still hold.
        """
        if not isinstance(event, Event):
            raise TypeError("handle_event takes an Event from prefvault_sdk.webhooks.verify")
        if self._cache is not None:
            dropped = self._cache.forget(event.subject)
            log.debug("prefvault: %s dropped %d cached decision(s)", event.type, dropped)

    def clear_cache(self) -> None:
        """Forget every cached decision (e.g. after missing webhooks)."""
        if self._cache is not None:
            self._cache.clear()


__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_PAGE_SIZE",
    "TOKEN_RENEW_EARLY",
    "Attempts",
    "Auth",
    "BaseClient",
    "Done",
    "ErrorFactory",
    "Renew",
    "Wait",
    "connect_errors",
    "json_body",
    "release",
    "token_errors",
]
