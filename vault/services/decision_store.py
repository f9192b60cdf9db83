"""Reading terms and writing evidence for decisions, at the driver level.

Decisions are the hot path (a shop checks every contact, campaigns check
100,000 people), so this module speaks SQL to the driver (``vault.db.Driver``)
and reads plain tuples. A campaign is one set-based query over the list of
subjects (a ``json_each`` table on SQLite, an array on PostgreSQL).

Each subscription row carries its sealed terms record and a copy of the
person's wrapped data key (see ``vault.services.terms``), so a decision reads
one row, unwraps one key and opens one record, in memory. A campaign does the
least it can per subject: each distinct set of judged terms (the record's
first line) is parsed and judged once; the second line (time zone) is read
only for the people whose terms make it matter (quiet hours), and recent
contacts only for those with a weekly cap.

Decisions and campaigns read only the current record. A contact report,
judged at the moment the contact was made, reads the history of terms too
(``load_terms_at``), and only when the current record took force after that
moment.
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

from vault.crypto.envelope import DataKey, sealed_field_opener
from vault.db import Driver
from vault.models.subscription import ACTIVE, ERASED
from vault.models.types import new_id
from vault.services import terms as sealed_terms
from vault.services import terms_history
from vault.services.decisions import CAP_WINDOW, REACH_FIELD, Terms, Verdict, evaluate
from vault.services.keys import DataKeys


@dataclass(frozen=True)
class LoadedTerms:
    """A subscription's terms plus what is needed to open the person's other fields."""

    subscription_id: str
    person_id: str
    terms: Terms
    key: DataKey | None
    profile_row: dict[str, bytes | None]


_TERMS_SQL = """
SELECT s.id, s.status, s.person_id, s.key_kek_id, s.wrapped_key, s.terms,
       pr.email, pr.phone, pr.address
FROM subscription s
LEFT JOIN profile pr ON pr.person_id = s.person_id
WHERE s.subject = :subject AND s.merchant_id = :merchant_id"""

#: per dialect: the subscriptions of the subjects asked about. SQLite, which keeps no
#: statistics unless told to, would walk the merchant index through every subscription
#: of the merchant; CROSS JOIN makes it look each subject up by the subject index.
#: PostgreSQL's planner is left to choose (index lookups for a few subjects, a scan
#: for many).
_CAMPAIGN_SQL = {
    "sqlite": """
SELECT s.id, s.subject, s.status, s.person_id, s.key_kek_id, s.wrapped_key, s.terms
FROM json_each(:subjects) AS wanted
CROSS JOIN subscription s ON s.subject = wanted.value
WHERE s.merchant_id = :merchant_id""",
    "postgresql": """
SELECT s.id, s.subject, s.status, s.person_id, s.key_kek_id, s.wrapped_key, s.terms
FROM subscription s
WHERE s.subject = ANY(CAST(:subjects AS text[])) AND s.merchant_id = :merchant_id""",
}

#: per dialect: ``column`` is one of a list of values
_IN_LIST = {
    "sqlite": "{column} IN (SELECT value FROM json_each(:{name}))",
    "postgresql": "{column} = ANY(CAST(:{name} AS text[]))",
}

_CONTACTS_SQL = """
SELECT subscription_id, channel, occurred_at FROM contact_event
WHERE purpose = :purpose AND occurred_at > :since AND occurred_at <= :now AND """


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


def _inactive(status: str, sealed: bytes | None, wrapped: bytes | None) -> str | None:
    """The status to answer with when the row alone settles it, else None.

    An active subscription without terms or key copy is answered as one
    granting nothing (default deny); ``vault.services.terms`` never leaves
    one so.
    """
    if status != ACTIVE:
        return status
    return None if sealed is not None and wrapped is not None else ACTIVE


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
    absent, which the engine answers as ``unknown_subject``. Recent contacts
    are read only when a permission for ``purpose`` has a weekly cap, the
    only rule they count for. ``detail`` is kept for callers that need no
    reach or alternatives; the record holds both either way.
    """
    found = db.rows(_TERMS_SQL, {"subject": subject, "merchant_id": merchant_id})
    if not found:
        return None
    (sub_id, status, pid, kek_id, wrapped, sealed, email, phone, address) = found[0]
    settled = _inactive(status, sealed, wrapped)
    if settled is not None:
        return LoadedTerms(sub_id, pid, Terms(status=settled), None, {})
    key = data_keys.open(pid, kek_id, bytes(wrapped))
    plaintext = sealed_terms.open_record(key, sub_id, bytes(sealed))
    terms = _terms(db, sub_id, plaintext, purpose, now, detail)
    return LoadedTerms(sub_id, pid, terms, key,
                       {"email": email, "phone": phone, "address": address})


def _terms(db: Driver, sub_id: str, plaintext: bytes, purpose: str, now: datetime,
           detail: bool) -> Terms:
    """A terms record's plaintext as the engine's ``Terms``, with the contacts it needs."""
    judged = sealed_terms.parse_judged(sealed_terms.judged_part(plaintext))
    more = sealed_terms.parse_detail(plaintext)
    capped = any(p.max_per_week is not None for (_, p_purpose), p in judged.permissions.items()
                 if p_purpose == purpose)
    contacts = _recent_contacts(db, [sub_id], purpose, now).get(sub_id, {}) if capped else {}
    return Terms(status=judged.status, permissions=judged.permissions, rules=judged.rules,
                 time_zone=more.time_zone, channel_order=more.channel_order,
                 shared_fields=more.shared_fields if detail else (),
                 recent_contacts=contacts)


_TERMS_AT_SQL = """
SELECT s.id, s.status, s.person_id, s.key_kek_id, s.wrapped_key, s.terms, s.terms_since
FROM subscription s
WHERE s.subject = :subject AND s.merchant_id = :merchant_id"""

