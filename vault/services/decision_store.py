"""Reading terms and writing evidence for decisions, at the driver level.

Decisions are the hot path (a shop checks every contact, campaigns check
100,000 people), so this module speaks SQL to the driver (``vault.db.Driver``)
and reads plain tuples. A campaign is one set-based query over the list of
subjects (a ``json_each`` table on SQLite, an array on PostgreSQL).

Permission records stay sealed at rest and are opened here, in memory. A
campaign does the least it can per subject: it opens the person's data key
and their two sealed records (permissions and global rules); each distinct
pair of opened records is parsed and judged once; time zones and recent
contacts are read only for the people whose terms make them matter (quiet
hours, a weekly cap).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from vault.crypto.envelope import DataKey, unwrap_key
from vault.db import Driver
from vault.models.subscription import ACTIVE
from vault.models.types import new_id
from vault.services.accounts import DEFAULT_TIME_ZONE
from vault.services.decisions import CAP_WINDOW, REACH_FIELD, Terms, Verdict, evaluate
from vault.services.keys import DataKeys
from vault.services.permissions import PermissionGrid, grid_from_record, open_grid_record
from vault.services.rules import RuleSet, open_rules_record, rules_from_record
from vault.vocabulary import CHANNELS


@dataclass(frozen=True)
class LoadedTerms:
    """A subscription's terms plus what is needed to open the person's other fields."""

    subscription_id: str
    person_id: str
    terms: Terms
    key: DataKey | None
    profile_row: dict[str, bytes | None]


_TERMS_SQL = """
SELECT s.id, s.status, s.person_id, s.shared_fields,
       pk.kek_id, pk.wrapped, cp.record, gr.record, gr.version,
       pr.time_zone, pr.channel_order, pr.email, pr.phone, pr.address
FROM subscription s
LEFT JOIN person_key pk ON pk.person_id = s.person_id
LEFT JOIN contact_permission cp ON cp.subscription_id = s.id
LEFT JOIN global_rules gr ON gr.person_id = s.person_id
LEFT JOIN profile pr ON pr.person_id = s.person_id
WHERE s.subject = :subject AND s.merchant_id = :merchant_id"""

#: per dialect: the subscriptions of the subjects asked about. SQLite, which keeps no
#: statistics unless told to, would walk the merchant index through every subscription
#: of the merchant; CROSS JOIN makes it look each subject up by the subject index.
#: PostgreSQL's planner is left to choose (index lookups for a few subjects, hash joins
#: for many): forcing lookups there measured slower than either of its own plans.
_CAMPAIGN_SQL = {
    "sqlite": """
SELECT s.id, s.subject, s.status, s.person_id, pk.kek_id, pk.wrapped,
       cp.record, gr.record, gr.version
FROM json_each(:subjects) AS wanted
CROSS JOIN subscription s ON s.subject = wanted.value
LEFT JOIN person_key pk ON pk.person_id = s.person_id
LEFT JOIN contact_permission cp ON cp.subscription_id = s.id
LEFT JOIN global_rules gr ON gr.person_id = s.person_id
WHERE s.merchant_id = :merchant_id""",
    "postgresql": """
SELECT s.id, s.subject, s.status, s.person_id, pk.kek_id, pk.wrapped,
       cp.record, gr.record, gr.version
