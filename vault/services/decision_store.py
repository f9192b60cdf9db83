"""Reading terms and writing evidence for decisions, off the ORM.

Decisions are the hot path (a shop checks every contact, campaigns check
100,000 people), so this module runs driver-level SQL built once per shape, one set-based
query per call: a ``json_each`` join on SQLite, ``= ANY(array)`` on PostgreSQL.
Permission records stay sealed at rest; they are opened here, in memory,
with cached data-key ciphers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import Connection, insert

from vault.crypto.envelope import DataKey
from vault.models import DecisionBatch
from vault.models.types import new_id
from vault.services.accounts import DEFAULT_TIME_ZONE
from vault.services.decisions import CAP_WINDOW, REACH_FIELD, Terms
from vault.services.keys import DataKeys
from vault.services.permissions import open_grid
from vault.services.rules import open_rules
from vault.vocabulary import CHANNELS

batch_table = DecisionBatch.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class LoadedTerms:
    """A subscription's terms plus what is needed to open the person's other fields."""

    subscription_id: str
    person_id: str
    terms: Terms
    key: DataKey | None
    profile_row: dict[str, bytes | None]


_TERMS_SQL = """
SELECT s.id, s.subject, s.status, s.person_id, s.shared_fields,
       pk.kek_id, pk.wrapped, cp.record AS permissions,
       gr.record AS rules, gr.version AS rules_version,
       pr.time_zone, pr.channel_order, pr.email, pr.phone, pr.address
