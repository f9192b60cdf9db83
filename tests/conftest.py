"""Shared fixtures: a key ring, a migrated database on SQLite and PostgreSQL, an app.

Storage tests take ``database`` and run once per backend. The PostgreSQL run
creates a database with a unique name on the server named by
``VAULT_TEST_DATABASE_URL`` and drops it afterwards. Without that variable
the PostgreSQL cases are skipped, unless ``VAULT_REQUIRE_POSTGRES=1`` (as in
CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg import sql
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from vault.app import create_app
from vault.clock import FixedClock
from vault.config import Settings
from vault.crypto.keyring import KeyRing
from vault.db import Database
from vault.extensions import Runtime
from vault.migrations import upgrade

POSTGRES_ENV = "VAULT_TEST_DATABASE_URL"


def _pg_admin_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("VAULT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{POSTGRES_ENV} is not set but VAULT_REQUIRE_POSTGRES=1")
        pytest.skip(f"{POSTGRES_ENV} not set")
    return url


class PostgresDatabase:
    """A throw-away PostgreSQL database with a unique name."""

    def __init__(self, admin_url: str) -> None:
        self.admin = make_url(admin_url)
        self.name = f"pv_test_{secrets.token_hex(6)}"
        self.url = self.admin.set(database=self.name).render_as_string(hide_password=False)

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(
            host=self.admin.host or "127.0.0.1",
            port=self.admin.port or 5432,
            user=self.admin.username or "postgres",
            password=self.admin.password,
            dbname=self.admin.database or "postgres",
            autocommit=True,
        )

    def create(self, template: str | None = None) -> None:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name))
        if template is not None:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(self.name), sql.Identifier(template))
        with self._connect() as conn:
            conn.execute(query)

    def drop(self) -> None:
        with self._connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.name)
                )
            )

    def reset(self) -> None:
        """Empty every table (the schema stays) and restore the audit log's head row."""
        with psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://"),
                             autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            tables = [row[0] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'")]
            conn.execute(sql.SQL("TRUNCATE TABLE {} CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in tables)))
            conn.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, %s)",
                         (bytes(32),))

    def libpq_args(self) -> list[str]:
        return ["-h", self.admin.host or "127.0.0.1", "-p", str(self.admin.port or 5432),
                "-U", self.admin.username or "postgres", self.name]


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Databases migrated once per test run and reused by each test that needs one.

    SQLite tests get a copy of a migrated file; PostgreSQL tests share one
    migrated database of the run, emptied before each test. Tests marked
    ``empty_db`` get a brand-new database of their own instead.
    """
    templates: dict[str, object] = {}
    yield templates
    pg = templates.get("postgresql")
    if isinstance(pg, PostgresDatabase):
        pg.drop()


def _sqlite_template(templates: dict[str, object], factory: pytest.TempPathFactory) -> Path:
    path = templates.get("sqlite")
    if not isinstance(path, Path):
        path = factory.mktemp("template") / "vault.db"
        upgrade(f"sqlite:///{path}")
        templates["sqlite"] = path
    return path


def _pg_template(templates: dict[str, object], admin_url: str) -> PostgresDatabase:
    pg = templates.get("postgresql")
    if not isinstance(pg, PostgresDatabase):
        pg = PostgresDatabase(admin_url)
        pg.create()
        upgrade(pg.url)
        templates["postgresql"] = pg
    return pg


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path,
                 migrated_templates: dict[str, object],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database URL, once per backend: migrated, or empty for tests marked ``empty_db``."""
    empty = request.node.get_closest_marker("empty_db") is not None
    if request.param == "sqlite":
        path = tmp_path / "vault.db"
        if not empty:
            shutil.copyfile(_sqlite_template(migrated_templates, tmp_path_factory), path)
        yield f"sqlite:///{path}"
        return
    admin_url = _pg_admin_url() or ""
    if not empty:
        # One migrated database for the whole run, emptied before each test:
        # creating and dropping a PostgreSQL database costs about two seconds here.
        shared = _pg_template(migrated_templates, admin_url)
        shared.reset()
        request.node.pg = shared
        yield shared.url
        return
    pg = PostgresDatabase(admin_url)
    pg.create()
    request.node.pg = pg
    try:
        yield pg.url
    finally:
        pg.drop()


@pytest.fixture
def postgres(request: pytest.FixtureRequest, database_url: str) -> PostgresDatabase | None:
    """The PostgreSQL handle behind ``database_url`` (None on SQLite)."""
    return getattr(request.node, "pg", None)


@pytest.fixture
def keyring(tmp_path: Path) -> KeyRing:
    ring = KeyRing.generate()
    ring.save(tmp_path / "keys" / "keyring.json")
    return ring


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))


@pytest.fixture
def settings(tmp_path: Path, database_url: str, keyring: KeyRing) -> Settings:
    return Settings(
        var_dir=tmp_path,
        database_url=database_url,
        keyring_path=keyring.path or tmp_path / "keys" / "keyring.json",
        environment="test",
        password_hash_profile="fast",
    ).resolved()


@pytest.fixture
def runtime(settings: Settings, keyring: KeyRing, clock: FixedClock) -> Iterator[Runtime]:
    """Services over a freshly migrated database."""
    rt = Runtime.build(settings, keyring, clock)
    yield rt
    rt.database.dispose()


@pytest.fixture
def database(runtime: Runtime) -> Database:
    return runtime.database


@pytest.fixture
def app(settings: Settings, keyring: KeyRing, clock: FixedClock,
        runtime: Runtime) -> Iterator[Flask]:
    application = create_app(settings, keyring=keyring, clock=clock)
    yield application
    application.extensions["prefvault"].database.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class LiveVault:
    """A vault served over real HTTP on 127.0.0.1, in a thread of the test process.

    The clock is the test's ``FixedClock``, so expiry can be tested by moving it.
    """

    def __init__(self, base_url: str, app: Flask, runtime: Runtime, clock: FixedClock) -> None:
        self.base_url = base_url
        self.app = app
        self.runtime = runtime
        self.clock = clock


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_vault(settings: Settings, keyring: KeyRing, clock: FixedClock,
               runtime: Runtime) -> Iterator[LiveVault]:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    application = create_app(settings.replace(issuer=base_url), keyring=keyring, clock=clock)
    server = make_server("127.0.0.1", port, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield LiveVault(base_url, application, application.extensions["prefvault"], clock)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        application.extensions["prefvault"].database.dispose()


#: Debian's Chromium; tests never download a browser of their own
CHROMIUM = os.environ.get("VAULT_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, object]) -> dict[str, object]:
    """pytest-playwright, pointed at Debian's Chromium with a quiet, offline profile."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"],
    }


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    """Where a browser test writes its screenshots (kept as test artifacts)."""
    folder = ARTIFACTS / "screenshots" / request.node.name.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests last.

    Playwright's sync API keeps an event loop running in the main thread for
    the rest of the session once a browser starts, and ``asyncio.run`` (the
    async SDK tests) refuses to start inside it.
    """
    browser_fixtures = {"page", "browser", "context"}
    items.sort(key=lambda item: bool(browser_fixtures & set(getattr(item, "fixturenames", ()))))
