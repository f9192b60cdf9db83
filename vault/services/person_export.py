"""Everything the vault holds about one person, as one JSON document (GDPR Art. 20).

The document is described by ``docs/person-export.schema.json`` (JSON
Schema 2020-12) and ``docs/person-export.md``; its ``schema`` field names
that schema's ``$id`` and ``schema_version`` its version, so a program
reading an export knows what it reads. A change that removes or renames a
field is a new version.

The profile and the permissions are decrypted: it is the person's own data,
handed to them. Nothing here is about anyone else: subscriptions, contacts
and consent-log events are selected through the person's own id and the
pairwise subjects of their own subscriptions only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from vault.clock import Clock
from vault.errors import NotFound
from vault.models import AuditEvent, ContactEvent, Person, Subscription
from vault.models.subscription import ACTIVE
from vault.services import subscriptions as subscription_service
from vault.services.accounts import AccountService
from vault.services.activity import Connection, connections
from vault.services.audit import event_document
from vault.services.keys import DataKeys
from vault.services.rules import get_rules

SCHEMA_ID = "https://prefvault.example/schemas/person-export/v1.json"
SCHEMA_VERSION = 1


def iso(moment: datetime | None) -> str | None:
    """An instant as RFC 3339 in UTC with a ``Z``, as everywhere in the vault's JSON."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _contacts(session: Session, subscription_id: str) -> list[dict[str, object]]:
    rows = session.exec(
        select(ContactEvent).where(ContactEvent.subscription_id == subscription_id)
        .order_by(col(ContactEvent.occurred_at), col(ContactEvent.id))
    ).all()
    return [{
        "id": row.id,
        "channel": row.channel,
        "purpose": row.purpose,
        "occurred_at": iso(row.occurred_at),
        "recorded_at": iso(row.recorded_at),
        "allowed": row.allowed,
        "violation": not row.allowed,
        "reason": row.reason,
        "decision_id": row.decision_id,
    } for row in rows]


def _subscription(session: Session, connection: Connection, *,
                  data_keys: DataKeys) -> dict[str, object]:
    sub = session.get(Subscription, connection.subscription_id)
    assert sub is not None  # listed a moment ago in this transaction
    terms = subscription_service.view(session, sub, data_keys=data_keys)
    return {
        "id": sub.id,
        "merchant": {"id": connection.merchant_id, "name": connection.merchant_name},
        "subject": sub.subject,
        "status": sub.status,
        "created_at": iso(sub.created_at),
        "updated_at": iso(sub.updated_at),
        "revoked_at": iso(sub.revoked_at),
        "granted_scopes": terms.grant.scope.split() if sub.status == ACTIVE else [],
        "permissions": [
            {**permission.to_json(), "expires_at": iso(permission.expires_at)}
            for permission in terms.permissions.values()
        ],
        "shared_fields": list(terms.shared_fields),
        "contacts": _contacts(session, sub.id),
    }


def _consent_history(session: Session, person_id: str,
                     mine: list[Connection]) -> list[dict[str, object]]:
    """Every consent-log event about the person, in log order, as the log holds it.

    ``hash`` is the event's chain hash, so an entry can be matched with an
    auditor's export of the log.
    """
    about_me = col(AuditEvent.person_ref) == person_id
    if mine:
        about_me = about_me | (
            col(AuditEvent.merchant_id).in_(sorted({c.merchant_id for c in mine}))
            & col(AuditEvent.subject).in_(sorted({c.subject for c in mine})))
    events = session.exec(
        select(AuditEvent).where(about_me).order_by(col(AuditEvent.seq))).all()
    return [{**event_document(event), "hash": event.hash.hex()} for event in events]


def build_export(
    session: Session,
    person_id: str,
    *,
    accounts: AccountService,
    data_keys: DataKeys,
    clock: Clock,
) -> dict[str, object]:
    """The whole export as a JSON-ready dict (see ``docs/person-export.md``)."""
    person = session.get(Person, person_id)
    if person is None or person.erased_at is not None:
        raise NotFound("no such person")
    profile = accounts.get_profile(session, person_id)
    rules = get_rules(session, person_id, data_keys=data_keys)
    mine = connections(session, person_id)
    return {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "generated_at": iso(clock.now()),
        "person": {"id": person.id, "created_at": iso(person.created_at)},
        "profile": profile.to_json(),
        "rules": {**rules.to_json(), "version": rules.version},
        "subscriptions": [_subscription(session, c, data_keys=data_keys) for c in mine],
        "consent_history": _consent_history(session, person_id, mine),
    }


def export_json(document: dict[str, object]) -> str:
    """The export as text: UTF-8, indented for a person who opens it in an editor."""
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=False) + "\n"
