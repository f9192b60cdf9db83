"""Reading terms and writing evidence for decisions, off the ORM.

Decisions are the hot path (a shop checks every contact, campaigns check
100,000 people), so this module uses SQLAlchemy Core with one set-based query
per call: a ``json_each`` join on SQLite, ``= ANY(array)`` on PostgreSQL.
Permission records stay sealed at rest; they are opened here, in memory,
with cached data-key ciphers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, any_, bindparam, insert, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import JSON

from vault.crypto.envelope import DataKey
from vault.models import (
    ContactEvent,
    ContactPermission,
    Decision,
    DecisionBatch,
    GlobalRules,
    PersonKey,
    Profile,
    Subscription,
)
from vault.models.types import new_id
from vault.services.decisions import CAP_WINDOW, REACH_FIELD, Terms
from vault.services.keys import DataKeys
from vault.services.permissions import open_grid
from vault.services.rules import open_rules
from vault.vocabulary import CHANNELS

s = Subscription.__table__  # type: ignore[attr-defined]
pk = PersonKey.__table__  # type: ignore[attr-defined]
cp = ContactPermission.__table__  # type: ignore[attr-defined]
gr = GlobalRules.__table__  # type: ignore[attr-defined]
pr = Profile.__table__  # type: ignore[attr-defined]
ce = ContactEvent.__table__  # type: ignore[attr-defined]
decision_table = Decision.__table__  # type: ignore[attr-defined]
batch_table = DecisionBatch.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class LoadedTerms:
    """A subscription's terms plus what is needed to open the person's other fields."""

    subscription_id: str
    person_id: str
    terms: Terms
    key: DataKey | None
    profile_row: dict[str, bytes | None]


def _terms_query(connection: Connection, merchant_id: str, subjects: Sequence[str]):  # type: ignore[no-untyped-def]
    columns = (
        s.c.id, s.c.subject, s.c.status, s.c.person_id, s.c.shared_fields,
        pk.c.kek_id, pk.c.wrapped, cp.c.record.label("permissions"),
        gr.c.record.label("rules"), gr.c.version.label("rules_version"),
        pr.c.time_zone, pr.c.channel_order, pr.c.email, pr.c.phone, pr.c.address,
    )
    query = (
        select(*columns)
        .select_from(
            s.outerjoin(pk, pk.c.person_id == s.c.person_id)
            .outerjoin(cp, cp.c.subscription_id == s.c.id)
            .outerjoin(gr, gr.c.person_id == s.c.person_id)
            .outerjoin(pr, pr.c.person_id == s.c.person_id)
        )
        .where(s.c.merchant_id == merchant_id)
    )
    if len(subjects) == 1:
        query = query.where(s.c.subject == subjects[0])
        return connection.execute(query)
    if connection.dialect.name == "postgresql":
        query = query.where(s.c.subject == any_(
            bindparam("subjects", type_=postgresql.ARRAY(s.c.subject.type))))
        return connection.execute(query, {"subjects": list(subjects)})
    wanted = select(text("value")).select_from(
        text("json_each(:subjects)").bindparams(bindparam("subjects", type_=JSON)))
    return connection.execute(query.where(s.c.subject.in_(wanted)),
                              {"subjects": list(subjects)})


def load_terms(
    connection: Connection,
    *,
    merchant_id: str,
    subjects: Sequence[str],
    purpose: str,
    now: datetime,
    data_keys: DataKeys,
) -> dict[str, LoadedTerms]:
    """Terms of the merchant's subscriptions among ``subjects``, keyed by subject.

    A subject of another merchant, or one that does not exist, is simply
    absent, which the engine answers as ``unknown_subject``.
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
        tz = key.decrypt(row.time_zone, table="profile", row_id=pid, field="time_zone").decode()
        order = json.loads(key.decrypt(row.channel_order, table="profile", row_id=pid,
                                       field="channel_order")) if row.channel_order \
            else list(CHANNELS)
        shared = tuple(json.loads(key.decrypt(row.shared_fields, table="subscription",
                                              row_id=row.id, field="shared_fields"))) \
            if row.shared_fields else ()
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
    query = select(ce.c.subscription_id, ce.c.channel, ce.c.occurred_at).where(
        ce.c.purpose == purpose, ce.c.occurred_at > now - CAP_WINDOW,
        ce.c.occurred_at <= now,
    )
    if len(subscription_ids) == 1:
        result = connection.execute(query.where(ce.c.subscription_id == subscription_ids[0]))
    elif connection.dialect.name == "postgresql":
        result = connection.execute(
            query.where(ce.c.subscription_id == any_(
                bindparam("ids", type_=postgresql.ARRAY(ce.c.subscription_id.type)))),
            {"ids": list(subscription_ids)})
    else:
        wanted = select(text("value")).select_from(
            text("json_each(:ids)").bindparams(bindparam("ids", type_=JSON)))
        result = connection.execute(query.where(ce.c.subscription_id.in_(wanted)),
                                    {"ids": list(subscription_ids)})
    found: dict[str, dict[tuple[str, str], list[datetime]]] = defaultdict(
        lambda: defaultdict(list))
    for sub_id, channel, occurred in result:
        found[sub_id][(channel, purpose)].append(occurred)
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


def record_decision(
    connection: Connection,
    *,
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
    decision_id = new_id()
    connection.execute(insert(decision_table).values(
        id=decision_id, merchant_id=merchant_id, subscription_id=subscription_id,
        subject=subject, channel=channel, purpose=purpose, asked_at=asked_at,
        decided_at=decided_at, allowed=allowed, reason=reason))
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