FROM subscription s
LEFT JOIN person_key pk ON pk.person_id = s.person_id
LEFT JOIN contact_permission cp ON cp.subscription_id = s.id
LEFT JOIN global_rules gr ON gr.person_id = s.person_id
WHERE s.subject = ANY(:subjects) AND s.merchant_id = :merchant_id""",
}

#: per dialect: ``column`` is one of a list of values
_IN_LIST = {
    "sqlite": "{column} IN (SELECT value FROM json_each(:{name}))",
    "postgresql": "{column} = ANY(:{name})",
}

_CONTACTS_SQL = """
SELECT subscription_id, channel, occurred_at FROM contact_event
WHERE purpose = :purpose AND occurred_at > :since AND occurred_at <= :now AND """

_TIME_ZONES_SQL = "SELECT person_id, time_zone FROM profile WHERE "


def _recent_contacts(
    db: Driver, subscription_ids: Sequence[str], purpose: str, now: datetime
) -> dict[str, dict[tuple[str, str], list[datetime]]]:
    """Contacts for ``purpose`` in the cap window before ``now``, per subscription and pair."""
    found: dict[str, dict[tuple[str, str], list[datetime]]] = defaultdict(
        lambda: defaultdict(list))
    if not subscription_ids:
        return found
    sql = _CONTACTS_SQL + _IN_LIST[db.dialect].format(column="subscription_id", name="ids")
    for sub_id, channel, occurred in db.rows(sql, {
            "purpose": purpose, "since": db.stamp(now - CAP_WINDOW), "now": db.stamp(now),
            "ids": db.many(subscription_ids)}):
        found[sub_id][(channel, purpose)].append(db.moment(occurred))
    return found


def load_terms(
    db: Driver,
    *,
    merchant_id: str,
    subject: str,
    purpose: str,
    now: datetime,
    data_keys: DataKeys,
    detail: bool = True,
) -> LoadedTerms | None:
    """The terms of the merchant's subscription with ``subject``, or None.

    A subject of another merchant, or one that does not exist, is simply
    absent, which the engine answers as ``unknown_subject``. Without
    ``detail`` (no reach, no alternatives) the channel order and shared
    fields stay sealed. The time zone is opened only when a quiet-hours
    window makes it matter, and recent contacts are read only when a
    permission for ``purpose`` has a weekly cap, the only rule they count for.
    """
    found = db.rows(_TERMS_SQL, {"subject": subject, "merchant_id": merchant_id})
    if not found:
        return None
    (sub_id, status, pid, shared_sealed, kek_id, wrapped, grid_sealed, rules_sealed,
     rules_version, tz_sealed, order_sealed, email, phone, address) = found[0]
    if status != ACTIVE or wrapped is None:
        return LoadedTerms(sub_id, pid, Terms(status=status), None, {})
    key = data_keys.open(pid, kek_id, bytes(wrapped))
    permissions = grid_from_record(open_grid_record(key, sub_id, grid_sealed)) \
        if grid_sealed else {}
    rules = rules_from_record(open_rules_record(key, pid, rules_sealed), rules_version)
    windows = rules.quiet_hours is not None or any(
        p.quiet_hours is not None for p in permissions.values())
    tz = key.decrypt(tz_sealed, table="profile", row_id=pid, field="time_zone").decode() \
        if windows and tz_sealed else DEFAULT_TIME_ZONE
    order = json.loads(key.decrypt(order_sealed, table="profile", row_id=pid,
                                   field="channel_order")) \
        if detail and order_sealed else list(CHANNELS)
    shared = tuple(json.loads(key.decrypt(shared_sealed, table="subscription", row_id=sub_id,
                                          field="shared_fields"))) \
        if detail and shared_sealed else ()
    capped = any(p.max_per_week is not None for (_, p_purpose), p in permissions.items()
                 if p_purpose == purpose)
    contacts = _recent_contacts(db, [sub_id], purpose, now).get(sub_id, {}) if capped else {}
    terms = Terms(status=status, permissions=permissions, rules=rules, time_zone=tz,
                  channel_order=tuple(order), shared_fields=shared, recent_contacts=contacts)
    return LoadedTerms(sub_id, pid, terms, key,
                       {"email": email, "phone": phone, "address": address})


@dataclass(frozen=True, slots=True)
class _Shape:
    """One distinct pair of opened records (permissions, rules), parsed and judged once."""

    permissions: PermissionGrid
    rules: RuleSet
    #: quiet hours apply: the verdict depends on the person's time zone
    zoned: bool
    #: a weekly cap applies: the verdict depends on the recent contacts
    capped: bool
    #: the verdict, when it depends on neither
    verdict: Verdict | None


def _shape(grid: bytes, rules: bytes, version: int, channel: str, purpose: str,
           now: datetime) -> _Shape:
    permissions = grid_from_record(grid) if grid else {}
    ruleset = rules_from_record(rules, version)
    permission = permissions.get((channel, purpose))
    zoned = ruleset.quiet_hours is not None or (
        permission is not None and permission.quiet_hours is not None)
    capped = permission is not None and permission.max_per_week is not None
    verdict = None if zoned or capped else evaluate(
        Terms(status=ACTIVE, permissions=permissions, rules=ruleset), channel, purpose, now)
    return _Shape(permissions, ruleset, zoned, capped, verdict)


def campaign_verdicts(
    db: Driver,
    *,
    merchant_id: str,
    subjects: Sequence[str],
    channel: str,
    purpose: str,
    now: datetime,
    data_keys: DataKeys,
) -> dict[str, Verdict]:
    """The verdict for each of the merchant's ``subjects`` (distinct); others are absent.

    Data keys are unwrapped here without the shared key cache: a campaign
    would only push out the keys single decisions keep using.
    """
    rows = db.rows(_CAMPAIGN_SQL[db.dialect],
                   {"merchant_id": merchant_id, "subjects": db.many(subjects)})
    keks: dict[str, bytes] = {}
    verdicts: dict[str, Verdict] = {}
    inactive: dict[str, Verdict] = {}
    shapes: dict[tuple[bytes, bytes], _Shape] = {}
    pending: list[tuple[str, str, str, DataKey, _Shape]] = []
    for sub_id, subject, status, pid, kek_id, wrapped, grid_sealed, rules_sealed, version \
            in rows:
        if status != ACTIVE or wrapped is None:
            verdict = inactive.get(status)
            if verdict is None:
                verdict = inactive[status] = evaluate(Terms(status=status), channel, purpose,
                                                      now)
            verdicts[subject] = verdict
            continue
        kek = keks.get(kek_id)
        if kek is None:
            kek = keks[kek_id] = data_keys.keyring.kek(kek_id)
        key = DataKey(unwrap_key(kek, kek_id, pid, wrapped))
        grid = open_grid_record(key, sub_id, grid_sealed) if grid_sealed else b""
        rules = open_rules_record(key, pid, rules_sealed)
        shape = shapes.get((grid, rules))
        if shape is None:
            shape = shapes[(grid, rules)] = _shape(grid, rules, version, channel, purpose, now)
        if shape.verdict is not None:
            verdicts[subject] = shape.verdict
        else:
            pending.append((subject, sub_id, pid, key, shape))
    if pending:
        verdicts.update(_judge_one_by_one(db, pending, channel, purpose, now))
    return verdicts


def _judge_one_by_one(
    db: Driver, pending: list[tuple[str, str, str, DataKey, _Shape]], channel: str,
    purpose: str, now: datetime,
) -> dict[str, Verdict]:
    """Verdicts that depend on the person's time zone or recent contacts."""
    zoned = list({pid for _, _, pid, _, shape in pending if shape.zoned})
    zones = dict(db.rows(_TIME_ZONES_SQL + _IN_LIST[db.dialect].format(
        column="person_id", name="ids"), {"ids": db.many(zoned)})) if zoned else {}
    contacts = _recent_contacts(
        db, [sub_id for _, sub_id, _, _, shape in pending if shape.capped], purpose, now)
    judged: dict[str, Verdict] = {}
    same: dict[tuple[int, str], Verdict] = {}
    for subject, sub_id, pid, key, shape in pending:
        sealed = zones.get(pid)
        tz = key.decrypt(sealed, table="profile", row_id=pid, field="time_zone").decode() \
            if shape.zoned and sealed else DEFAULT_TIME_ZONE
        terms = Terms(status=ACTIVE, permissions=shape.permissions, rules=shape.rules,
                      time_zone=tz, recent_contacts=contacts.get(sub_id, {}))
        if shape.capped:
            judged[subject] = evaluate(terms, channel, purpose, now)
            continue
        verdict = same.get((id(shape), tz))
        if verdict is None:
            verdict = same[(id(shape), tz)] = evaluate(terms, channel, purpose, now)
        judged[subject] = verdict
    return judged


