"""The sealed terms record: all a decision reads about a subscription, in one ciphertext.

A decision depends on rows of four tables (the permission grid, the person's
global rules, their time zone and channel order in the profile, the shared
fields of the subscription). Read and opened one by one, a campaign of
100,000 subjects spent most of its time joining them and running AES-GCM
four times per subject. So every change to any of them also rewrites, in
the same transaction, one record per subscription that holds them all,
sealed with the person's data key (AAD: ``subscription``, the row id,
``terms``), next to a copy of the person's wrapped data key: a decision
reads one row and opens two ciphertexts. The four tables stay the record of
truth that pages and exports read; ``refresh`` rebuilds the terms from them.

The plaintext is two lines of compact JSON: first what a verdict is judged
on (status, permissions, rules), then what only some verdicts and answers
need (time zone, channel order, shared fields). A campaign keys its work
on the first line, so two people with the same terms are judged once
whatever their time zones or shared fields.

Decisions read only this record. A contact report is judged by the terms
in force when the contact was made, so whenever the record (or, for a
subscription that is not active, its status) is replaced, the state it
leaves is kept in ``terms_history`` in the same transaction, and
``terms_since`` says since when the current one is in force (see
``vault.services.terms_history``). A rebuild that gives the same plaintext
replaces nothing: the record, and when it took force, stay as they are.

Invariants (each has tests): an active subscription has terms, and no other
one does (a decision never opens them for a revoked or erased subscription);
the copy of the wrapped key equals ``PersonKey`` (rewrapped with it on
rotation); the kept states of a subscription and its current one follow
each other without gaps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from vault.crypto.envelope import DataKey
from vault.models import ContactPermission, GlobalRules, PersonKey, Profile, Subscription
from vault.models.subscription import ACTIVE, REVOKED
from vault.services import terms_history
from vault.services.decisions import DEFAULT_TIME_ZONE
from vault.services.keys import DataKeys
from vault.services.permissions import Permission, PermissionGrid, open_grid_record
from vault.services.rules import QuietHours, RuleSet, open_rules_record
from vault.vocabulary import CHANNELS

TABLE = "subscription"
FIELD = "terms"
_COMPACT = (",", ":")


def compose(*, status: str, permissions: Sequence[dict[str, object]],
            rules: dict[str, object], time_zone: str, channel_order: Sequence[str],
            shared_fields: Sequence[str]) -> bytes:
    """The plaintext of a terms record (see the module docstring for its two lines)."""
    judged = json.dumps({"status": status, "permissions": list(permissions),
                         "rules": rules}, separators=_COMPACT)
    detail = json.dumps({"time_zone": time_zone, "channel_order": list(channel_order),
                         "shared_fields": list(shared_fields)}, separators=_COMPACT)
    return (judged + "\n" + detail).encode()


def seal(key: DataKey, subscription_id: str, plaintext: bytes) -> bytes:
    return key.encrypt(plaintext, table=TABLE, row_id=subscription_id, field=FIELD)


def open_record(key: DataKey, subscription_id: str, sealed: bytes) -> bytes:
    """The plaintext of a sealed terms record (``DecryptionError`` if it is not this row's)."""
    return key.decrypt(sealed, table=TABLE, row_id=subscription_id, field=FIELD)


def judged_part(plaintext: bytes) -> bytes:
    """The first line: what a verdict is judged on (a campaign's cache key)."""
    end = plaintext.find(b"\n")
    return plaintext if end < 0 else plaintext[:end]


@dataclass(frozen=True, slots=True)
class Judged:
    """The first line of a terms record, parsed."""

    status: str
    permissions: PermissionGrid
    rules: RuleSet


@dataclass(frozen=True, slots=True)
class Detail:
    """The second line of a terms record, parsed."""

    time_zone: str
    channel_order: tuple[str, ...]
    shared_fields: tuple[str, ...]


def parse_judged(line: bytes) -> Judged:
    """The record was validated when it was written and AES-GCM authenticates it, so it
    is read back without validating it again."""
    doc = json.loads(line)
    permissions = [Permission.from_json(item) for item in doc["permissions"]]
    rules = doc["rules"]
    quiet = rules.get("quiet_hours")
    return Judged(
        status=doc["status"],
        permissions={(p.channel, p.purpose): p for p in permissions},
        rules=RuleSet(
            blocked=tuple((b["channel"], b["purpose"]) for b in rules.get("blocked", ())),
            channels_off=tuple(rules.get("channels_off", ())),
            quiet_hours=QuietHours.from_json(quiet) if quiet else None))


def parse_detail(plaintext: bytes) -> Detail:
    """The second line of a record's plaintext, parsed."""
    doc = json.loads(plaintext[plaintext.find(b"\n") + 1:])
    return Detail(doc["time_zone"], tuple(doc["channel_order"]), tuple(doc["shared_fields"]))


def refresh(session: Session, person_id: str, *, data_keys: DataKeys, now: datetime,
            subscription_id: str | None = None) -> None:
    """Rebuild the terms of the person's subscriptions (or of one) from their sources.

    Call it after changing any source, in the same transaction: it reads the
    rows through ``session``, so it sees the change before it is committed.
    Subscriptions that are not active, and those of a person without a data
    key (erased), keep no terms and no key copy. A record that changes, and
    the first one after a revocation, keep the state they replace in the
    history (see the module docstring); ``now`` is the moment of the change,
    when the new record takes force.

    The subscriptions are locked (in id order) before their sources are read,
    and the sources read afresh: two changes to one person's terms at once
    (say rules and a permission) then rebuild one after the other, the later
    from what the earlier committed, so neither undoes the other's part.
    """
    query = select(Subscription).where(Subscription.person_id == person_id)
    if subscription_id is not None:
        query = query.where(Subscription.id == subscription_id)
    subscriptions = session.exec(query.order_by(Subscription.id).with_for_update()
                                 .execution_options(populate_existing=True)).all()
    if not subscriptions:
        return
    key_row = session.get(PersonKey, person_id, populate_existing=True)
    if key_row is None:
        for sub in subscriptions:
            forget(sub)
            session.add(sub)
        session.flush()
        return
    key = data_keys.open(person_id, key_row.kek_id, key_row.wrapped)
    rules_row = session.get(GlobalRules, person_id, populate_existing=True)
    rules = json.loads(open_rules_record(key, person_id, rules_row.record)) \
        if rules_row is not None else RuleSet().to_json()
    profile = session.get(Profile, person_id, populate_existing=True)
    zone_sealed = profile.time_zone if profile is not None else None
    order_sealed = profile.channel_order if profile is not None else None
    time_zone = key.decrypt(zone_sealed, table="profile", row_id=person_id,
                            field="time_zone").decode() if zone_sealed else DEFAULT_TIME_ZONE
    order = json.loads(key.decrypt(order_sealed, table="profile", row_id=person_id,
                                   field="channel_order")) if order_sealed else list(CHANNELS)
    for sub in subscriptions:
        if sub.status != ACTIVE:
            if sub.terms is not None:
                end(session, sub, sub.status, key=key, now=now)
            forget(sub)
        else:
            grid = session.get(ContactPermission, sub.id, populate_existing=True)
            permissions = json.loads(open_grid_record(key, sub.id, grid.record))["permissions"] \
                if grid is not None else []
            shared = json.loads(key.decrypt(sub.shared_fields, table=TABLE, row_id=sub.id,
                                            field="shared_fields")) \
                if sub.shared_fields is not None else []
            plaintext = compose(
                status=sub.status, permissions=permissions, rules=rules, time_zone=time_zone,
                channel_order=order, shared_fields=shared)
            current = open_record(key, sub.id, sub.terms) if sub.terms is not None else None
            if plaintext != current:
                moment = _moment(sub, now)
                # No record: the subscription comes back from a revocation (or is new).
                terms_history.keep(session, subscription_id=sub.id,
                                   status=ACTIVE if current is not None else REVOKED,
                                   plaintext=current, key=key, valid_from=sub.terms_since,
                                   valid_until=moment)
                sub.terms = seal(key, sub.id, plaintext)
                sub.terms_since = moment
            sub.key_kek_id = key_row.kek_id
            sub.wrapped_key = key_row.wrapped
        session.add(sub)
    session.flush()


def end(session: Session, sub: Subscription, status: str, *, key: DataKey | None,
        now: datetime) -> None:
    """Put ``sub`` in ``status`` (revoked, erased) from ``now``, without terms or key copy.

    The state it leaves is kept in the history, its record sealed anew with
    ``key`` (the person's data key); call it before the key is shredded.
    Nothing is kept when the status does not change.
    """
    if sub.status == status and sub.terms is None:
        return
    current = open_record(key, sub.id, sub.terms) \
        if sub.terms is not None and key is not None else None
    moment = _moment(sub, now)
    terms_history.keep(session, subscription_id=sub.id,
                       status=ACTIVE if sub.terms is not None else sub.status,
                       plaintext=current, key=key, valid_from=sub.terms_since,
                       valid_until=moment)
    sub.status = status
    sub.terms_since = moment
    forget(sub)
    session.add(sub)


def _moment(sub: Subscription, now: datetime) -> datetime:
    """When a change replaces ``sub``'s state: ``now``, or when that state took force if later.

    Two processes' clocks, or a change that read the time before waiting for
    another's lock, may give a moment before the current state's; the history
    then stays in order, the state it replaces never having been in force.
    """
    since = sub.terms_since
    return now if since is None or now > since else since


def forget(sub: Subscription) -> None:
    """Drop a subscription's terms and its copy of the wrapped key, keeping no history.

    ``end`` is what takes a subscription out of force; this is the raw drop.
    """
    sub.terms = None
    sub.key_kek_id = None
    sub.wrapped_key = None
