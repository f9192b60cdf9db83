"""Seeding a vault with many people subscribed to one merchant, fast, for benchmarks.

Writes the same rows the services would (sealed profile, rules, permissions,
wrapped data keys, each subscription's sealed terms with its copy of the
wrapped key) but in bulk with SQLAlchemy Core: signing up 100,000 people one
by one through argon2 would measure the password hash, not the vault.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

from sqlalchemy import insert

from vault.crypto.blind_index import email_index
from vault.crypto.envelope import DataKey, wrap_key
from vault.crypto.keyring import KeyRing
from vault.db import Database
from vault.models import (
    ContactPermission,
    GlobalRules,
    Person,
    PersonKey,
    Profile,
    Subscription,
)
from vault.models.types import new_id
from vault.services import terms
from vault.services.permissions import Permission, seal_grid
from vault.services.rules import RuleSet
from vault.services.subscriptions import new_subject
from vault.vocabulary import CHANNELS

CHUNK = 5_000


def seed_people(database: Database, keyring: KeyRing, merchant_id: str, count: int) -> list[str]:
    """Create ``count`` people each granting ``merchant_id`` email for order updates."""
    now = datetime.now(UTC)
    subjects: list[str] = []
    for start in range(0, count, CHUNK):
        rows: dict[str, list[dict[str, object]]] = {
            "person": [], "person_key": [], "profile": [], "global_rules": [],
            "subscription": [], "contact_permission": []}
        for n in range(start, min(start + CHUNK, count)):
            pid, sid, subject = new_id(), new_id(), new_subject()
            raw = DataKey.generate()
            key = DataKey(raw)
            email = f"person{n}@bench.example"
            rows["person"].append({"id": pid, "email_index": email_index(
                keyring.blind_index_key, email), "password_hash": None, "created_at": now,
                "erased_at": None})
            wrapped = wrap_key(keyring.active_kek, keyring.active_kek_id, pid, raw)
            rows["person_key"].append({"person_id": pid, "kek_id": keyring.active_kek_id,
                                       "wrapped": wrapped, "created_at": now,
                                       "rewrapped_at": None})

            def seal(field: str, value: str, pid: str = pid, key: DataKey = key) -> bytes:
                return key.encrypt(value.encode(), table="profile", row_id=pid, field=field)

            rows["profile"].append({
                "person_id": pid, "name": None, "email": seal("email", email), "phone": None,
                "address": None, "language": None, "interests": None,
                "time_zone": seal("time_zone", "Europe/Amsterdam"),
                "channel_order": seal("channel_order", json.dumps(["email", "sms", "phone",
                                                                   "post", "push"])),
                "updated_at": now})
            rows["global_rules"].append({
                "person_id": pid, "version": 1, "updated_at": now,
                "record": key.encrypt(json.dumps(RuleSet().to_json()).encode(),
                                      table="global_rules", row_id=pid, field="record")})
            grid = {("email", "order_updates"): Permission("email", "order_updates")}
            rows["subscription"].append({
                "id": sid, "person_id": pid, "merchant_id": merchant_id, "subject": subject,
                "status": "active", "created_at": now, "updated_at": now, "revoked_at": None,
                "shared_fields": key.encrypt(json.dumps(["email"]).encode(),
                                             table="subscription", row_id=sid,
                                             field="shared_fields"),
                "terms": terms.seal(key, sid, terms.compose(
                    status="active", permissions=[p.to_json() for p in grid.values()],
                    rules=RuleSet().to_json(), time_zone="Europe/Amsterdam",
                    channel_order=list(CHANNELS), shared_fields=["email"])),
                "key_kek_id": keyring.active_kek_id, "wrapped_key": wrapped})
            rows["contact_permission"].append({"subscription_id": sid, "version": 1,
                                               "updated_at": now,
                                               "record": seal_grid(key, sid, grid)})
            subjects.append(subject)
        with database.write() as session:
            connection = session.connection()
            for model in (Person, PersonKey, Profile, GlobalRules, Subscription,
                          ContactPermission):
                table = model.__table__  # type: ignore[attr-defined]
                connection.execute(insert(table), rows[table.name])
    return subjects


def random_unknown_subjects(count: int) -> list[str]:
    return ["sub_" + secrets.token_urlsafe(18) for _ in range(count)]