def reach_for(loaded: LoadedTerms, channel: str) -> str | None:
    """The address for ``channel``, only when the grant shares the matching field."""
    field = REACH_FIELD.get(channel)
    if field is None or loaded.key is None or field not in loaded.terms.shared_fields:
        return None
    sealed = loaded.profile_row.get(field)
    if sealed is None:
        return None
    return loaded.key.decrypt(sealed, table="profile", row_id=loaded.person_id,
                              field=field).decode()


#: text json.dumps writes as it is (printable ASCII but quote and backslash)
_PLAIN = re.compile(r'[ !#-\[\]-~]*')


def results_json(subjects: Sequence[str], verdicts: Sequence[Verdict],
                 moment: Callable[[datetime], str]) -> str:
    """The answers as the JSON array ``json.dumps`` writes with compact separators.

    Items are ``{subject, allowed, reason, next_allowed_at}`` with times
    written by ``moment``. Each distinct verdict is encoded once and plain
    subjects need no escaping, so 10,000 answers cost little more than
    joining strings.
    """
    distinct = {id(verdict): verdict for verdict in verdicts}
    tails = {key: _tail(verdict, moment) for key, verdict in distinct.items()}
    if _PLAIN.fullmatch("".join(subjects)):
        parts = ['{"subject":"' + subject + '"' + tails[id(verdict)]
                 for subject, verdict in zip(subjects, verdicts, strict=True)]
    else:
        parts = ['{"subject":' + json.dumps(subject) + tails[id(verdict)]
                 for subject, verdict in zip(subjects, verdicts, strict=True)]
    return "[" + ",".join(parts) + "]"