_PERSON_KEY_SQL = "SELECT kek_id, wrapped FROM person_key WHERE person_id = :person_id"


def load_terms_at(
    db: Driver,
    *,
    merchant_id: str,
    subject: str,
    purpose: str,
    at: datetime,
    data_keys: DataKeys,
) -> LoadedTerms | None:
    """The terms the merchant's subscription with ``subject`` had at ``at``, or None.

    For contact reports: the current record when it was already in force at
    ``at`` (one row read, as ``load_terms``), else the state kept in the
    history for that moment (``vault.services.terms_history``), opened with
    the person's data key. An erased subscription answers ``erased`` whatever
    the moment: its history can no longer be opened. Recent contacts are
    those before ``at``. The result carries no key and no profile fields: a
    report needs neither reach nor alternatives.
    """
    found = db.rows(_TERMS_AT_SQL, {"subject": subject, "merchant_id": merchant_id})
    if not found:
        return None
    (sub_id, status, pid, kek_id, wrapped, sealed, since) = found[0]
    kept = None
    if status != ERASED and since is not None and at < db.moment(since):
        kept = terms_history.state_at(db, sub_id, at)
    if kept is None:
        settled = _inactive(status, sealed, wrapped)
        if settled is not None:
            return LoadedTerms(sub_id, pid, Terms(status=settled), None, {})
        key = data_keys.open(pid, kek_id, bytes(wrapped))
        plaintext = sealed_terms.open_record(key, sub_id, bytes(sealed))
        return LoadedTerms(sub_id, pid, _terms(db, sub_id, plaintext, purpose, at, False),
                           None, {})
    if kept.status != ACTIVE or kept.sealed is None:
        return LoadedTerms(sub_id, pid, Terms(status=kept.status), None, {})
    key_row = db.rows(_PERSON_KEY_SQL, {"person_id": pid})
    if not key_row:
        return LoadedTerms(sub_id, pid, Terms(status=ERASED), None, {})
    key = data_keys.open(pid, key_row[0][0], bytes(key_row[0][1]))
    plaintext = terms_history.open_record(key, sub_id, kept.history_id, kept.sealed)
    return LoadedTerms(sub_id, pid, _terms(db, sub_id, plaintext, purpose, at, False), None, {})


@dataclass(frozen=True, slots=True)
class _Shape:
    """One distinct judged part of a terms record, parsed and judged once."""

    judged: sealed_terms.Judged
    #: quiet hours apply: the verdict depends on the person's time zone
    zoned: bool
    #: a weekly cap applies: the verdict depends on the recent contacts
    capped: bool
    #: the verdict, when it depends on neither
    verdict: Verdict | None


def _shape(line: bytes, channel: str, purpose: str, now: datetime) -> _Shape:
    judged = sealed_terms.parse_judged(line)
    if judged.status != ACTIVE:
        return _Shape(judged, False, False, evaluate(Terms(status=judged.status), channel,
                                                     purpose, now))
    permission = judged.permissions.get((channel, purpose))
    zoned = judged.rules.quiet_hours is not None or (
        permission is not None and permission.quiet_hours is not None)
    capped = permission is not None and permission.max_per_week is not None
    verdict = None if zoned or capped else evaluate(
        Terms(status=ACTIVE, permissions=judged.permissions, rules=judged.rules),
        channel, purpose, now)
    return _Shape(judged, zoned, capped, verdict)


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
    openers: dict[str, Callable[[str, bytes, str, bytes], bytes]] = {}
    verdicts: dict[str, Verdict] = {}
    inactive: dict[str, Verdict] = {}
    shapes: dict[bytes, _Shape] = {}
    pending: list[tuple[str, str, bytes, _Shape]] = []
    for sub_id, subject, status, pid, kek_id, wrapped, sealed in rows:
        if status != ACTIVE or sealed is None or wrapped is None:  # see _inactive
            verdict = inactive.get(status)
            if verdict is None:
                verdict = inactive[status] = evaluate(Terms(status=status), channel, purpose,
                                                      now)
            verdicts[subject] = verdict
            continue
        opener = openers.get(kek_id)
        if opener is None:
            opener = openers[kek_id] = sealed_field_opener(
                data_keys.keyring.kek(kek_id), kek_id, table=sealed_terms.TABLE,
                field=sealed_terms.FIELD)
        plaintext = opener(pid, wrapped, sub_id, sealed)
        end = plaintext.find(b"\n")
        line = plaintext[:end] if end >= 0 else plaintext
        shape = shapes.get(line)
        if shape is None:
            shape = shapes[line] = _shape(line, channel, purpose, now)
        if shape.verdict is not None:
            verdicts[subject] = shape.verdict
        else:
            pending.append((subject, sub_id, plaintext, shape))
    if pending:
        verdicts.update(_judge_one_by_one(db, pending, channel, purpose, now))
    return verdicts


def _judge_one_by_one(
    db: Driver, pending: list[tuple[str, str, bytes, _Shape]], channel: str,
    purpose: str, now: datetime,
) -> dict[str, Verdict]:
    """Verdicts that depend on the person's time zone or recent contacts."""
    contacts = _recent_contacts(
        db, [sub_id for _, sub_id, _, shape in pending if shape.capped], purpose, now)
    judged: dict[str, Verdict] = {}
    same: dict[tuple[int, str], Verdict] = {}
    for subject, sub_id, plaintext, shape in pending:
        tz = sealed_terms.parse_detail(plaintext).time_zone
        terms = Terms(status=ACTIVE, permissions=shape.judged.permissions,
                      rules=shape.judged.rules, time_zone=tz,
                      recent_contacts=contacts.get(sub_id, {}))
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
