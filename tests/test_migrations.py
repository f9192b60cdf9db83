"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import importlib
import json
import pkgutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import select

import vault.models
from vault.clock import FixedClock
from vault.crypto.envelope import DataKey, wrap_key
from vault.crypto.keyring import KeyRing
from vault.db import Database
from vault.migrations import alembic_config, upgrade
from vault.models import AuditHead, PersonKey, Subscription, TermsHistory
from vault.models.types import new_id
from vault.services import terms
from vault.services.audit import GENESIS_HASH
from vault.services.decision_store import campaign_verdicts, load_terms_at
from vault.services.decisions import evaluate
from vault.services.keys import DataKeys
from vault.services.merchants import find_client, register_client
from vault.services.permissions import Permission
from vault.services.rules import RuleSet
from vault.services.subscriptions import set_permission

# The ``database_url`` fixture hands these tests an empty database, not a migrated copy.
pytestmark = pytest.mark.empty_db


def _load_every_model() -> sa.MetaData:
    """The models' metadata with every table module of ``vault.models`` imported.

    A table class registers itself on import, so without this the comparison
    would depend on which other modules happened to be imported first.
    """
    for module in pkgutil.iter_modules(vault.models.__path__):
        importlib.import_module(f"{vault.models.__name__}.{module.name}")
    return vault.models.metadata


def _schema_differences(url: str) -> list[object]:
    metadata = _load_every_model()
    database = Database(url)
    try:
        with database.write_engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        database.dispose()


def _current_revision(url: str) -> str | None:
    database = Database(url)
    try:
        with database.write_engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        database.dispose()


def _schema_snapshot(url: str) -> dict[str, object]:
    """Tables with their columns, indexes and constraints, as the database reports them."""
    database = Database(url)
    try:
        inspector = sa.inspect(database.write_engine)
        snapshot: dict[str, object] = {}
        for table in sorted(inspector.get_table_names()):
            snapshot[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"])
                            for c in inspector.get_columns(table)],
                "indexes": sorted((i["name"] or "", tuple(i["column_names"]), i["unique"])
                                  for i in inspector.get_indexes(table)),
                "unique": sorted(tuple(u["column_names"])
                                 for u in inspector.get_unique_constraints(table)),
                "foreign_keys": sorted((tuple(f["constrained_columns"]), f["referred_table"])
                                       for f in inspector.get_foreign_keys(table)),
            }
        return snapshot
    finally:
        database.dispose()


def _audit_heads(url: str) -> list[tuple[int, int, bytes]]:
    database = Database(url)
    try:
        with database.read() as session:
            rows = session.execute(sa.select(AuditHead.id, AuditHead.seq, AuditHead.hash))
            return [(row.id, row.seq, bytes(row.hash)) for row in rows]
    finally:
        database.dispose()


def test_upgrade_builds_the_schema_the_models_describe(database_url: str) -> None:
    assert _schema_snapshot(database_url) == {}

    upgrade(database_url)

    assert set(_load_every_model().tables) <= set(_schema_snapshot(database_url))
    assert _schema_differences(database_url) == []


def test_upgrade_reaches_the_newest_revision_and_a_second_upgrade_changes_nothing(
    database_url: str,
) -> None:
    assert _current_revision(database_url) is None

    upgrade(database_url)

    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert head is not None
    assert _current_revision(database_url) == head
    assert _audit_heads(database_url) == [(1, 0, GENESIS_HASH)]
    schema = _schema_snapshot(database_url)

    upgrade(database_url)

    assert _current_revision(database_url) == head
    assert _schema_snapshot(database_url) == schema
    assert _audit_heads(database_url) == [(1, 0, GENESIS_HASH)]


def _pragma(connection: sa.Connection, name: str) -> object:
    return connection.exec_driver_sql(f"PRAGMA {name}").scalar()


@pytest.mark.parametrize("busy_timeout_ms", [5000, 1234])
def test_sqlite_engines_use_wal_foreign_keys_and_the_busy_timeout(
    tmp_path: Path, busy_timeout_ms: int
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'pragmas.db'}", busy_timeout_ms=busy_timeout_ms)
    try:
        for engine in (database.read_engine, database.write_engine):
            with engine.connect() as connection:
                assert str(_pragma(connection, "journal_mode")).lower() == "wal"
                assert _pragma(connection, "foreign_keys") == 1
                assert _pragma(connection, "busy_timeout") == busy_timeout_ms
    finally:
        database.dispose()


def test_sqlite_enforces_foreign_keys_after_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fk.db'}"
    upgrade(url)
    database = Database(url)
    try:
        with pytest.raises(IntegrityError), database.write() as session:
            session.execute(
                sa.text("INSERT INTO profile (person_id, updated_at) "
                        "VALUES ('no-such-person', '2026-01-01 00:00:00')")
            )
        with database.read() as session:
            assert session.execute(sa.text("SELECT count(*) FROM profile")).scalar_one() == 0
    finally:
        database.dispose()