def _tail(verdict: Verdict, moment: Callable[[datetime], str]) -> str:
    when = verdict.next_allowed_at
    return (',"allowed":' + ("true" if verdict.allowed else "false")
            + ',"reason":' + json.dumps(verdict.reason)
            + ',"next_allowed_at":' + ("null" if when is None else json.dumps(moment(when)))
            + "}")


_DECISION_INSERT = (
    "INSERT INTO decision (id, merchant_id, subscription_id, subject, channel, purpose, "
    "asked_at, decided_at, allowed, reason) VALUES (:id, :merchant_id, :subscription_id, "
    ":subject, :channel, :purpose, :asked_at, :decided_at, :allowed, :reason)"
)


def record_decision(
    db: Driver,
    *,
    decision_id: str,
    merchant_id: str,
    subscription_id: str | None,
    subject: str,
    channel: str,
    purpose: str,
    asked_at: datetime,
    decided_at: datetime,
    allowed: bool,
    reason: str,
) -> str:
    """Store one decision as evidence; returns its id."""
    db.run(_DECISION_INSERT, {
        "id": decision_id, "merchant_id": merchant_id, "subscription_id": subscription_id,
        "subject": subject, "channel": channel, "purpose": purpose,
        "asked_at": db.stamp(asked_at), "decided_at": db.stamp(decided_at),
        "allowed": allowed, "reason": reason})
    return decision_id


_BATCH_INSERT = (
    "INSERT INTO decision_batch (id, merchant_id, channel, purpose, asked_at, decided_at, "
    "size, allowed_count, results_sha256, results) VALUES (:id, :merchant_id, :channel, "
    ":purpose, :asked_at, :decided_at, :size, :allowed_count, :results_sha256, :results)"
)


def record_batch(
    db: Driver,
    *,
    merchant_id: str,
    channel: str,
    purpose: str,
    asked_at: datetime,
    decided_at: datetime,
    results: str,
    size: int,
    allowed_count: int,
) -> str:
    """Store a campaign check as one compressed evidence record with its digest.

    ``results`` is the answer list as JSON (see ``results_json``).
    """
    body = results.encode()
    batch_id = new_id()
    db.run(_BATCH_INSERT, {
        "id": batch_id, "merchant_id": merchant_id, "channel": channel, "purpose": purpose,
        "asked_at": db.stamp(asked_at), "decided_at": db.stamp(decided_at), "size": size,
        "allowed_count": allowed_count, "results_sha256": hashlib.sha256(body).hexdigest(),
        "results": gzip.compress(body, 1)})
    return batch_id
