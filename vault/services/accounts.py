"""Person accounts: sign up, log in, the sealed profile, erasure.

The login email is never stored in clear: it is found through its blind
index and kept, sealed, in the profile like every other field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from vault.clock import Clock
from vault.crypto.blind_index import email_index
from vault.crypto.envelope import DataKey
from vault.crypto.passwords import Passwords
from vault.errors import AuthenticationFailed, Conflict, NotFound, ValidationFailed
from vault.models import (
    ContactPermission,
    GlobalRules,
    Person,
    Profile,
    Subscription,
)
from vault.models.subscription import ACTIVE, ERASED
from vault.models.types import new_id
from vault.services import terms
from vault.services.audit import AuditTag, record_event
from vault.services.decisions import DEFAULT_TIME_ZONE
from vault.services.keys import DataKeys
from vault.services.outbox import queue_webhook
from vault.services.rules import create_default_rules
from vault.services.validation import (
    clean_channel_order,
    clean_email,
    clean_language,
    clean_password,
    clean_phone,
    clean_text,
    clean_time_zone,
    reject_unknown,
)
from vault.vocabulary import CHANNELS

log = logging.getLogger(__name__)

_TABLE = "profile"


@dataclass(frozen=True)
class PersonProfile:
    """A person's profile in clear, as the person and their grants see it."""

    email: str
    name: str | None = None
    phone: str | None = None
    address: str | None = None
    language: str | None = None
    interests: str | None = None
    time_zone: str = DEFAULT_TIME_ZONE
    channel_order: tuple[str, ...] = field(default=CHANNELS)

    def to_json(self) -> dict[str, object]:
        doc = asdict(self)
        doc["channel_order"] = list(self.channel_order)
        return doc


EDITABLE_FIELDS = ("email", "name", "phone", "address", "language", "interests", "time_zone",
                   "channel_order")
_CLEARABLE = ("name", "phone", "address", "language", "interests")
#: the longest text each free-text field may hold (forms show it as ``maxlength``)
TEXT_LIMITS = {"name": 200, "address": 500, "interests": 2000}


def _clean_profile_value(name: str, value: object) -> object:
    if value is None:
        if name not in _CLEARABLE:
            raise ValidationFailed(f"{name} cannot be removed", field=name)
        return None
    match name:
        case "email":
            return clean_email(value)
        case "name":
            return clean_text(value, field="name", max_length=TEXT_LIMITS["name"])
        case "phone":
            return clean_phone(value)
        case "address":
            return clean_text(value, field="address", max_length=TEXT_LIMITS["address"],
                              multiline=True)
        case "language":
            return clean_language(value)
        case "interests":
            return clean_text(value, field="interests", max_length=TEXT_LIMITS["interests"],
                              multiline=True)
        case "time_zone":
            return clean_time_zone(value)
        case "channel_order":
            return clean_channel_order(value)
    raise ValidationFailed(f"unknown field {name}", field=name)


def profile_errors(changes: Mapping[str, object]) -> dict[str, ValidationFailed]:
    """Every invalid field of ``changes`` with its error; checks only, writes nothing.

    ``sign_up`` and ``update_profile`` stop at the first bad field; a form
    uses this to mark every bad field at once.
    """
    errors: dict[str, ValidationFailed] = {}
    for name, value in changes.items():
        try:
            if name not in EDITABLE_FIELDS:
                raise ValidationFailed(f"unknown field {name}", field=name)
            _clean_profile_value(name, value)
        except ValidationFailed as exc:
            errors[name] = exc
    return errors


def _encode(value: object) -> bytes:
    if isinstance(value, tuple):
        return json.dumps(list(value)).encode()
    return str(value).encode("utf-8")


def _seal_field(key: DataKey, person_id: str, name: str, value: object) -> bytes | None:
    if value is None:
        return None
    return key.encrypt(_encode(value), table=_TABLE, row_id=person_id, field=name)


def _flush_email_index(session: Session) -> None:
    """Write a new email index now; losing a race for the address is a ``Conflict``.

    The lookup before it cannot see another transaction's uncommitted account,
    so two requests for one address both pass it and the unique index decides.
    """
    try:
        session.flush()
    except IntegrityError as exc:
        if "email_index" not in str(exc.orig):
            raise
        raise Conflict("an account with this email address already exists",
                       field="email") from None


