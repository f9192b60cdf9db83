"""Engines and transactions.

The request (or CLI command) owns the transaction: services only ``flush``,
and ``Database.write()`` commits once at the end, so a change and its audit
event commit together or not at all.

SQLite gets WAL, a busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` for
writing transactions: a writer takes the write lock up front instead of
failing half-way with "database is locked" when another writer got there
first. Readers use plain deferred transactions and never block writers.

The decision hot path skips the ORM and talks to the driver (PEP 249)
through ``Database.driver()``. On SQLite the same rules hold there (one lock
for the writers of a process, ``BEGIN IMMEDIATE``, one commit at the end); on
PostgreSQL it has a small autocommit pool of its own for reads and evidence.
"""

from __future__ import annotations

import json
import logging
import re
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from threading import Event, RLock, Thread
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

log = logging.getLogger(__name__)


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


_NAMED = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


@lru_cache(maxsize=64)
def _pyformat(sql: str) -> str:
    return _NAMED.sub(r"%(\1)s", sql)


#: lines of text that need no escaping inside a quoted array element (subjects and ids)
_PLAIN_ELEMENTS = re.compile(r"[A-Za-z0-9._~-]*(?:\n[A-Za-z0-9._~-]*)*")


def _quoted_element(value: str) -> str:
    """One element of a PostgreSQL array literal, quoted so any text stays itself."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Driver:
    """A pooled driver-level (PEP 249) connection and its dialect.

    SQL is written once with ``:name`` parameters and handed to the driver
    as is on SQLite and in ``%(name)s`` form on PostgreSQL. Rows come back as
    plain tuples: building SQLAlchemy statements and rows cost more than
    running the small queries of a decision. ``relaxed``: commits on this
    connection already return before they reach the disk (see
    ``Database.driver``).
    """

    __slots__ = ("_database", "_writer", "connection", "dialect", "relaxed")

    def __init__(self, database: Database | None, connection: Any, dialect: str,
                 *, writer: bool = False, relaxed: bool = False) -> None:
        self._database = database
        self.connection = connection
        self.dialect = dialect
        self._writer = writer
        self.relaxed = relaxed

    @classmethod
    def of(cls, connection: Connection) -> Driver:
        """The driver connection under a SQLAlchemy one, inside that one's transaction."""
        return cls(None, connection.connection, connection.dialect.name, writer=True)

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else _pyformat(sql)

    def rows(self, sql: str, params: Mapping[str, object]) -> list[tuple[Any, ...]]:
        # PostgreSQL's binary results carry sealed values as they are, not as hex text.
        cursor = self.connection.cursor(binary=True) if self.dialect == "postgresql" \
            else self.connection.cursor()
        try:
            cursor.execute(self._sql(sql), params)
            return cursor.fetchall()
        finally:
            cursor.close()

    def run(self, sql: str, params: Mapping[str, object] | None = None) -> None:
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._sql(sql), params or {})
        finally:
            cursor.close()

    def many(self, values: Sequence[str]) -> str:
        """A list parameter as one text: JSON for ``json_each`` (SQLite), an array literal
        for ``CAST(… AS text[])`` (PostgreSQL).

        One text instead of a driver-built array: psycopg quotes each element of a
        list on its own, which for a campaign's 10,000 subjects cost more than
        PostgreSQL took to find them.
        """
        if self.dialect == "sqlite":
            return json.dumps(list(values))
        if values and _PLAIN_ELEMENTS.fullmatch("\n".join(values)):
            return '{"' + '","'.join(values) + '"}'
        return "{" + ",".join(_quoted_element(value) for value in values) + "}"

    def stamp(self, moment: datetime) -> object:
        """A UTC time as the column stores it (SQLite: naive text, as SQLAlchemy writes it)."""
        if self.dialect == "sqlite":
            return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return moment

    @staticmethod
    def moment(value: object) -> datetime:
        """A time read from a column, as an aware UTC datetime (see ``stamp``)."""
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    @contextmanager
    def writing(self) -> Iterator[Driver]:
        """Where to append a row after reading through this connection.

        On SQLite a writing connection of its own (``Database.driver(write=True)``),
        so this one never held the write lock while it read. On PostgreSQL this
        connection, which commits each statement as it runs. Under a SQLAlchemy
        connection (``of``), that connection's transaction.
        """
        if self._writer or self._database is None or self.dialect != "sqlite":
            yield self
        else:
            with self._database.driver(write=True) as writer:
                yield writer


