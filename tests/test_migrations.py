"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError, OperationalError

import vault.models
from vault.db import Database
from vault.migrations import alembic_config, upgrade
from vault.models import AuditHead
from vault.services.audit import GENESIS_HASH

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
