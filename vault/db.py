"""Engines and transactions.

The request (or CLI command) owns the transaction: services only ``flush``,
and ``Database.write()`` commits once at the end, so a change and its audit
event commit together or not at all.

SQLite gets WAL, a busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` for
writing transactions: a writer takes the write lock up front instead of
failing half-way with "database is locked" when another writer got there
first. Readers use plain deferred transactions and never block writers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from threading import RLock
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session


def _sqlite_engine(url: str, *, busy_timeout_ms: int, begin: str) -> Engine:
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


class Database:
    """The vault's database: one URL, a reading and a writing way in."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 5000) -> None:
        self.url = url
        if url.startswith("sqlite"):
            self.read_engine = _sqlite_engine(url, busy_timeout_ms=busy_timeout_ms, begin="BEGIN")
            self.write_engine = _sqlite_engine(
                url, busy_timeout_ms=busy_timeout_ms, begin="BEGIN IMMEDIATE"
            )
            # Threads of one process queue here instead of in SQLite's busy handler,
            # which sleeps in growing steps and turns contention into long tails.
            self._write_lock: AbstractContextManager[object] = RLock()
        else:
            self.read_engine = self.write_engine = create_engine(
                url, pool_pre_ping=True, pool_size=5, max_overflow=10
            )
            self._write_lock = nullcontext()

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on any error."""
        with self._write_lock, Session(self.write_engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading only; closing it rolls back anything written.

        Objects read stay loaded after the block (closing, unlike an explicit
        rollback, does not expire them), so callers may use what they read.
        """
        with Session(self.read_engine, expire_on_commit=False) as session:
            yield session

    def dispose(self) -> None:
        self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            self.write_engine.dispose()
