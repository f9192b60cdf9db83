"""What every benchmark here needs: a fresh database, a seeded vault, a served one.

Each run gets its own database (an SQLite file in a temporary folder, or a
uniquely named PostgreSQL database that is dropped afterwards), a fresh key
ring, one shop and people subscribed to it written in bulk (``bench.seed``),
and ``prefvault serve`` (gunicorn) on a free loopback port.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
from sqlalchemy import select

from bench.seed import seed_people
from vault.clock import SystemClock
from vault.crypto.keyring import KeyRing
from vault.db import Database
from vault.migrations import upgrade
from vault.models import Merchant
from vault.services.merchants import register_client

PG_ADMIN = os.environ.get("VAULT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


T = TypeVar("T")


def open_loop(url: str, total: int, rate: float, send: Callable[[httpx.Client, int], T], *,
              connections: int = 8) -> tuple[list[tuple[float, T]], float]:
    """Send request ``n`` (``send(client, n)``) at ``start + n / rate``, over ``connections``.

    A fixed arrival rate: each latency (ms) counts from the request's scheduled
    moment, so a server that falls behind shows in the figures instead of
    slowing the senders down. The clients are built before the clock starts
    (an ``httpx.Client`` loads the CA bundle, about 15 ms of CPU each), so the
    first requests are not late for the client's own reasons. Returns each
    request's (latency, result) and the seconds from the first scheduled
    moment to the last answer.
    """
    clients = [httpx.Client(base_url=url, timeout=30) for _ in range(connections)]
    results: list[tuple[float, T]] = []
    lock = threading.Lock()
    counter = iter(range(total))
    start = time.perf_counter() + 0.2

    def worker(client: httpx.Client) -> None:
        local: list[tuple[float, T]] = []
        for n in counter:
            due = start + n / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            result = send(client, n)
            local.append(((time.perf_counter() - due) * 1000, result))
        with lock:
            results.extend(local)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    return results, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Backend:
    """A fresh database of one kind, dropped afterwards."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        if kind == "sqlite":
            self.url = f"sqlite:///{workdir / 'bench.db'}"
            self.name = None
        else:
            self.name = f"pv_bench_{secrets.token_hex(4)}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
            self.url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.name}"

    def drop(self) -> None:
        if self.name:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclass
class Seeded:
    """A migrated vault with one shop and its subscribers, in a folder of its own."""

    kind: str
    workdir: Path
    backend: Backend
    keyring: KeyRing
    database: Database
    client_id: str
    client_secret: str
    merchant_id: str
    subjects: list[str]


@contextmanager
def seeded_vault(kind: str, people: int, *, shop: str = "Bench Shop") -> Iterator[Seeded]:
    """Seed ``people`` subscribers of one shop; drop the database and folder afterwards.

    PostgreSQL is analysed after seeding, as autovacuum would have done on a
    server that has it on.
    """
    workdir = Path(tempfile.mkdtemp(prefix="pv-bench-"))
    backend = Backend(kind, workdir)
    keyring = KeyRing.generate()
    keyring.save(workdir / "keys" / "keyring.json")
    database: Database | None = None
    try:
        upgrade(backend.url, keyring=keyring)
        database = Database(backend.url)
        with database.write() as session:
            issued = register_client(session, clock=SystemClock(), name=shop,
                                     redirect_uris=["https://bench.example/cb"])
            merchant_id = session.exec(select(Merchant.id).where(
                Merchant.client_id == issued.client_id)).one()[0]
        started = time.perf_counter()
        subjects = seed_people(database, keyring, merchant_id, people)
        if kind == "postgresql":
            with database.write_engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
        print(f"[{kind}] seeded {people} people in {time.perf_counter() - started:.1f} s",
              flush=True)
        yield Seeded(kind, workdir, backend, keyring, database, issued.client_id,
                     issued.client_secret, merchant_id, subjects)
    finally:
        if database is not None:
            database.dispose()
        backend.drop()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Served:
    """A running ``prefvault serve`` and what talks to it."""

    process: subprocess.Popen[bytes]
    url: str
    #: the environment the server runs with (for ``prefvault`` commands on the same vault)
    env: dict[str, str]

    def token(self, client_id: str, client_secret: str) -> dict[str, str]:
        """A client-credentials token, as an Authorization header."""
        answer = httpx.post(self.url + "/oauth/token",
                            data={"grant_type": "client_credentials"},
                            auth=(client_id, client_secret))
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@contextmanager
def served(vault: Seeded, *, workers: int = 2, threads: int = 8,
           extra_env: dict[str, str] | None = None) -> Iterator[Served]:
    """gunicorn serving ``vault`` on a free loopback port until the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "VAULT_DATABASE_URL": vault.backend.url,
           "VAULT_KEYRING": str(vault.keyring.path), "VAULT_VAR_DIR": str(vault.workdir),
           "VAULT_ISSUER": url, "VAULT_LOG_LEVEL": "WARNING", **(extra_env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "vault.cli", "serve", "--port", str(port), "--workers",
         str(workers), "--threads", str(threads)], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("the vault did not start")
        yield Served(process, url, env)
    finally:
        process.terminate()
        process.wait(timeout=30)