FROM subscription s
LEFT JOIN person_key pk ON pk.person_id = s.person_id
LEFT JOIN contact_permission cp ON cp.subscription_id = s.id
LEFT JOIN global_rules gr ON gr.person_id = s.person_id
LEFT JOIN profile pr ON pr.person_id = s.person_id
WHERE s.merchant_id = :merchant_id AND """

_CONTACTS_SQL = """
SELECT subscription_id, channel, occurred_at FROM contact_event
WHERE purpose = :purpose AND occurred_at > :since AND occurred_at <= :now AND """

#: per dialect: one value, many values (as one JSON text on SQLite, an array on PostgreSQL)
_ONE = "{column} = :{name}"
_MANY = {
    "sqlite": "{column} IN (SELECT value FROM json_each(:{name}))",
    "postgresql": "{column} = ANY(:{name})",
}
_NAMED = re.compile(r":([a-z_]+)")


@lru_cache(maxsize=32)
def _statement(dialect: str, head: str, column: str, name: str, many: bool) -> str:
    """The driver-level SQL for ``head`` + a filter on ``column``, built once per shape.

    Skipping SQLAlchemy's statement construction and caching on this path is
    what keeps a decision cheap: building the same query each time cost more
    than running it.
    """
    where = (_MANY[dialect] if many else _ONE).format(column=column, name=name)
    sql = head + where
    if dialect == "postgresql":
        sql = _NAMED.sub(r"%(\1)s", sql)
    return sql


def _values(dialect: str, values: Sequence[str]) -> object:
    return json.dumps(list(values)) if dialect == "sqlite" else list(values)


def _stamp(dialect: str, moment: datetime) -> object:
    """A UTC time as the column stores it (SQLite: naive ISO text, as SQLAlchemy writes it)."""
    if dialect == "sqlite":
        return moment.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment


def _read_stamp(value: object) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _run(connection: Connection, sql: str, params: dict[str, object]):  # type: ignore[no-untyped-def]
    return connection.exec_driver_sql(sql, params)


def _terms_query(connection: Connection, merchant_id: str, subjects: Sequence[str]):  # type: ignore[no-untyped-def]
    dialect = connection.dialect.name
    many = len(subjects) != 1
    sql = _statement(dialect, _TERMS_SQL, "s.subject", "subjects" if many else "subject", many)
    params: dict[str, object] = {"merchant_id": merchant_id}
    params["subjects" if many else "subject"] = _values(dialect, subjects) if many \
        else subjects[0]
    return _run(connection, sql, params)


def load_terms(
    connection: Connection,
    *,
    merchant_id: str,
    subjects: Sequence[str],
    purpose: str,
    now: datetime,
    data_keys: DataKeys,
    detail: bool = True,
) -> dict[str, LoadedTerms]:
    """Terms of the merchant's subscriptions among ``subjects``, keyed by subject.

    A subject of another merchant, or one that does not exist, is simply
    absent, which the engine answers as ``unknown_subject``. Without
    ``detail`` (campaigns: no reach, no alternatives) the channel order and
    shared fields stay sealed, and the time zone is opened only when a
    quiet-hours window needs it.
    """
    rows = list(_terms_query(connection, merchant_id, subjects))
    contacts = _recent_contacts(connection, [r.id for r in rows if r.status == "active"],
                                purpose, now)
    loaded: dict[str, LoadedTerms] = {}
    for row in rows:
        if row.status != "active" or row.wrapped is None:
            loaded[row.subject] = LoadedTerms(row.id, row.person_id, Terms(status=row.status),
                                              None, {})
            continue
        key = data_keys.open(row.person_id, row.kek_id, row.wrapped)
        pid = row.person_id
        permissions = open_grid(key, _Sealed(row.id, row.permissions)) if row.permissions \
            else {}
        rules = open_rules(key, _SealedRules(pid, row.rules, row.rules_version))
        windows = rules.quiet_hours is not None or any(
            p.quiet_hours is not None for p in permissions.values())
        tz = key.decrypt(row.time_zone, table="profile", row_id=pid, field="time_zone").decode() \
            if (detail or windows) and row.time_zone else DEFAULT_TIME_ZONE
        order = json.loads(key.decrypt(row.channel_order, table="profile", row_id=pid,
                                       field="channel_order")) \
            if detail and row.channel_order else list(CHANNELS)
        shared = tuple(json.loads(key.decrypt(row.shared_fields, table="subscription",
                                              row_id=row.id, field="shared_fields"))) \
            if detail and row.shared_fields else ()
        terms = Terms(status=row.status, permissions=permissions, rules=rules, time_zone=tz,
                      channel_order=tuple(order), shared_fields=shared,
                      recent_contacts=contacts.get(row.id, {}))
        loaded[row.subject] = LoadedTerms(
            row.id, pid, terms, key,
            {"email": row.email, "phone": row.phone, "address": row.address})
    return loaded


@dataclass(frozen=True)
class _Sealed:
    subscription_id: str
    record: bytes


@dataclass(frozen=True)
class _SealedRules:
    person_id: str
    record: bytes
    version: int


def _recent_contacts(
    connection: Connection, subscription_ids: Sequence[str], purpose: str, now: datetime
) -> dict[str, dict[tuple[str, str], list[datetime]]]:
    if not subscription_ids:
        return {}
    dialect = connection.dialect.name
    many = len(subscription_ids) != 1
    sql = _statement(dialect, _CONTACTS_SQL, "subscription_id", "ids" if many else "id", many)
    params: dict[str, object] = {"purpose": purpose, "since": _stamp(dialect, now - CAP_WINDOW),
                                 "now": _stamp(dialect, now)}
    params["ids" if many else "id"] = _values(dialect, subscription_ids) if many \
        else subscription_ids[0]
    found: dict[str, dict[tuple[str, str], list[datetime]]] = defaultdict(
        lambda: defaultdict(list))
    for sub_id, channel, occurred in _run(connection, sql, params):
        found[sub_id][(channel, purpose)].append(_read_stamp(occurred))
    return found


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


_DECISION_INSERT = (
    "INSERT INTO decision (id, merchant_id, subscription_id, subject, channel, purpose, "
    "asked_at, decided_at, allowed, reason) VALUES (:id, :merchant_id, :subscription_id, "
    ":subject, :channel, :purpose, :asked_at, :decided_at, :allowed, :reason)"
)


def record_decision(
    connection: Connection,
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
    dialect = connection.dialect.name
    sql = _DECISION_INSERT if dialect == "sqlite" else _NAMED.sub(r"%(\1)s", _DECISION_INSERT)
    _run(connection, sql, {
        "id": decision_id, "merchant_id": merchant_id, "subscription_id": subscription_id,
        "subject": subject, "channel": channel, "purpose": purpose,
        "asked_at": _stamp(dialect, asked_at), "decided_at": _stamp(dialect, decided_at),
        "allowed": allowed, "reason": reason})
    return decision_id


def record_batch(
    connection: Connection,
    *,
    merchant_id: str,
    channel: str,
    purpose: str,
    asked_at: datetime,
    decided_at: datetime,
    results: list[dict[str, object]],
) -> str:
    """Store a campaign check as one compressed evidence record with its digest."""
    body = json.dumps(results, separators=(",", ":"), default=str).encode()
    batch_id = new_id()
    connection.execute(insert(batch_table).values(
        id=batch_id, merchant_id=merchant_id, channel=channel, purpose=purpose,
        asked_at=asked_at, decided_at=decided_at, size=len(results),
        allowed_count=sum(1 for r in results if r["allowed"]),
        results_sha256=hashlib.sha256(body).hexdigest(), results=gzip.compress(body, 1)))
    return batch_id
