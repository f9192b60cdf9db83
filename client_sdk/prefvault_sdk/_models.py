"""The values the SDK hands back: frozen dataclasses with aware datetimes.

Answers are immutable so they can be cached, shared between threads and
logged without being changed behind the caller's back. Fields that hold a
person's data or a credential (``Decision.reach``, tokens, the PKCE
verifier) are left out of ``repr`` so a merchant's logs do not collect them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from ._errors import VaultError


class Channel(StrEnum):
    """How a merchant may reach a person (the vault's vocabulary)."""

    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    POST = "post"
    PUSH = "push"


class Purpose(StrEnum):
    """Why a merchant wants to reach a person (the vault's vocabulary)."""

    ORDER_UPDATES = "order_updates"
    SERVICE = "service"
    ABANDONED_CART = "abandoned_cart"
    OFFERS = "offers"
    PERSONALISED_OFFERS = "personalised_offers"
    SURVEYS = "surveys"
    PARTNER_OFFERS = "partner_offers"


class Reason(StrEnum):
    """Why a decision came out as it did; ``VAULT_UNREACHABLE`` is the SDK's own."""

    ALLOWED = "allowed"
    UNKNOWN_SUBJECT = "unknown_subject"
    ERASED = "erased"
    REVOKED = "revoked"
    BLOCKED_BY_PERSON = "blocked_by_person"
    NOT_GRANTED = "not_granted"
    EXPIRED = "expired"
    QUIET_HOURS = "quiet_hours"
    FREQUENCY_CAP = "frequency_cap"
    VAULT_UNREACHABLE = "vault_unreachable"


# -- parsing helpers: a malformed answer is a VaultError, never a KeyError ---------------


def _malformed(what: str) -> VaultError:
    return VaultError(f"the vault's answer is malformed: {what}")


def _str(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise _malformed(f"{key!r} is not a string")
    return value


def _opt_str(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise _malformed(f"{key!r} is not a string")
    return value


def _bool(doc: Mapping[str, Any], key: str) -> bool:
    value = doc.get(key)
    if not isinstance(value, bool):
        raise _malformed(f"{key!r} is not a boolean")
    return value


def _strings(doc: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _malformed(f"{key!r} is not a list of strings")
    return tuple(value)


def parse_datetime(value: object, key: str = "datetime") -> datetime:
    """An ISO 8601 timestamp as an aware datetime (naive ones are taken as UTC)."""
    if not isinstance(value, str):
        raise _malformed(f"{key!r} is not a timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _malformed(f"{key!r} is not a timestamp") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _opt_datetime(doc: Mapping[str, Any], key: str) -> datetime | None:
    value = doc.get(key)
    return None if value is None else parse_datetime(value, key)


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _malformed(f"{what} is not an object")
    return value


def format_moment(at: datetime) -> str:
    """An aware datetime for the wire; a naive one is refused (whose 9 o'clock would it be?)."""
    if not isinstance(at, datetime):
        raise TypeError("at must be a datetime")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be an aware datetime (give it a tzinfo, e.g. UTC)")
    return at.isoformat()


# -- decisions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """The vault's answer to "may I reach this person over this channel for this purpose?".

    Truthy exactly when ``allowed``, so ``if client.may_contact(...):`` reads
    as it should. ``reach`` (the address to use, when the grant shares it) is
    kept out of ``repr`` because it is personal data. ``decision_id`` is None
    only for the SDK's own fail-closed answer (``reason == "vault_unreachable"``).
    """

    decision_id: str | None
    subject: str
    channel: str
    purpose: str
    allowed: bool
    reason: str
    reach: str | None = field(repr=False)
    alternatives: tuple[str, ...]
    next_allowed_at: datetime | None
    valid_until: datetime

    def __bool__(self) -> bool:
        return self.allowed

    @classmethod
    def from_json(cls, doc: object) -> Decision:
        """Build from the ``POST /decisions`` answer."""
        d = _object(doc, "decision")
        return cls(
            decision_id=_str(d, "decision_id"), subject=_str(d, "subject"),
            channel=_str(d, "channel"), purpose=_str(d, "purpose"),
            allowed=_bool(d, "allowed"), reason=_str(d, "reason"),
            reach=_opt_str(d, "reach"), alternatives=_strings(d, "alternatives"),
            next_allowed_at=_opt_datetime(d, "next_allowed_at"),
            valid_until=parse_datetime(d.get("valid_until"), "valid_until"),
        )

    @classmethod
    def unreachable(cls, subject: str, channel: str, purpose: str) -> Decision:
        """The fail-closed answer: denied, not cacheable, traceable to no vault decision."""
        return cls(decision_id=None, subject=subject, channel=channel, purpose=purpose,
                   allowed=False, reason=Reason.VAULT_UNREACHABLE.value, reach=None,
                   alternatives=(), next_allowed_at=None, valid_until=datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One subject's answer in a campaign check (``reachable``); truthy when allowed."""

    subject: str
    allowed: bool
    reason: str
    next_allowed_at: datetime | None

    def __bool__(self) -> bool:
        return self.allowed

    @classmethod
    def from_json(cls, doc: object) -> BatchResult:
        """Build from one item of the ``POST /decisions/batch`` answer."""
        d = _object(doc, "batch result")
        return cls(subject=_str(d, "subject"), allowed=_bool(d, "allowed"),
                   reason=_str(d, "reason"), next_allowed_at=_opt_datetime(d, "next_allowed_at"))

    @classmethod
    def unreachable(cls, subject: str) -> BatchResult:
        """The fail-closed answer for one subject of a batch the vault could not answer."""
        return cls(subject, False, Reason.VAULT_UNREACHABLE.value, None)


@dataclass(frozen=True, slots=True)
class ContactReceipt:
    """The vault's record of a reported contact; ``violation`` if it was not allowed then."""

    contact_id: str
    subject: str
    channel: str
    purpose: str
    occurred_at: datetime
    allowed: bool
    reason: str
    violation: bool

    @classmethod
    def from_json(cls, doc: object) -> ContactReceipt:
        """Build from the ``POST /contacts`` answer."""
        d = _object(doc, "contact")
        return cls(contact_id=_str(d, "contact_id"), subject=_str(d, "subject"),
                   channel=_str(d, "channel"), purpose=_str(d, "purpose"),
                   occurred_at=parse_datetime(d.get("occurred_at"), "occurred_at"),
                   allowed=_bool(d, "allowed"), reason=_str(d, "reason"),
                   violation=_bool(d, "violation"))


# -- subscriptions -----------------------------------------------------------------------


def _clock_time(value: object) -> time:
    if not isinstance(value, str):
        raise _malformed("quiet hours are not HH:MM")
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise _malformed("quiet hours are not HH:MM") from None


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window in the person's time zone; ``start`` after ``end`` spans midnight."""

    start: time
    end: time


@dataclass(frozen=True, slots=True)
class Permission:
    """One (channel, purpose) term of a subscription, with the person's limits on it."""

    channel: str
    purpose: str
    allowed: bool
    max_per_week: int | None = None
    quiet_hours: QuietHours | None = None
    expires_at: datetime | None = None

    @property
    def scope(self) -> str:
        """The OAuth scope that grants this pair, as ``Subscription.scopes`` lists it."""
        return f"contact:{self.channel}:{self.purpose}"

    @classmethod
    def from_json(cls, doc: object) -> Permission:
        """Build from one item of a subscription's ``permissions``."""
        d = _object(doc, "permission")
        cap = d.get("max_per_week")
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool)):
            raise _malformed("'max_per_week' is not an integer")
        quiet_doc = d.get("quiet_hours")
        quiet = None
        if quiet_doc is not None:
            q = _object(quiet_doc, "quiet_hours")
            quiet = QuietHours(_clock_time(q.get("start")), _clock_time(q.get("end")))
        return cls(channel=_str(d, "channel"), purpose=_str(d, "purpose"),
                   allowed=_bool(d, "allowed"), max_per_week=cap, quiet_hours=quiet,
                   expires_at=_opt_datetime(d, "expires_at"))


class GrantTokens:
    """The person-grant tokens from completing a connect flow.

    Most merchants never need them: decisions and subscriptions use the
    client-credentials token. They read the profile fields the person shared
    through ``userinfo``. ``repr`` never shows their values.
    """

    __slots__ = ("access_token", "expires_at", "id_token", "refresh_token", "scope")

    def __init__(self, *, access_token: str, refresh_token: str | None, id_token: str | None,
                 expires_at: datetime | None, scope: str) -> None:
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.id_token = id_token
        self.expires_at = expires_at
        self.scope = scope

    def __repr__(self) -> str:
        return f"GrantTokens(scope={self.scope!r}, expires_at={self.expires_at!r}, ...)"


@dataclass(frozen=True, slots=True)
class Subscription:
    """A person's subscription to this merchant, known by its pairwise ``subject``.

    ``scopes`` are what the person granted (``contact:email:offers``,
    ``profile:email``...). From ``subscription()``/``subscriptions()`` every
    field is filled in; from ``complete_connect`` the detailed
    ``permissions`` are ``None`` (not known yet: ask ``subscription(subject)``)
    and ``tokens`` holds the person-grant tokens.
    """

    subject: str
    scopes: tuple[str, ...]
    status: str = "active"
    permissions: tuple[Permission, ...] | None = None
    shared_fields: tuple[str, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    tokens: GrantTokens | None = field(default=None, repr=False, compare=False)

    @property
    def active(self) -> bool:
        """False once the person revoked it or erased their account: stop contacting."""
        return self.status == "active"

    @classmethod
    def from_json(cls, doc: object) -> Subscription:
        """Build from ``GET /subscriptions[/{subject}]``; ``scopes`` derived from the terms."""
        d = _object(doc, "subscription")
        raw_permissions = d.get("permissions") or []
        if not isinstance(raw_permissions, list):
            raise _malformed("'permissions' is not a list")
        permissions = tuple(Permission.from_json(p) for p in raw_permissions)
        shared = _strings(d, "shared_fields")
        scopes = tuple(p.scope for p in permissions if p.allowed) + tuple(
            f"profile:{f}" for f in shared)
        return cls(subject=_str(d, "subject"), scopes=scopes, status=_str(d, "status"),
                   permissions=permissions, shared_fields=shared,
                   created_at=_opt_datetime(d, "created_at"),
                   updated_at=_opt_datetime(d, "updated_at"))

    @classmethod
    def from_token_response(cls, doc: Mapping[str, Any]) -> Subscription:
        """Build from the token endpoint's answer to an authorization code."""
        subject = doc.get("subject")
        access_token = doc.get("access_token")
        if not isinstance(subject, str) or not subject:
            raise _malformed("the token response names no subject")
        if not isinstance(access_token, str):
            raise _malformed("the token response has no access_token")
        scope = doc.get("scope") if isinstance(doc.get("scope"), str) else ""
        scopes = tuple(str(scope).split())
        expires_in = doc.get("expires_in")
        expires_at = (datetime.now(UTC) + timedelta(seconds=expires_in)
                      if isinstance(expires_in, int | float) else None)
        tokens = GrantTokens(access_token=access_token,
                             refresh_token=_opt_str(doc, "refresh_token"),
                             id_token=_opt_str(doc, "id_token"), expires_at=expires_at,
                             scope=str(scope))
        shared = tuple(s.split(":", 1)[1] for s in scopes if s.startswith("profile:"))
        return cls(subject=subject, scopes=scopes, status="active", permissions=None,
                   shared_fields=shared, tokens=tokens)


# -- the connect flow --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """Where to send the person, and what to keep (server-side) to finish the flow.

    Store ``code_verifier``, ``state`` and ``nonce`` in the person's session;
    never send the verifier to the browser. It is kept out of ``repr``.
    """

    url: str
    code_verifier: str = field(repr=False)
    state: str
    nonce: str = field(repr=False)
    redirect_uri: str


# -- webhooks ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """A verified webhook event: something changed for the person known as ``subject``.

    Deduplicate by ``id``: the vault delivers at least once.
    """

    id: str
    type: str
    created: datetime
    subject: str
    data: Mapping[str, Any] = field(compare=False)

    @classmethod
    def from_body(cls, body: bytes) -> Event:
        """Parse a webhook body ``{id, type, created, subject, data}``."""
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _malformed("the webhook body is not JSON") from None
        d = _object(doc, "webhook body")
        created = d.get("created")
        if not isinstance(created, int) or isinstance(created, bool):
            raise _malformed("'created' is not a Unix time")
        data = d.get("data", {})
        return cls(id=_str(d, "id"), type=_str(d, "type"),
                   created=datetime.fromtimestamp(created, UTC), subject=_str(d, "subject"),
                   data=dict(_object(data, "data")))


__all__ = [
    "BatchResult",
    "Channel",
    "ConnectRequest",
    "ContactReceipt",
    "Decision",
    "Event",
    "GrantTokens",
    "Permission",
    "Purpose",
    "QuietHours",
    "Reason",
    "Subscription",
    "format_moment",
    "parse_datetime",
]