def test_sqlite_writers_take_the_write_lock_up_front_and_readers_never_wait(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'locks.db'}"
    upgrade(url)
    holder, other = Database(url), Database(url, busy_timeout_ms=50)
    try:
        with holder.write() as session:
            # A read inside a writing transaction already holds the write lock...
            assert session.execute(sa.select(AuditHead.seq)).scalar_one() == 0
            with pytest.raises(OperationalError, match="locked"), other.write() as blocked:
                blocked.execute(sa.select(AuditHead.seq)).scalar_one()
            # ...while a reader carries on (WAL).
            with other.read() as reader:
                assert reader.execute(sa.select(AuditHead.seq)).scalar_one() == 0
    finally:
        holder.dispose()
        other.dispose()


# -- 0007: the sealed terms record, built for the subscriptions already there -------------

_PREVIOUS_HEAD = "0006"


def _seed_before_terms(url: str, keyring: KeyRing) -> dict[str, dict[str, object]]:
    """People and subscriptions as the vault wrote them before 0007; what each should get."""
    database = Database(url)
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    people = {
        "tokyo": {"status": "active", "grid": [Permission("email", "offers").to_json()],
                  "rules": RuleSet().to_json(), "zone": "Asia/Tokyo",
                  "order": ["post", "email", "sms", "phone", "push"], "shared": ["email"],
                  "reason": "allowed"},
        "blocking": {"status": "active", "grid": [Permission("email", "offers").to_json()],
                     "rules": {"blocked": [{"channel": "email", "purpose": "*"}],
                               "channels_off": [], "quiet_hours": None},
                     "zone": None, "order": None, "shared": None,
                     "reason": "blocked_by_person"},
        "revoked": {"status": "revoked", "grid": [Permission("email", "offers").to_json()],
                    "rules": RuleSet().to_json(), "zone": None, "order": None, "shared": [],
                    "reason": "revoked"},
        "no_grid": {"status": "active", "grid": None, "rules": None, "zone": None,
                    "order": None, "shared": None, "reason": "not_granted"},
    }
    try:
        with database.write() as session:
            issued = register_client(session, clock=FixedClock(now), name="Old Shop",
                                     redirect_uris=["https://shop.example/cb"])
            merchant_id = find_client(session, issued.client_id).id
            run = session.connection().execute
            for name, person in people.items():
                pid, sid = new_id(), new_id()
                raw = DataKey.generate()
                key = DataKey(raw)
                kek_id = keyring.active_kek_id

                def sealed(value: object, table: str, row_id: str, field: str,
                           key: DataKey = key) -> bytes | None:
                    if value is None:
                        return None
                    text_value = value if isinstance(value, str) else json.dumps(value)
                    return key.encrypt(text_value.encode(), table=table, row_id=row_id,
                                       field=field)

                run(sa.text("INSERT INTO person (id, created_at) VALUES (:id, :now)"),
                    {"id": pid, "now": now})
                run(sa.text("INSERT INTO person_key (person_id, kek_id, wrapped, created_at) "
                            "VALUES (:p, :k, :w, :now)"),
                    {"p": pid, "k": kek_id, "now": now,
                     "w": wrap_key(keyring.active_kek, kek_id, pid, raw)})
                run(sa.text("INSERT INTO profile (person_id, email, time_zone, channel_order, "
                            "updated_at) VALUES (:p, :e, :z, :o, :now)"),
                    {"p": pid, "now": now,
                     "e": sealed(f"{name}@example.org", "profile", pid, "email"),
                     "z": sealed(person["zone"], "profile", pid, "time_zone"),
                     "o": sealed(person["order"], "profile", pid, "channel_order")})
                if person["rules"] is not None:
                    run(sa.text("INSERT INTO global_rules (person_id, record, version, "
                                "updated_at) VALUES (:p, :r, 1, :now)"),
                        {"p": pid, "now": now,
                         "r": sealed(person["rules"], "global_rules", pid, "record")})
                run(sa.text("INSERT INTO subscription (id, person_id, merchant_id, subject, "
                            "status, shared_fields, created_at, updated_at) VALUES "
                            "(:id, :p, :m, :subject, :status, :shared, :now, :now)"),
                    {"id": sid, "p": pid, "m": merchant_id, "subject": f"sub_{name}",
                     "status": person["status"], "now": now,
                     "shared": sealed(person["shared"], "subscription", sid,
                                      "shared_fields")})
                if person["grid"] is not None:
                    run(sa.text("INSERT INTO contact_permission (subscription_id, record, "
                                "version, updated_at) VALUES (:s, :r, 1, :now)"),
                        {"s": sid, "now": now,
                         "r": sealed({"permissions": person["grid"]}, "contact_permission",
                                     sid, "record")})
                person.update(person_id=pid, subscription_id=sid, merchant_id=merchant_id)
    finally:
        database.dispose()
    return people