def open_profile(key: DataKey, row: Profile) -> PersonProfile:
    """Decrypt every sealed field of a profile row."""

    def text(name: str) -> str | None:
        sealed = getattr(row, name)
        if sealed is None:
            return None
        return key.decrypt(sealed, table=_TABLE, row_id=row.person_id, field=name).decode()

    order = text("channel_order")
    return PersonProfile(
        email=text("email") or "",
        name=text("name"),
        phone=text("phone"),
        address=text("address"),
        language=text("language"),
        interests=text("interests"),
        time_zone=text("time_zone") or DEFAULT_TIME_ZONE,
        channel_order=tuple(json.loads(order)) if order else CHANNELS,
    )


class AccountService:
    """Everything a person does to their own account, behind any interface."""

    def __init__(
        self, *, data_keys: DataKeys, blind_index_key: bytes, passwords: Passwords, clock: Clock
    ) -> None:
        self.data_keys = data_keys
        self.blind_index_key = blind_index_key
        self.passwords = passwords
        self.clock = clock

    # -- sign up and log in ---------------------------------------------------------
    def sign_up(
        self,
        session: Session,
        *,
        email: str,
        password: str,
        profile: Mapping[str, object] | None = None,
    ) -> str:
        """Create an account with its data key, profile and empty rules; returns the id."""
        address = clean_email(email)
        secret = clean_password(password)
        extra = dict(profile or {})
        reject_unknown(extra.keys(), [f for f in EDITABLE_FIELDS if f != "email"])
        cleaned = {name: _clean_profile_value(name, value) for name, value in extra.items()}
        index = email_index(self.blind_index_key, address)
        if session.exec(select(Person.id).where(Person.email_index == index)).first():
            raise Conflict("an account with this email address already exists", field="email")
        now = self.clock.now()
        person_id = new_id()
        session.add(Person(id=person_id, email_index=index,
                           password_hash=self.passwords.hash(secret), created_at=now))
        _flush_email_index(session)
        key = self.data_keys.create(session, person_id, clock=self.clock)
        values: dict[str, object] = {"email": address, "time_zone": DEFAULT_TIME_ZONE,
                                     "channel_order": CHANNELS, **cleaned}
        session.add(Profile(person_id=person_id, updated_at=now,
                            **{n: _seal_field(key, person_id, n, v) for n, v in values.items()}))
        create_default_rules(session, person_id, key, clock=self.clock)
        record_event(session, clock=self.clock, tag=AuditTag.PERSON_SIGNED_UP,
                     actor=f"person:{person_id}", person_ref=person_id,
                     data={"fields": sorted(values)})
        log.info("account created person=%s", person_id)
        return person_id

    def authenticate(self, session: Session, *, email: str, password: str) -> str:
        """The person id for these credentials, or ``AuthenticationFailed``.

        The message never says whether the address is known, and the work
        done is the same either way.
        """
        if not isinstance(email, str) or not isinstance(password, str):
            raise AuthenticationFailed("email address or password is incorrect")
        index = email_index(self.blind_index_key, email)
        person = session.exec(select(Person).where(Person.email_index == index)).first()
        stored = person.password_hash if person is not None else None
        if not self.passwords.verify(stored, password[:1024]) or person is None:
            log.info("login refused")
            raise AuthenticationFailed("email address or password is incorrect")
        if self.passwords.needs_rehash(person.password_hash or ""):
            person.password_hash = self.passwords.hash(password)
            session.add(person)
        return person.id

    def change_password(self, session: Session, person_id: str, *, current: str,
                        new: str) -> None:
        person = self._person(session, person_id)
        if not self.passwords.verify(person.password_hash, current):
            raise AuthenticationFailed("the current password is incorrect", field="current")
        person.password_hash = self.passwords.hash(clean_password(new, field="new"))
        session.add(person)
        record_event(session, clock=self.clock, tag=AuditTag.PERSON_PASSWORD_CHANGED,
                     actor=f"person:{person_id}", person_ref=person_id)

    # -- profile -------------------------------------------------------------------
    def get_profile(self, session: Session, person_id: str) -> PersonProfile:
        row = session.get(Profile, person_id)
        if row is None:
            raise NotFound("no such person")
        return open_profile(self.data_keys.for_person(session, person_id), row)

    def update_profile(
        self, session: Session, person_id: str, changes: Mapping[str, object]
    ) -> PersonProfile:
        """Change some profile fields; all are validated before anything is written."""
        reject_unknown(changes.keys(), EDITABLE_FIELDS)
        cleaned = {name: _clean_profile_value(name, value) for name, value in changes.items()}
        person = self._person(session, person_id)
        row = session.get(Profile, person_id, with_for_update=True, populate_existing=True)
        if row is None:
            raise NotFound("no such person")
        key = self.data_keys.for_person(session, person_id)
        before = open_profile(key, row)
        changed = sorted(n for n, v in cleaned.items() if getattr(before, n) != v)
        if not changed:
            return before
        if "email" in changed:
            index = email_index(self.blind_index_key, str(cleaned["email"]))
            taken = session.exec(
                select(Person.id).where(Person.email_index == index, Person.id != person_id)
            ).first()
            if taken:
                raise Conflict("an account with this email address already exists",
                               field="email")
            person.email_index = index
            session.add(person)
            _flush_email_index(session)
        for name in changed:
            setattr(row, name, _seal_field(key, person_id, name, cleaned[name]))
        row.updated_at = self.clock.now()
        session.add(row)
        if {"time_zone", "channel_order"} & set(changed):
            terms.refresh(session, person_id, data_keys=self.data_keys, now=row.updated_at)
        record_event(session, clock=self.clock, tag=AuditTag.PERSON_PROFILE_UPDATED,
                     actor=f"person:{person_id}", person_ref=person_id,
                     data={"fields": changed})
        self._notify_profile_change(session, person_id, key, changed)
        return open_profile(key, row)

    def _notify_profile_change(self, session: Session, person_id: str, key: DataKey,
                               changed: list[str]) -> None:
        """Queue ``profile.updated`` for every merchant that sees a changed field.

        The event names the fields only; the merchant fetches values through
        the grant (userinfo), so no value ever sits in the outbox.
        """
        subscriptions = session.exec(select(Subscription).where(
            Subscription.person_id == person_id, Subscription.status == ACTIVE)).all()
        for sub in subscriptions:
            if sub.shared_fields is None:
                continue
            shared = json.loads(key.decrypt(sub.shared_fields, table="subscription",
                                            row_id=sub.id, field="shared_fields"))
            fields = [f for f in changed if f in shared]
            if fields:
                queue_webhook(session, clock=self.clock, merchant_id=sub.merchant_id,
                              event_type="profile.updated", subject=sub.subject,
                              data={"fields": fields})

    # -- erasure -------------------------------------------------------------------
    def erase(self, session: Session, person_id: str) -> ErasureReceipt:
        """Crypto-shred the person and delete every row that names them.

        What stays: a tombstone with the pseudonymous id, subscriptions marked
        ``erased`` (so merchants are told so), reported contacts and the audit
        log — none of which holds personal data once the key is gone.
        """
        person = self._person(session, person_id)
        now = self.clock.now()
        subscriptions = session.exec(
            select(Subscription).where(Subscription.person_id == person_id)
            .order_by(Subscription.id).with_for_update()
        ).all()
        notified = 0
        key = self.data_keys.for_person(session, person_id)
        for sub in subscriptions:
            if sub.status == ACTIVE:
                queue_webhook(session, clock=self.clock, merchant_id=sub.merchant_id,
                              event_type="subscription.revoked", subject=sub.subject,
                              data={"status": ERASED})
                notified += 1
            sub.shared_fields = None
            # Kept in the history sealed with the key shredded below: unreadable from then on.
            terms.end(session, sub, ERASED, key=key, now=now)
            sub.revoked_at = sub.revoked_at or now
            sub.updated_at = now
            session.add(sub)
        ids = [s.id for s in subscriptions]
        if ids:
            session.execute(
                delete(ContactPermission).where(ContactPermission.subscription_id.in_(ids))
            )
        session.execute(delete(Profile).where(Profile.person_id == person_id))
        session.execute(delete(GlobalRules).where(GlobalRules.person_id == person_id))
        self.data_keys.shred(session, person_id)
        person.email_index = None
        person.password_hash = None
        person.erased_at = now
        session.add(person)
        event = record_event(session, clock=self.clock, tag=AuditTag.PERSON_ERASED,
                             actor=f"person:{person_id}", person_ref=person_id,
                             data={"subscriptions": len(subscriptions),
                                   "merchants_notified": notified})
        log.info("account erased person=%s", person_id)
        return ErasureReceipt(person_ref=person_id, erased_at=now, audit_seq=event.seq,
                              subscriptions_closed=len(subscriptions))

    def _person(self, session: Session, person_id: str) -> Person:
        person = session.get(Person, person_id)
        if person is None or person.erased_at is not None:
            raise NotFound("no such person")
        return person


@dataclass(frozen=True)
class ErasureReceipt:
    """What the person is handed when their account is gone."""

    person_ref: str
    erased_at: datetime
    audit_seq: int
    subscriptions_closed: int
