"""The shop's customer list: a small SQLite file of vault subjects.

The shop deliberately keeps no e-mail address or phone number: the vault
hands out the address with each "yes" (``Decision.reach``), so an address the
person withdraws or changes is never used from a stale copy here. What is
kept is the pairwise ``subject``, whether the person revoked, and the ids of
webhook deliveries already handled (the vault delivers at least once).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    subject      TEXT PRIMARY KEY,
    status       TEXT NOT NULL DEFAULT 'active',
    connected_at TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    event_id    TEXT PRIMARY KEY,
    received_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Customer:
    """One connected person, as the shop knows them: by subject only."""

    subject: str
    status: str
    connected_at: str
    revoked_at: str | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class CustomerStore:
    """Open-per-call access to ``customers.db`` (safe from the web app's threads and the job)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # ``with connection`` only commits; ``closing`` also releases the file handle.
        with closing(sqlite3.connect(self.path, timeout=5)) as db, db:
            yield db

    def add(self, subject: str) -> None:
        """Remember a newly connected subject (connecting again re-activates it)."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO customers (subject, status, connected_at) VALUES (?, 'active', ?) "
                "ON CONFLICT(subject) DO UPDATE SET status = 'active', revoked_at = NULL",
                (subject, _now()))

    def mark_revoked(self, subject: str) -> bool:
        """Stop treating this subject as a customer; True if it was an active one."""
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE customers SET status = 'revoked', revoked_at = ? "
                "WHERE subject = ? AND status = 'active'", (_now(), subject))
            return cursor.rowcount > 0

    def first_delivery(self, event_id: str) -> bool:
        """Record a webhook delivery; False if this event was handled before."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO webhook_deliveries (event_id, received_at) VALUES (?, ?)",
                (event_id, _now()))
            return cursor.rowcount > 0

    def customers(self, status: str | None = None) -> list[Customer]:
        """Every customer (or those with ``status``), oldest connection first."""
        query = "SELECT subject, status, connected_at, revoked_at FROM customers"
        args: tuple[str, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY connected_at, subject", args).fetchall()
        return [Customer(*row) for row in rows]