def test_upgrade_from_the_previous_head_builds_the_terms_of_existing_subscriptions(
    database_url: str, tmp_path: Path,
) -> None:
    keyring = KeyRing.generate()
    keyring.save(tmp_path / "keyring.json")
    upgrade(database_url, _PREVIOUS_HEAD)
    people = _seed_before_terms(database_url, keyring)

    upgrade(database_url, keyring=keyring)

    assert _schema_differences(database_url) == []
    database = Database(database_url)
    data_keys = DataKeys(keyring)
    try:
        with database.write() as session:
            built: dict[str, bytes | None] = {}
            for name, person in people.items():
                row = session.get(Subscription, person["subscription_id"])
                key_row = session.get(PersonKey, person["person_id"])
                assert row is not None and key_row is not None
                if person["status"] != "active":
                    assert (row.terms, row.wrapped_key) == (None, None)
                    continue
                assert (row.key_kek_id, row.wrapped_key) == (key_row.kek_id, key_row.wrapped)
                key = data_keys.open(row.person_id, key_row.kek_id, key_row.wrapped)
                built[name] = terms.open_record(key, row.id, row.terms or b"")
                # What the services build from the same rows, byte for byte.
                terms.refresh(session, row.person_id, data_keys=data_keys,
                              now=datetime.now(UTC))
                assert terms.open_record(key, row.id, row.terms or b"") == built[name]
            session.rollback()
        tokyo = terms.parse_detail(built["tokyo"] or b"")
        assert (tokyo.time_zone, tokyo.channel_order, tokyo.shared_fields) == (
            "Asia/Tokyo", ("post", "email", "sms", "phone", "push"), ("email",))
        merchant_id = str(people["tokyo"]["merchant_id"])
        with database.driver() as db:
            verdicts = campaign_verdicts(
                db, merchant_id=merchant_id, subjects=[f"sub_{name}" for name in people],
                channel="email", purpose="offers", now=datetime.now(UTC), data_keys=data_keys)
        assert {name: verdicts[f"sub_{name}"].reason for name in people} == {
            name: person["reason"] for name, person in people.items()}
    finally:
        database.dispose()


def test_building_terms_without_the_key_ring_stops_the_upgrade_and_says_why(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    keyring = KeyRing.generate()
    upgrade(database_url, _PREVIOUS_HEAD)
    _seed_before_terms(database_url, keyring)
    monkeypatch.setenv("VAULT_KEYRING", str(tmp_path / "nowhere.json"))

    with pytest.raises(RuntimeError, match="needs the key ring"):
        upgrade(database_url)

    assert _current_revision(database_url) == _PREVIOUS_HEAD


def test_building_terms_loads_the_key_ring_the_settings_name(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    keyring = KeyRing.generate()
    keyring.save(tmp_path / "keyring.json")
    upgrade(database_url, _PREVIOUS_HEAD)
    people = _seed_before_terms(database_url, keyring)
    monkeypatch.setenv("VAULT_KEYRING", str(tmp_path / "keyring.json"))

    upgrade(database_url)

    database = Database(database_url)
    try:
        with database.read() as session:
            row = session.get(Subscription, people["tokyo"]["subscription_id"])
            assert row is not None and row.terms is not None
    finally:
        database.dispose()


# -- 0008: the history of terms, from the upgrade on ------------------------------------------


def test_upgrade_from_0007_keeps_the_current_terms_in_force_and_history_from_then_on(
    database_url: str,
) -> None:
    keyring = KeyRing.generate()
    upgrade(database_url, "0006")
    people = _seed_before_terms(database_url, keyring)
    upgrade(database_url, "0007", keyring=keyring)
    made = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

    upgrade(database_url)

    assert _schema_differences(database_url) == []
    database = Database(database_url)
    data_keys = DataKeys(keyring)
    later = made + timedelta(days=3)
    try:
        with database.read() as session:
            rows = {name: session.get(Subscription, person["subscription_id"])
                    for name, person in people.items()}
            assert session.execute(sa.text("SELECT count(*) FROM terms_history")).scalar() == 0
        # In force since the subscription was made (active), or since it ended (revoked).
        assert {name: row.terms_since for name, row in rows.items() if row is not None} == {
            name: made for name in people}
        tokyo = people["tokyo"]
        with database.write() as session:
            set_permission(session, person_id=str(tokyo["person_id"]),
                           subscription_id=str(tokyo["subscription_id"]), channel="email",
                           purpose="offers", allowed=False, data_keys=data_keys,
                           clock=FixedClock(later))
        with database.driver() as db:
            reasons = [load_terms_at(db, merchant_id=str(tokyo["merchant_id"]),
                                     subject="sub_tokyo", purpose="offers", at=moment,
                                     data_keys=data_keys)
                       for moment in (made - timedelta(days=1), later - timedelta(hours=1),
                                      later + timedelta(hours=1))]
        # Before the subscription was made: the oldest state kept, as before the upgrade.
        assert [evaluate(loaded.terms if loaded else None, "email", "offers",
                         made + timedelta(hours=1)).reason for loaded in reasons] == [
            "allowed", "allowed", "not_granted"]
        with database.read() as session:
            (kept,) = session.exec(select(TermsHistory)).all()
        assert (kept.status, kept.valid_from, kept.valid_until) == ("active", made, later)
    finally:
        database.dispose()
