"""Rate limits: login per account and per address, token and decision endpoints.

One ``Limiter`` per app, counting in Redis when ``VAULT_REDIS_URL`` is set
(shared by every worker and host) and in the process's memory otherwise
(each worker counts on its own: fine for one machine, documented for more).
Counters are keyed by pseudonymous values only: an HMAC of the login address
through the blind index, a hash of the bearer token, the client id — never an
address or a token in clear, since Redis is outside the encrypted store.

A limit that is hit answers 429 with ``Retry-After``; the API and the OAuth
endpoints in problem+json, the web pages with the form and a message.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from werkzeug.exceptions import TooManyRequests

from vault.config import Settings

log = logging.getLogger(__name__)

#: the blueprints of the merchant and auditor API, limited per access token
API_BLUEPRINTS = ("decisions", "contacts", "subscriptions", "audit")


class SweptMemoryStorage(MemoryStorage):
    """``memory://`` counting that sweeps expired entries at most once a second.

    limits' own memory storage arms a fresh 10 ms timer thread on every hit
    once the last one has run, so a busy worker starts a thread every few
    requests and the request that starts it waits for it to be scheduled.
    Expired entries never count (each check compares times), so sweeping
    less often only keeps a second's worth more of them in memory.
    """

    STORAGE_SCHEME = ["prefvault-memory"]
    SWEEP_SECONDS = 1.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False,
                 **options: str) -> None:
        self._next_sweep = 0.0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    def _MemoryStorage__schedule_expiry(self) -> None:  # the base class's private hook
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
            MemoryStorage._MemoryStorage__schedule_expiry(self)  # type: ignore[attr-defined]


def client_key() -> str:
    """Who is calling an API: the bearer token's hash, else the client id, else the address."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer " and len(header) > 7:
        return "token:" + hashlib.sha256(header[7:].encode()).hexdigest()[:32]
    client_id = request.authorization.username if request.authorization else None
    client_id = client_id or request.form.get("client_id")
    if client_id:
        return "client:" + hashlib.sha256(client_id.encode()).hexdigest()[:32]
    return "addr:" + get_remote_address()


def build_limiter(app: Flask, settings: Settings) -> Limiter:
    storage = settings.redis_url or "prefvault-memory://"
    return Limiter(
        get_remote_address,
        app=app,
        storage_uri=storage,
        strategy="moving-window",
        headers_enabled=True,
        key_prefix="prefvault",
        # A vault whose limit store is down still answers: limits are a shield
        # against abuse, not a rule a person set.
        swallow_errors=True,
        in_memory_fallback_enabled=bool(settings.redis_url),
    )


def _login_account_key() -> str:
    """The blind index of the address being tried: per account, nothing in clear."""
    from vault.crypto.blind_index import email_index
    from vault.extensions import runtime

    address = request.form.get("email", "")[:320].strip().lower()
    digest = email_index(runtime().keyring.blind_index_key, address).hex()[:32]
    return "login:" + digest


def _login_address_key() -> str:
    return "login-addr:" + get_remote_address()


def _signup_key() -> str:
    """Sign-ups per address, successful or not: address probing and mass sign-up alike."""
    return "signup-addr:" + get_remote_address()


def _person_key() -> str:
    """The logged-in person, for re-entered passwords (deleting the account)."""
    from vault.ui.session import current_person_id

    return "person:" + (current_person_id() or get_remote_address())


def _failed(response: object) -> bool:
    return getattr(response, "status_code", 200) >= 400


def api_guard(limiter: Limiter, value: str) -> Callable[[], None]:
    """The per-token limit in front of every API route, counted with ``limits`` directly.

    flask-limiter's per-route decorator resolves exemptions, scopes and
    response headers on every call, which cost about a sixth of a decision's
    CPU; the API has one limit per token, so this checks just that, in the
    limiter's storage (Redis, or the in-memory fallback while Redis is down).

    It counts with a sliding window counter, not the moving window of the
    login limits: a moving window keeps one timestamp per request for the
    whole window (up to the limit, 120,000 a minute by default) and inserts
    each new one at the front of that list, so its memory and the cost of a
    hit grow with the traffic. Two counters per token and window cost the
    same at any rate; the count is the current window's plus the previous
    one's weighted by how much of it is still inside the last minute, which
    differs from the exact count only as far as the previous window's
    requests were unevenly spread over it. A limit store that fails lets the request through, as
    the rest of the limits do.
    """
    items: list[RateLimitItem] = parse_many(value)
    counters: list[SlidingWindowCounterRateLimiter] = []

    def counter() -> SlidingWindowCounterRateLimiter:
        storage = limiter.limiter.storage
        if not counters or counters[-1].storage is not storage:
            counters[:] = [SlidingWindowCounterRateLimiter(storage)]
        return counters[-1]

    def guard() -> None:
        key = client_key()
        try:
            strategy = counter()
            for item in items:
                if not strategy.hit(item, "prefvault-api", key):
                    reset = strategy.get_window_stats(item, "prefvault-api", key).reset_time
                    raise TooManyRequests(retry_after=max(1, math.ceil(reset - time.time())))
        except TooManyRequests:
            raise
        except Exception:
            log.exception("rate limit storage failed; request let through")

    return guard


def apply_limits(app: Flask, limiter: Limiter, settings: Settings) -> None:
    """Put the configured limits on the endpoints an attacker would hammer.

    Login attempts count only when they fail, per account and per address, so
    a person who types their password right is never locked out by volume; a
    password re-entered to change it or to delete the account counts the same
    way, per person. Every sign-up counts, per address.
    """
    limited: set[str] = set()

    def limit(endpoint: str, value: str, key: object, **options: object) -> None:
        limited.add(endpoint)
        view = app.view_functions[endpoint]
        app.view_functions[endpoint] = limiter.limit(value, key_func=key, **options)(view)

    limit("ui.login", settings.rate_limit_login_account, _login_account_key,
          methods=["POST"], deduct_when=_failed)
    limit("ui.login", settings.rate_limit_login_address, _login_address_key,
          methods=["POST"], deduct_when=_failed)
    limit("ui.signup", settings.rate_limit_signup, _signup_key, methods=["POST"])
    limit("ui.change_password", settings.rate_limit_login_account, _person_key,
          deduct_when=_failed)
    limit("ui.my_data_delete_confirmed", settings.rate_limit_login_account, _person_key,
          deduct_when=_failed)
    limit("oauth.issue_token", settings.rate_limit_token, client_key)
    # flask-limiter looks at every request before its view; only these need it.
    limiter.request_filter(lambda: request.endpoint not in limited)
    guard = api_guard(limiter, settings.rate_limit_api)
    for name in API_BLUEPRINTS:
        # First of the blueprint's own hooks: a refused request reads nothing.
        app.before_request_funcs.setdefault(name, []).insert(0, guard)