class _WalCheckpoints:
    """Copies SQLite's write-ahead log into the database file from a thread of its own.

    SQLite does it in whichever connection commits once the log passes 1,000
    pages, so one request in a few hundred writes pays for a checkpoint:
    page writes and an fsync of the database file, milliseconds at best.
    Passive checkpoints here, a few times a second, keep the log below that
    mark; SQLite's own stays as the backstop. A passive checkpoint never
    waits for, or holds up, a reader or a writer.
    """

    def __init__(self, database: Database, every: float) -> None:
        self._database = weakref.ref(database)
        self._every = every
        self._stop = Event()
        self._thread = Thread(target=self._run, name="sqlite-wal-checkpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            database = self._database()
            if database is None:
                return
            try:
                with database.read_engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except Exception:  # a failed tick is retried on the next; SQLite's own still runs
                log.warning("background WAL checkpoint failed", exc_info=True)
            del database

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Database:
    """The vault's database: one URL, a reading and a writing way in."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 5000) -> None:
        self.url = url
        self._checkpoints: _WalCheckpoints | None = None
        if url.startswith("sqlite"):
            self.read_engine = _sqlite_engine(url, busy_timeout_ms=busy_timeout_ms, begin="BEGIN")
            self.write_engine = _sqlite_engine(
                url, busy_timeout_ms=busy_timeout_ms, begin="BEGIN IMMEDIATE"
            )
            # Threads of one process queue here instead of in SQLite's busy handler,
            # which sleeps in growing steps and turns contention into long tails.
            self._write_lock: AbstractContextManager[object] = RLock()
            self._driver_engine: Engine | None = None
        else:
            self.read_engine = self.write_engine = create_engine(
                url, pool_pre_ping=True, pool_size=5, max_overflow=10
            )
            self._write_lock = nullcontext()
            self._driver_engine = create_engine(
                url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                connect_args={"autocommit": True, "options": "-c synchronous_commit=off"},
            )

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

    @contextmanager
    def driver(self, *, write: bool = False) -> Iterator[Driver]:
        """A driver-level connection for the hot path (see ``Driver``).

        SQLite: reading, a connection of the reading engine, where each
        statement reads its own snapshot; writing, ``write()`` without the
        ORM: the process's writer lock, ``BEGIN IMMEDIATE``, one commit on
        success, rollback on any error.

        PostgreSQL: a pool of its own whose connections run each statement as
        its own transaction (autocommit: no BEGIN, COMMIT or ROLLBACK round
        trips) and commit without waiting for the disk (``synchronous_commit``
        off). That is the durability decision evidence has always had (see
        ``vault.services.contacting``): a crash of the database server itself
        may lose its last fraction of a second. Write nothing else through it,
        and only one statement per change.
        """
        if self._driver_engine is not None:
            connection = self._driver_engine.raw_connection()
            try:
                yield Driver(self, connection, "postgresql", writer=write, relaxed=True)
            finally:
                connection.close()
            return
        engine = self.write_engine if write else self.read_engine
        with self._write_lock if write else nullcontext():
            connection = engine.raw_connection()
            try:
                driver = Driver(self, connection, engine.dialect.name, writer=write)
                if write:
                    driver.run("BEGIN IMMEDIATE")
                yield driver
                if write:
                    connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                connection.close()

    def checkpoint_in_background(self, every: float = 0.25) -> None:
        """Checkpoint SQLite's log from a thread (see ``_WalCheckpoints``); for servers.

        Nothing to do on PostgreSQL or an in-memory database.
        """
        path = make_url(self.url).database if self.dialect == "sqlite" else None
        if path and path != ":memory:" and self._checkpoints is None:
            self._checkpoints = _WalCheckpoints(self, every)

    def dispose(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.stop()
            self._checkpoints = None
        self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            self.write_engine.dispose()
        if self._driver_engine is not None:
            self._driver_engine.dispose()
