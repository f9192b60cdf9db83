#!/usr/bin/env python3
"""Crash safety: kill the vault with SIGKILL at random moments, then check what survived.

The script builds a fresh vault (an SQLite file in a temporary folder, or a
new, uniquely named PostgreSQL database that it drops at the end) and then,
``--kills`` times over:

1. starts the vault: ``prefvault serve`` (gunicorn, two workers) and two
   agents, processes that apply people's changes through the service layer
   the way the web pages do (one transaction each, committed before the
   answer);
2. drives consent changes at it from a few client threads: sign-ups, grants
   through the OAuth consent flow (authorize, the consent page, the code
   exchange), permission changes, revocations, profile updates, erasures and
   decisions, and now and then ``prefvault keys rotate`` in a process of its own;
3. after a random moment (seeded RNG) kills every vault process with SIGKILL
   at once, mid-request or not;
4. checks the database as the crash left it: SQLite ``PRAGMA
   integrity_check``; every change a client saw acknowledged is there;
   nothing is half-applied (a change without its audit event, its webhook or
   its version bump, or the other way round); the audit hash chain verifies
   and agrees with the state (the last event about each subscription matches
   its status); every KEK that wraps a data key is still in the key ring and
   every sealed record still opens; each subscription's kept terms and its
   current ones follow each other without a gap (a change is never there
   without the state it replaced).

A change whose request was cut off by the kill is "in doubt": it may have
committed or not. The check finds out which from the database, and either
is fine, as long as it is all there or not there at all.

    .venv/bin/python scripts/crash_safety.py --backend sqlite --kills 200 --seed 1
    .venv/bin/python scripts/crash_safety.py --backend postgresql --kills 200 --seed 1

PostgreSQL runs against ``--postgres-url`` (default ``VAULT_TEST_DATABASE_URL``
or ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``). The report
goes to standard output (``--json`` for a machine-readable one); the exit
status is 1 when anything was lost, half-applied or damaged.

To start fast after each kill, the server, the agents and the key rotations
are forked from a ``multiprocessing`` fork server that has imported the vault
once: the server's process and a rotation's run the ``prefvault`` command's
own entry point (``vault.cli.main``) with ``serve ...`` and ``keys rotate
--json``, as the command line would.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import multiprocessing
import os
import queue
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
PREFVAULT = Path(sys.executable).with_name("prefvault")
REDIRECT_URI = "https://shop.example/cb"
PASSWORD = "crash safety pass phrase"  # noqa: S105 (the test people's)
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MERCHANTS = 3
CLIENT_THREADS = 4
AGENTS = 2
#: live people the traffic keeps between (more sign-ups below, more erasures above)
FEW_PEOPLE, MANY_PEOPLE = 6, 40
#: how the client threads choose what to do
WEIGHTS = {"sign_up": 8, "grant": 22, "set_permission": 24, "revoke": 10,
           "update_profile": 14, "erase": 4, "decide": 18}
CHANNELS = ("email", "sms", "phone", "post", "push")
PURPOSES = ("order_updates", "service", "abandoned_cart", "offers", "personalised_offers",
            "surveys", "partner_offers")


class Cancelled(Exception):
    """The vault was killed under a request: the request is in doubt."""


class Refused(Exception):
    """The vault answered, but refused the change: nothing to record."""


# -- the workspace ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Workspace:
    """A temporary folder with a key ring, a database and the vault's environment."""

    def __init__(self, backend: str, postgres_url: str, keep: bool) -> None:
        self.backend = backend
        self.keep = keep
        self.folder = Path(tempfile.mkdtemp(prefix="prefvault-crash-"))
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.keyring_path = self.folder / "var" / "keys" / "keyring.json"
        self.pg_admin: str | None = None
        self.pg_name: str | None = None
        if backend == "sqlite":
            self.sqlite_path: Path | None = self.folder / "var" / "vault.db"
            self.database_url = f"sqlite:///{self.sqlite_path}"
        else:
            from sqlalchemy.engine import make_url

            self.sqlite_path = None
            self.pg_admin = postgres_url
            self.pg_name = f"pv_crash_{secrets.token_hex(6)}"
            self.database_url = make_url(postgres_url).set(database=self.pg_name) \
                .render_as_string(hide_password=False)
        many = "1000000 per minute"
        self.env = {
            "VAULT_VAR_DIR": str(self.folder / "var"),
            "VAULT_DATABASE_URL": self.database_url,
            "VAULT_KEYRING": str(self.keyring_path),
            "VAULT_ISSUER": self.base_url,
            # plain HTTP on 127.0.0.1: "production" would mark the session cookie Secure
            "VAULT_ENV": "development",
            "VAULT_LOG_LEVEL": "WARNING",
            "VAULT_RATE_LIMIT_LOGIN": many,
            "VAULT_RATE_LIMIT_LOGIN_ADDRESS": many,
            "VAULT_RATE_LIMIT_TOKEN": many,
            "VAULT_RATE_LIMIT_API": many,
        }

    def _pg(self) -> Any:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.pg_admin or DEFAULT_POSTGRES)
        return psycopg.connect(host=url.host or "127.0.0.1", port=url.port or 5432,
                               user=url.username or "postgres", password=url.password,
                               dbname=url.database or "postgres", autocommit=True)

    def create(self) -> None:
        if self.pg_name is not None:
            with self._pg() as conn:
                conn.execute(f'CREATE DATABASE "{self.pg_name}"')
        self.prefvault("init", "--json")

    def prefvault(self, *args: str) -> Any:
        """Run the ``prefvault`` command with this vault's settings; its JSON output."""
        done = subprocess.run([str(PREFVAULT), *args], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"prefvault {' '.join(args)} failed: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def wait_for_disconnects(self, timeout: float = 20.0) -> None:
        """Wait until PostgreSQL has ended the sessions of the killed processes.

        A killed client's transaction may still be committing on the server;
        checking before its backend is gone could miss a change it then makes.
        """
        if self.pg_name is None:
            return
        deadline = time.monotonic() + timeout
        with self._pg() as conn:
            while time.monotonic() < deadline:
                left = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                    (self.pg_name,)).fetchone()[0]
                if not left:
                    return
                time.sleep(0.02)
        raise RuntimeError("PostgreSQL sessions of the killed vault did not end")

    def remove(self) -> None:
        if self.pg_name is not None:
            with contextlib.suppress(Exception), self._pg() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)


# -- the vault's processes (run in children of the fork server) ------------------------------


def _serve(env: dict[str, str], port: int, log: str) -> None:
    """``prefvault serve`` in a process group of its own, so one SIGKILL takes every worker."""
    os.setsid()
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from vault.cli import main

    sys.exit(main(["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                   "--threads", "4"]))


def _rotate_keys(env: dict[str, str], output: str) -> None:
    """``prefvault keys rotate --json``, its report written to ``output`` when it is done."""
    os.setsid()
    os.environ.update(env)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    from vault.cli import main

    sys.exit(main(["keys", "rotate", "--json", "--batch-size", "3"]))


def _agent(env: dict[str, str], conn: Connection, password_hash: str) -> None:
    """Apply people's changes through the services, one transaction each, then answer."""
    os.environ.update(env)
    from vault.clock import SystemClock
    from vault.config import Settings
    from vault.crypto.keyring import KeyRing
    from vault.crypto.passwords import Passwords
    from vault.errors import VaultError
    from vault.extensions import Runtime

    class Prehashed(Passwords):
        """Hashing passwords is not what is tested here: every test person shares one
        (made once, with the vault's own cost profile, so logging in needs no rehash)."""

        def hash(self, password: str) -> str:
            return password_hash if password == PASSWORD else super().hash(password)

    settings = Settings.from_env().replace(password_hash_profile="fast")  # noqa: S106
    runtime = Runtime.build(settings, KeyRing.load(settings.keyring_path), SystemClock())
    runtime.accounts.passwords = Prehashed("fast")
    conn.send({"ready": True})
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        try:
            answer = _apply(runtime, request)
        except VaultError as exc:
            answer = {"refused": type(exc).__name__, "detail": exc.detail}
        conn.send(answer)


def _apply(runtime: Any, request: dict[str, Any]) -> dict[str, Any]:
    from vault.models import ContactPermission
    from vault.services import subscriptions as subscription_service

    op = request["op"]
    with runtime.database.write() as session:
        if op == "sign_up":
            person_id = runtime.accounts.sign_up(session, email=request["email"],
                                                 password=PASSWORD,
                                                 profile={"name": request["name"]})
            return {"person_id": person_id}
        if op == "set_permission":
            subscription_service.set_permission(
                session, person_id=request["person_id"],
                subscription_id=request["subscription_id"], channel=request["channel"],
                purpose=request["purpose"], allowed=request["allowed"],
                max_per_week=request["max_per_week"], data_keys=runtime.data_keys,
                clock=runtime.clock)
            row = session.get(ContactPermission, request["subscription_id"])
            return {"version": row.version if row else None}
        if op == "revoke":
            sub = subscription_service.revoke(session, person_id=request["person_id"],
                                              subscription_id=request["subscription_id"],
                                              data_keys=runtime.data_keys,
                                              clock=runtime.clock)
            return {"status": sub.status}
        if op == "update_profile":
            runtime.accounts.update_profile(session, request["person_id"],
                                            {"name": request["name"]})
            return {}
        if op == "erase":
            receipt = runtime.accounts.erase(session, request["person_id"])
            return {"audit_seq": receipt.audit_seq}
    raise ValueError(f"unknown op {op}")


class Vault:
    """The running vault: the gunicorn server, the agents and any key rotation."""

    def __init__(self, workspace: Workspace, context: Any) -> None:
        from vault.crypto.passwords import Passwords

        self.workspace = workspace
        self.context = context
        self.password_hash = Passwords("default").hash(PASSWORD)
        self.server: Any = None
        self.agents: queue.Queue[tuple[Any, Connection]] = queue.Queue()
        self.agent_processes: list[Any] = []
        self.rotations: list[Any] = []
        self.lock = threading.Lock()
        self.dead = threading.Event()

    def start(self) -> None:
        self.dead.clear()
        log = str(self.workspace.folder / "server.log")
        self.server = self.context.Process(target=_serve, daemon=False,
                                           args=(self.workspace.env, self.workspace.port, log))
        self.server.start()
        pending = []
        for _ in range(AGENTS):
            ours, theirs = self.context.Pipe()
            process = self.context.Process(target=_agent,
                                           args=(self.workspace.env, theirs, self.password_hash))
            process.start()
            theirs.close()
            self.agent_processes.append(process)
            pending.append((process, ours))
        deadline = time.monotonic() + 120
        for process, conn in pending:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError("an agent did not start")
            conn.recv()
            self.agents.put((process, conn))
        with httpx.Client(timeout=2) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{self.workspace.base_url}/health").status_code == 200:
                        return
                if time.monotonic() > deadline or not self.server.is_alive():
                    raise RuntimeError("the server did not start; see "
                                       f"{self.workspace.folder / 'server.log'}")
                time.sleep(0.05)

    def rotate_keys(self) -> Any:
        """Start ``prefvault keys rotate`` (the CLI's own entry point) in a child process."""
        with self.lock:
            if self.dead.is_set():
                return None
            output = self.workspace.folder / f"rotation-{len(self.rotations)}.json"
            process = self.context.Process(target=_rotate_keys,
                                           args=(self.workspace.env, str(output)))
            process.start()
            process.output = output
            self.rotations.append(process)
            return process

    def kill(self) -> None:
        """SIGKILL every vault process at once."""
        with self.lock:
            self.dead.set()
            # Only processes this script started and that are still running: a finished
            # one's id may already belong to someone else.
            if self.server is not None and self.server.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.server.pid, signal.SIGKILL)
            for process in self.agent_processes:
                process.kill()
            for rotation in self.rotations:
                if rotation.is_alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(rotation.pid, signal.SIGKILL)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(rotation.pid, signal.SIGKILL)  # not yet its own group
        if self.server is not None:
            self.server.join(30)
        for process in self.agent_processes:
            process.join(30)
        for rotation in self.rotations:
            rotation.join(30)
        self._wait_for_group_to_go()
        self.server = None
        self.agent_processes = []
        self.rotations = []
        while not self.agents.empty():
            self.agents.get_nowait()[1].close()

    def _wait_for_group_to_go(self) -> None:
        """The gunicorn workers are the server's children: make sure none survived."""
        port = self.workspace.port
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("a killed server still accepts connections")

    @contextlib.contextmanager
    def agent(self) -> Iterator[Connection]:
        while True:
            if self.dead.is_set():
                raise Cancelled("the vault is down")
            try:
                process, conn = self.agents.get(timeout=0.05)
                break
            except queue.Empty:
                continue
        healthy = False
        try:
            yield conn
            healthy = True
        finally:
            if healthy:
                self.agents.put((process, conn))

    def ask_agent(self, request: dict[str, Any]) -> dict[str, Any]:
        with self.agent() as conn:
            try:
                conn.send(request)
                while not conn.poll(0.05):
                    if self.dead.is_set() and not conn.poll(0.2):
                        raise Cancelled("the agent was killed")
                answer = conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                raise Cancelled(str(exc)) from None
        if "refused" in answer:
            raise Refused(answer["refused"])
        return answer


# -- what the clients know: acknowledged changes and the world they imply ---------------------


@dataclass
class Sub:
    merchant_id: str
    id: str | None = None
    subject: str | None = None
    status: str = "none"
    grants: int = 0
    permission_changes: int = 0
    revokes: int = 0
    #: cells set by acknowledged permission changes since the last grant
    cells: dict[tuple[str, str], tuple[bool, int | None]] = field(default_factory=dict)
    #: the access tokens the merchant got for this subscription (SHA-256 hex)
    tokens: list[str] = field(default_factory=list)

    @property
    def version(self) -> int:
        return self.grants + self.permission_changes


@dataclass
class Person:
    email: str
    name: str
    id: str | None = None
    erased: bool = False
    profile_updates: int = 0
    subs: dict[str, Sub] = field(default_factory=dict)
    http: httpx.Client | None = None
    logged_in: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class InDoubt:
    """A change whose request the kill cut off."""

    op: str
    person: Person
    args: dict[str, Any]


@dataclass
class Tally:
    kills: int = 0
    acknowledged: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    in_doubt_applied: Counter[str] = field(default_factory=Counter)
    in_doubt_not_applied: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    half_applied: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    rotations: list[str] = field(default_factory=list)
    rotations_started: int = 0
    seconds_running: float = 0.0
    seconds_checking: float = 0.0
    seconds_starting: float = 0.0


class World:
    """The people, merchants and acknowledged changes, as the clients saw them."""

    def __init__(self, merchants: list[dict[str, str]]) -> None:
        self.merchants = merchants
        self.people: list[Person] = []
        self.lock = threading.Lock()
        self.in_doubt: list[InDoubt] = []
        self.decisions: list[str] = []
        self.initial_kek: str = ""
        self.serial = 0

    def live(self) -> list[Person]:
        return [p for p in self.people if p.id is not None and not p.erased]

    def next_serial(self) -> int:
        with self.lock:
            self.serial += 1
            return self.serial


# -- the consent flow over HTTP --------------------------------------------------------------


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "inputs": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(a)


def _forms(html: str) -> list[dict[str, Any]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def _value(form: dict[str, Any], name: str) -> str:
    return next((i.get("value", "") for i in form["inputs"] if i.get("name") == name), "")


def _http(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=30, follow_redirects=False)


def _request(vault: Vault, call: Callable[[], httpx.Response]) -> httpx.Response:
    """One HTTP request; a connection the kill cut off puts the change in doubt."""
    if vault.dead.is_set():
        raise Cancelled("the vault is down")
    try:
        response = call()
    except httpx.TransportError as exc:
        raise Cancelled(str(exc)) from None
    if response.status_code >= 500:
        if vault.dead.is_set():
            raise Cancelled(f"{response.status_code} while the vault was dying")
        raise RuntimeError(f"{response.request.url.path} answered {response.status_code}: "
                           f"{response.text[:300]}")
    return response


def log_in(vault: Vault, person: Person) -> None:
    assert person.http is not None
    page = _request(vault, lambda: person.http.get("/login"))
    form = next(f for f in _forms(page.text) if f["action"].split("?")[0].endswith("/login"))
    data = {"csrf_token": _value(form, "csrf_token"), "email": person.email,
            "password": PASSWORD}
    answer = _request(vault, lambda: person.http.post("/login", data=data))
    if answer.status_code != 302:
        raise RuntimeError(f"login refused: {answer.status_code}")
    person.logged_in = True


def open_consent(vault: Vault, person: Person, merchant: dict[str, str],
                 rng: random.Random) -> tuple[str, dict[str, Any], str]:
    """Authorize and read the consent page; (URL, the form allowing some of it, verifier)."""
    assert person.http is not None
    asked = rng.sample([f"contact:{c}:{p}" for c in CHANNELS for p in PURPOSES], 3)
    asked += ["profile:email", "profile:name"][:rng.randint(0, 2)]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()) \
        .rstrip(b"=").decode()
    url = "/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": merchant["client_id"],
        "redirect_uri": REDIRECT_URI, "scope": " ".join(asked), "state": secrets.token_hex(8),
        "code_challenge": challenge, "code_challenge_method": "S256"})
    page = _request(vault, lambda: person.http.get(url))
    if page.status_code == 302 and "/login" in page.headers.get("Location", ""):
        person.logged_in = False
        raise Refused("the session ended")
    if page.status_code != 200:
        raise RuntimeError(f"consent page answered {page.status_code}: {page.text[:300]}")
    form = next(f for f in _forms(page.text)
                if any(i.get("name") == "grant" for i in f["inputs"]))
    offered = [i["value"] for i in form["inputs"] if i.get("name") == "grant"]
    ticked = rng.sample(offered, rng.randint(1, len(offered)))
    return url, {"csrf_token": _value(form, "csrf_token"), "action": "allow",
                 "grant": ticked}, verifier


def allow(vault: Vault, person: Person, url: str, form: dict[str, Any]) -> str:
    """Post the consent form: the grant. Its redirect carrying a code acknowledges it."""
    assert person.http is not None
    answer = _request(vault, lambda: person.http.post(url, data=form))
    location = answer.headers.get("Location", "")
    code = parse_qs(urlsplit(location).query).get("code", [""])[0]
    if answer.status_code != 302 or not code:
        raise RuntimeError(f"consent answered {answer.status_code} {location[:200]}")
    return code


def exchange(vault: Vault, merchant: dict[str, str], code: str, verifier: str) -> dict[str, Any]:
    with _http(vault.workspace.base_url) as http:
        answer = _request(vault, lambda: http.post(
            "/oauth/token", auth=(merchant["client_id"], merchant["client_secret"]),
            data={"grant_type": "authorization_code", "code": code,
                  "redirect_uri": REDIRECT_URI, "code_verifier": verifier}))
    if answer.status_code != 200:
        raise RuntimeError(f"code exchange answered {answer.status_code}: {answer.text[:300]}")
    return answer.json()


# -- the traffic -------------------------------------------------------------------------------


class Traffic:
    """Client threads driving changes at the vault until it is killed."""

    def __init__(self, vault: Vault, world: World, tally: Tally, seed: int) -> None:
        self.vault = vault
        self.world = world
        self.tally = tally
        self.seed = seed
        self.errors: list[str] = []
        self.merchant_tokens: dict[str, str] = {}
        self.database: Any = None

    def run(self, cycle: int, seconds: float, rotate_at: float | None) -> None:
        """Drive changes for ``seconds``, then kill the vault (and wait for the clients)."""
        from vault.db import Database

        self.database = Database(self.vault.workspace.database_url)
        try:
            self._run(cycle, seconds, rotate_at)
        finally:
            self.database.dispose()

    def _subscription_id(self, subject: str) -> str | None:
        """The vault's own id of a subscription (as its person's pages know it)."""
        from sqlmodel import select

        from vault.models import Subscription

        with self.database.read() as session:
            return session.exec(select(Subscription.id)
                                .where(Subscription.subject == subject)).first()

    def _run(self, cycle: int, seconds: float, rotate_at: float | None) -> None:
        threads = [threading.Thread(target=self._client, args=(cycle, n), daemon=True)
                   for n in range(CLIENT_THREADS)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        rotation: Any = None
        while (left := seconds - (time.monotonic() - started)) > 0:
            if rotate_at is not None and rotation is None and \
                    time.monotonic() - started >= rotate_at:
                rotation = self.vault.rotate_keys()
                self.tally.rotations_started += rotation is not None
            if rotation is not None and rotation.exitcode is not None:
                self._rotation_done(rotation)
                rotation = None
                rotate_at = None
            time.sleep(min(left, 0.01))
        self.vault.kill()
        if rotation is not None:
            self._rotation_done(rotation)
        for thread in threads:
            thread.join(60)

    def _rotation_done(self, rotation: Any) -> None:
        """A rotation that exited 0 and printed its report is acknowledged."""
        if rotation.exitcode == 0:
            report = json.loads(rotation.output.read_text())
            self.tally.rotations.append(report["kek_id"])
            self.tally.acknowledged["key_rotation"] += 1
        elif rotation.exitcode not in (None, -signal.SIGKILL):
            self.errors.append(f"prefvault keys rotate exited with {rotation.exitcode}")

    def _client(self, cycle: int, number: int) -> None:
        rng = random.Random(f"{self.seed}/{cycle}/{number}")  # noqa: S311 (a test schedule)
        ops = list(WEIGHTS)
        weights = [WEIGHTS[o] for o in ops]
        while not self.vault.dead.is_set():
            op = rng.choices(ops, weights)[0]
            try:
                getattr(self, f"_{op}")(rng)
            except (Cancelled, Refused):
                continue
            except Exception as exc:  # reported, and the run fails
                if not self.vault.dead.is_set():
                    self.errors.append(f"{op}: {type(exc).__name__}: {exc}")
                    return

    # each operation holds the person's lock, so a person has one change in flight at most

    def _pick(self, rng: random.Random, test: Callable[[Person], bool]) -> Person | None:
        with self.world.lock:
            candidates = [p for p in self.world.live() if test(p)]
            rng.shuffle(candidates)
        for person in candidates:
            if person.lock.acquire(blocking=False):
                if not person.erased and test(person):
                    return person
                person.lock.release()
        return None

    @contextlib.contextmanager
    def _change(self, op: str, person: Person, **args: Any) -> Iterator[None]:
        """Run one change: acknowledged if it returns, in doubt if the kill cut it off."""
        doubt = InDoubt(op, person, args)
        with self.world.lock:
            self.world.in_doubt.append(doubt)
        try:
            yield
        except Refused:
            self.tally.refused[op] += 1
            with self.world.lock:
                self.world.in_doubt.remove(doubt)
            raise
        except Cancelled:
            raise  # stays in doubt
        else:
            with self.world.lock:
                self.world.in_doubt.remove(doubt)
            self.tally.acknowledged[op] += 1

    def _sign_up(self, rng: random.Random) -> None:
        if len(self.world.live()) >= MANY_PEOPLE:
            return self._erase(rng)
        serial = self.world.next_serial()
        person = Person(email=f"person{serial}.{self.seed}@example.org", name=f"Name {serial}")
        person.lock.acquire()
        try:
            with self.world.lock:
                self.world.people.append(person)
            with self._change("sign_up", person):
                answer = self.vault.ask_agent({"op": "sign_up", "email": person.email,
                                               "name": person.name})
                person.id = answer["person_id"]
        finally:
            person.lock.release()
        return None

    def _grant(self, rng: random.Random) -> None:
        person = self._pick(rng, lambda p: True)
        if person is None:
            return self._sign_up(rng)
        try:
            if person.http is None:
                person.http = _http(self.vault.workspace.base_url)
            if not person.logged_in:
                log_in(self.vault, person)
            merchant = rng.choice(self.world.merchants)
            url, form, verifier = open_consent(self.vault, person, merchant, rng)
            with self._change("grant", person, merchant_id=merchant["id"]):
                code = allow(self.vault, person, url, form)
                sub = person.subs.setdefault(merchant["id"], Sub(merchant["id"]))
                sub.status = "active"
                sub.grants += 1
                sub.cells.clear()
            token = exchange(self.vault, merchant, code, verifier)
            sub.subject = token["subject"]
            sub.id = self._subscription_id(sub.subject)
            sub.tokens.append(hashlib.sha256(token["access_token"].encode()).hexdigest())
            self.tally.acknowledged["code_exchange"] += 1
        finally:
            person.lock.release()
        return None

    def _active_sub(self, person: Person, rng: random.Random) -> Sub | None:
        subs = [s for s in person.subs.values() if s.status == "active" and s.id]
        return rng.choice(subs) if subs else None

    def _set_permission(self, rng: random.Random) -> None:
        person = self._pick(rng, lambda p: any(s.status == "active" and s.id
                                               for s in p.subs.values()))
        if person is None:
            return self._grant(rng)
        try:
            sub = self._active_sub(person, rng)
            assert sub is not None
            cell = (rng.choice(CHANNELS), rng.choice(PURPOSES))
            allowed = rng.random() < 0.6
            cap = rng.choice([None, rng.randint(1, 1000)])
            with self._change("set_permission", person, sub=sub, cell=cell,
                              value=(allowed, cap)):
                answer = self.vault.ask_agent({
                    "op": "set_permission", "person_id": person.id, "subscription_id": sub.id,
                    "channel": cell[0], "purpose": cell[1], "allowed": allowed,
                    "max_per_week": cap})
                sub.permission_changes += 1
                sub.cells[cell] = (allowed, cap)
                if answer["version"] != sub.version:
                    self.errors.append(f"version {answer['version']} after a change, "
                                       f"expected {sub.version}")
        finally:
            person.lock.release()
        return None

    def _revoke(self, rng: random.Random) -> None:
        person = self._pick(rng, lambda p: any(s.status == "active" and s.id
                                               for s in p.subs.values()))
        if person is None:
            return self._grant(rng)
        try:
            sub = self._active_sub(person, rng)
            assert sub is not None
            with self._change("revoke", person, sub=sub):
                self.vault.ask_agent({"op": "revoke", "person_id": person.id,
                                      "subscription_id": sub.id})
                sub.status = "revoked"
                sub.revokes += 1
        finally:
            person.lock.release()
        return None

    def _update_profile(self, rng: random.Random) -> None:
        person = self._pick(rng, lambda p: True)
        if person is None:
            return self._sign_up(rng)
        try:
            name = f"Name {self.world.next_serial()}"
            with self._change("update_profile", person, name=name):
                self.vault.ask_agent({"op": "update_profile", "person_id": person.id,
                                      "name": name})
                person.name = name
                person.profile_updates += 1
        finally:
            person.lock.release()
        return None

    def _erase(self, rng: random.Random) -> None:
        if len(self.world.live()) <= FEW_PEOPLE:
            return self._sign_up(rng)
        person = self._pick(rng, lambda p: True)
        if person is None:
            return None
        try:
            with self._change("erase", person):
                self.vault.ask_agent({"op": "erase", "person_id": person.id})
                _erase_in_model(person)
        finally:
            person.lock.release()
        return None

    def _decide(self, rng: random.Random) -> None:
        with self.world.lock:
            known = [(s.merchant_id, s.subject) for p in self.world.people
                     for s in p.subs.values() if s.subject]
        if not known:
            return self._grant(rng)
        merchant_id, subject = rng.choice(known)
        merchant = next(m for m in self.world.merchants if m["id"] == merchant_id)
        with _http(self.vault.workspace.base_url) as http:
            token = self.merchant_tokens.get(merchant_id)
            if token is None:
                answer = _request(self.vault, lambda: http.post(
                    "/oauth/token", data={"grant_type": "client_credentials"},
                    auth=(merchant["client_id"], merchant["client_secret"])))
                token = self.merchant_tokens[merchant_id] = answer.json()["access_token"]
            body = {"subject": subject, "channel": rng.choice(CHANNELS),
                    "purpose": rng.choice(PURPOSES)}
            answer = _request(self.vault, lambda: http.post(
                "/api/v1/decisions", json=body, headers={"Authorization": f"Bearer {token}"}))
        if answer.status_code != 200:
            raise RuntimeError(f"decision answered {answer.status_code}: {answer.text[:200]}")
        with self.world.lock:
            self.world.decisions.append(answer.json()["decision_id"])
        self.tally.acknowledged["decision"] += 1
        return None


def _erase_in_model(person: Person) -> None:
    person.erased = True
    for sub in person.subs.values():
        if sub.status != "none":
            sub.status = "erased"


# -- the check after each kill ---------------------------------------------------------------

GRANTED = "subscription:grant:approved"
REVOKED = "subscription:grant:revoked"
PERMISSION = "subscription:permission:changed"
SIGNED_UP = "person:account:created"
PROFILE = "person:profile:updated"
ERASED = "person:account:erased"
KEK_ROTATED = "operator:kek:rotated"


@dataclass
class Snapshot:
    """The database as the crash left it, read once."""

    persons: dict[str, Any]
    #: person id -> (KEK id, wrapped data key)
    keys: dict[str, tuple[str, bytes]]
    profiles: dict[str, Any]
    rules: set[str]
    subs: dict[str, Any]
    permissions: dict[str, Any]
    tokens: dict[str, list[Any]]
    token_hashes: set[str]
    events: list[Any]
    outbox: Counter[tuple[str, str]]
    decisions: set[str]
    chain_ok: bool
    chain_problem: str
    #: subscription id -> its kept states (``terms_history``), oldest first
    history: dict[str, list[Any]] = field(default_factory=dict)


def take_snapshot(database: Any, decision_ids: list[str]) -> Snapshot:
    from sqlmodel import select

    from vault.models import (
        AuditEvent,
        ContactPermission,
        Decision,
        GlobalRules,
        OAuthToken,
        PersonKey,
        Profile,
        Subscription,
        TermsHistory,
        WebhookOutbox,
    )
    from vault.models import Person as PersonRow
    from vault.services.audit import check_log

    with database.read() as session:
        check = check_log(session)
        tokens: dict[str, list[Any]] = defaultdict(list)
        hashes: set[str] = set()
        for token in session.exec(select(OAuthToken)):
            hashes.add(token.access_token_hash)
            if token.subscription_id:
                tokens[token.subscription_id].append(token)
        history: dict[str, list[Any]] = defaultdict(list)
        for kept in session.exec(select(TermsHistory).order_by(TermsHistory.valid_from)):
            history[kept.subscription_id].append(kept)
        found: set[str] = set()
        for start in range(0, len(decision_ids), 500):
            chunk = decision_ids[start:start + 500]
            found.update(session.exec(select(Decision.id).where(Decision.id.in_(chunk))))
        return Snapshot(
            persons={p.id: p for p in session.exec(select(PersonRow))},
            keys={k.person_id: (k.kek_id, k.wrapped) for k in session.exec(select(PersonKey))},
            profiles={p.person_id: p for p in session.exec(select(Profile))},
            rules=set(session.exec(select(GlobalRules.person_id))),
            subs={s.id: s for s in session.exec(select(Subscription))},
            permissions={c.subscription_id: c for c in session.exec(select(ContactPermission))},
            tokens=tokens,
            token_hashes=hashes,
            events=list(session.exec(select(AuditEvent).order_by(AuditEvent.seq))),
            outbox=Counter((o.subject, o.event_type)
                           for o in session.exec(select(WebhookOutbox))),
            decisions=found,
            chain_ok=check.ok,
            chain_problem=f"{check.reason} at seq {check.first_bad_seq}" if not check.ok else "",
            history=dict(history),
        )


class Checker:
    """Everything that must hold after a crash; see the module docstring."""

    def __init__(self, workspace: Workspace, world: World, tally: Tally) -> None:
        self.workspace = workspace
        self.world = world
        self.tally = tally

    def run(self) -> None:
        from vault.crypto.keyring import KeyRing
        from vault.db import Database
        from vault.services.keys import DataKeys

        self._sqlite_integrity()
        database = Database(self.workspace.database_url)
        try:
            snap = take_snapshot(database, self.world.decisions)
            ring = KeyRing.load(self.workspace.keyring_path)
            keys = DataKeys(ring)
            if not snap.chain_ok:
                self.tally.damaged.append(f"audit chain: {snap.chain_problem}")
            self._resolve_in_doubt(snap)
            self._acknowledged(snap, keys)
            self._consistent(snap, keys, ring)
        finally:
            database.dispose()

    def _sqlite_integrity(self) -> None:
        if self.workspace.sqlite_path is None:
            return
        with contextlib.closing(sqlite3.connect(self.workspace.sqlite_path)) as conn:
            result = conn.execute("PRAGMA integrity_check").fetchall()
            if result != [("ok",)]:
                self.tally.damaged.append(f"integrity_check: {result[:5]}")
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                self.tally.damaged.append(f"foreign_key_check: {broken[:5]}")

    # -- in doubt: committed or not? ------------------------------------------------------

    def _events_about(self, snap: Snapshot) -> tuple[dict[str, Counter[str]],
                                                      dict[str, Counter[str]],
                                                      dict[tuple[str, str], int]]:
        by_subject: dict[str, Counter[str]] = defaultdict(Counter)
        by_person: dict[str, Counter[str]] = defaultdict(Counter)
        grants: dict[tuple[str, str], int] = Counter()
        for event in snap.events:
            if event.subject:
                by_subject[event.subject][event.tag] += 1
            if event.person_ref:
                by_person[event.person_ref][event.tag] += 1
            if event.tag == GRANTED:
                grants[(event.person_ref, event.merchant_id)] += 1
        return by_subject, by_person, grants

    def _resolve_in_doubt(self, snap: Snapshot) -> None:
        from vault.crypto.blind_index import email_index
        from vault.crypto.keyring import KeyRing

        ring = KeyRing.load(self.workspace.keyring_path)
        by_subject, by_person, grants = self._events_about(snap)
        for doubt in self.world.in_doubt:
            person, op = doubt.person, doubt.op
            applied = False
            if op == "sign_up":
                index = email_index(ring.blind_index_key, person.email)
                found = [p for p in snap.persons.values() if p.email_index == index]
                if found:
                    person.id = found[0].id
                    applied = True
            elif op == "grant":
                merchant_id = doubt.args["merchant_id"]
                sub = person.subs.setdefault(merchant_id, Sub(merchant_id))
                if grants.get((person.id, merchant_id), 0) > sub.grants:
                    sub.grants += 1
                    sub.status = "active"
                    sub.cells.clear()
                    applied = True
            elif op == "set_permission":
                sub = doubt.args["sub"]
                if by_subject[sub.subject][PERMISSION] > sub.permission_changes:
                    sub.permission_changes += 1
                    sub.cells[doubt.args["cell"]] = doubt.args["value"]
                    applied = True
            elif op == "revoke":
                sub = doubt.args["sub"]
                if by_subject[sub.subject][REVOKED] > sub.revokes:
                    sub.revokes += 1
                    sub.status = "revoked"
                    applied = True
            elif op == "update_profile":
                if by_person[person.id][PROFILE] > person.profile_updates:
                    person.profile_updates += 1
                    person.name = doubt.args["name"]
                    applied = True
            elif op == "erase" and by_person[person.id][ERASED]:
                _erase_in_model(person)
                applied = True
            counter = self.tally.in_doubt_applied if applied else self.tally.in_doubt_not_applied
            counter[op] += 1
        self.world.in_doubt.clear()
        # Subscriptions the model knows only by (person, merchant) get their ids now.
        for person in self.world.people:
            for sub in person.subs.values():
                if sub.id is None and sub.grants:
                    row = next((s for s in snap.subs.values() if s.person_id == person.id
                                and s.merchant_id == sub.merchant_id), None)
                    if row is not None:
                        sub.id, sub.subject = row.id, row.subject
        with self.world.lock:
            self.world.people = [p for p in self.world.people if p.id is not None]

    # -- every acknowledged change is there -----------------------------------------------

    def _acknowledged(self, snap: Snapshot, keys: Any) -> None:
        from vault.services.accounts import open_profile
        from vault.services.permissions import open_grid

        lost = self.tally.lost
        by_subject, by_person, _ = self._events_about(snap)
        for person in self.world.people:
            row = snap.persons.get(person.id or "")
            if row is None:
                lost.append(f"person {person.id}: signed up, not in the database")
                continue
            if person.erased != (row.erased_at is not None):
                lost.append(f"person {person.id}: erased is {row.erased_at is not None}, "
                            f"expected {person.erased}")
            if by_person[person.id][PROFILE] != person.profile_updates:
                lost.append(f"person {person.id}: {by_person[person.id][PROFILE]} profile "
                            f"events, expected {person.profile_updates}")
            if not person.erased and person.id in snap.profiles and person.id in snap.keys:
                try:
                    profile = open_profile(_open_key(keys, person.id, snap),
                                           snap.profiles[person.id])
                except Exception as exc:  # reported: a profile that no longer opens is lost
                    lost.append(f"person {person.id}: profile does not open: {exc}")
                    continue
                if profile.name != person.name:
                    lost.append(f"person {person.id}: name {profile.name!r}, "
                                f"expected {person.name!r}")
            for sub in person.subs.values():
                if not sub.grants:
                    continue
                srow = snap.subs.get(sub.id or "")
                if srow is None:
                    lost.append(f"person {person.id}: granted merchant {sub.merchant_id}, "
                                "no subscription")
                    continue
                if srow.status != sub.status:
                    lost.append(f"subscription {sub.id}: {srow.status}, expected {sub.status}")
                counts = by_subject[srow.subject]
                for tag, expected in ((GRANTED, sub.grants), (REVOKED, sub.revokes),
                                      (PERMISSION, sub.permission_changes)):
                    if counts[tag] != expected:
                        lost.append(f"subscription {sub.id}: {counts[tag]} {tag} events, "
                                    f"expected {expected}")
                perm = snap.permissions.get(srow.id)
                if sub.status != "erased" and perm is not None:
                    if perm.version != sub.version:
                        lost.append(f"subscription {sub.id}: version {perm.version}, "
                                    f"expected {sub.version}")
                    try:
                        grid = open_grid(_open_key(keys, person.id or "", snap), perm)
                    except Exception as exc:  # reported: terms that no longer open are lost
                        lost.append(f"subscription {sub.id}: terms do not open: {exc}")
                        continue
                    for cell, (allowed, cap) in sub.cells.items():
                        got = grid.get(cell)
                        if got is None or (got.allowed, got.max_per_week) != (allowed, cap):
                            lost.append(f"subscription {sub.id}: {cell} is {got}, expected "
                                        f"allowed={allowed} max_per_week={cap}")
                for token in sub.tokens:
                    if token not in snap.token_hashes:
                        lost.append(f"subscription {sub.id}: an issued access token is gone")
        missing = [d for d in self.world.decisions if d not in snap.decisions]
        if missing:
            lost.append(f"{len(missing)} acknowledged decisions are gone: {missing[:3]}")
        rotated = {json.loads(e.data).get("kek_id") for e in snap.events if e.tag == KEK_ROTATED}
        for kek_id in self.tally.rotations:
            if kek_id not in rotated:
                lost.append(f"rotation to {kek_id} acknowledged, no audit event")
        known = {p.id for p in self.world.people}
        for pid in snap.persons:
            if pid not in known:
                lost.append(f"person {pid} is in the database, but no client made it")

    # -- nothing half-applied: the state and the log agree ----------------------------------

    def _consistent(self, snap: Snapshot, keys: Any, ring: Any) -> None:
        from vault.services.permissions import open_grid

        half = self.tally.half_applied
        by_subject, by_person, _ = self._events_about(snap)
        last_status: dict[str, str] = {}
        for event in snap.events:
            if event.tag in (GRANTED, REVOKED) and event.subject:
                last_status[event.subject] = event.tag
        for pid, row in snap.persons.items():
            tags = by_person[pid]
            if tags[SIGNED_UP] != 1:
                half.append(f"person {pid}: {tags[SIGNED_UP]} sign-up events")
            erased = row.erased_at is not None
            if erased != bool(tags[ERASED]):
                half.append(f"person {pid}: erased_at {row.erased_at}, "
                            f"{tags[ERASED]} erasure events")
            has = (pid in snap.keys, pid in snap.profiles, pid in snap.rules)
            if (erased and any(has)) or (not erased and not all(has)):
                half.append(f"person {pid}: erased={erased} but key/profile/rules={has}")
        for sub in snap.subs.values():
            counts = by_subject[sub.subject]
            person = snap.persons.get(sub.person_id)
            erased = person is not None and person.erased_at is not None
            if counts[GRANTED] < 1:
                half.append(f"subscription {sub.id}: no grant event")
            expected = "erased" if erased else (
                "active" if last_status.get(sub.subject) == GRANTED else "revoked")
            if sub.status != expected:
                half.append(f"subscription {sub.id}: status {sub.status}, the log says "
                            f"{expected}")
            perm = snap.permissions.get(sub.id)
            if erased:
                if perm is not None or sub.shared_fields is not None:
                    half.append(f"subscription {sub.id}: erased, terms still stored")
            elif perm is None:
                half.append(f"subscription {sub.id}: no permission record")
            else:
                if perm.version != counts[GRANTED] + counts[PERMISSION]:
                    half.append(f"subscription {sub.id}: version {perm.version}, "
                                f"{counts[GRANTED]} grants and {counts[PERMISSION]} "
                                "permission events")
                try:
                    open_grid(_open_key(keys, sub.person_id, snap), perm)
                except Exception as exc:  # reported below
                    half.append(f"subscription {sub.id}: terms do not open: {exc}")
            self._history_follows_on(sub, snap.history.get(sub.id, []), keys, snap)
            if sub.status == "revoked":
                live = [t for t in snap.tokens.get(sub.id, []) if t.revoked_at is None]
                if live:
                    half.append(f"subscription {sub.id}: revoked, {len(live)} tokens live")
            changes = snap.outbox[(sub.subject, "subscription.created")] + \
                snap.outbox[(sub.subject, "subscription.updated")]
            if changes != counts[GRANTED] + counts[PERMISSION]:
                half.append(f"subscription {sub.id}: {changes} created/updated webhooks for "
                            f"{counts[GRANTED] + counts[PERMISSION]} changes")
            revoked = snap.outbox[(sub.subject, "subscription.revoked")]
            want = counts[REVOKED] + (1 if erased and last_status.get(sub.subject) == GRANTED
                                      else 0)
            if revoked != want:
                half.append(f"subscription {sub.id}: {revoked} revoked webhooks, expected "
                            f"{want}")
        for pid, (kek_id, _) in snap.keys.items():
            if kek_id not in ring.keks:
                half.append(f"person {pid}: data key wrapped with {kek_id}, not in the ring")
            elif pid in snap.profiles:
                try:
                    from vault.services.accounts import open_profile

                    open_profile(_open_key(keys, pid, snap), snap.profiles[pid])
                except Exception as exc:  # reported below
                    half.append(f"person {pid}: profile does not open: {exc}")
        rotated = {json.loads(e.data).get("kek_id") for e in snap.events if e.tag == KEK_ROTATED}
        for kek_id in ring.keks:
            if kek_id not in (self.world.initial_kek, ring.active_kek_id) and \
                    kek_id not in rotated:
                half.append(f"KEK {kek_id} was rotated to and replaced, but no rotation "
                            "event records it")
        for event in snap.events:
            if event.person_ref and event.person_ref not in snap.persons:
                half.append(f"event {event.seq} is about person {event.person_ref}, "
                            "who does not exist")


    def _history_follows_on(self, sub: Any, kept: list[Any], keys: Any,
                            snap: Snapshot) -> None:
        """The kept states and the current one follow each other without a gap.

        A change that committed without the state it replaced (or the other
        way round) leaves a gap or an overlap; nothing is pruned in a run.
        Kept records of a person still there open with their data key.
        """
        from vault.services.terms_history import open_record

        half = self.tally.half_applied
        moments = [sub.created_at]
        for state in kept:
            moments += [state.valid_from, state.valid_until]
        moments.append(sub.terms_since)
        for left, right in zip(moments[::2], moments[1::2], strict=True):
            if left != right:
                half.append(f"subscription {sub.id}: terms history breaks off at {left}, "
                            f"goes on at {right}")
                break
        if sub.person_id not in snap.keys:
            return
        for state in kept:
            if state.status == "active" and state.terms is not None:
                try:
                    open_record(_open_key(keys, sub.person_id, snap), sub.id, state.id,
                                bytes(state.terms))
                except Exception as exc:  # reported below
                    half.append(f"subscription {sub.id}: kept terms {state.id} do not open: "
                                f"{exc!r}")


def _open_key(keys: Any, person_id: str, snap: Snapshot) -> Any:
    """The person's data key as stored in the snapshot, unwrapped with the ring on disk."""
    kek_id, wrapped = snap.keys[person_id]
    return keys.open(person_id, kek_id, wrapped)


# -- the run -----------------------------------------------------------------------------------


def _register_merchants(workspace: Workspace) -> list[dict[str, str]]:
    """The shops, registered through the service ``prefvault merchant add`` uses."""
    from vault.clock import SystemClock
    from vault.db import Database
    from vault.services.merchants import find_client, register_client

    database = Database(workspace.database_url)
    merchants = []
    try:
        for n in range(1, MERCHANTS + 1):
            with database.write() as session:
                issued = register_client(session, clock=SystemClock(), name=f"Shop {n}",
                                         redirect_uris=[REDIRECT_URI])
                merchants.append({"client_id": issued.client_id,
                                  "client_secret": issued.client_secret,
                                  "id": find_client(session, issued.client_id).id})
    finally:
        database.dispose()
    return merchants


@dataclass
class Report:
    backend: str
    seed: int
    kills: int
    acknowledged: int
    acknowledged_by_kind: dict[str, int]
    refused: int
    in_doubt_applied: dict[str, int]
    in_doubt_not_applied: dict[str, int]
    lost: int
    half_applied: int
    damaged: int
    rotations_started: int
    rotations_finished: int
    server_tracebacks: int
    database_locked: int
    errors: list[str]
    problems: list[str]
    seconds: float
    seconds_per_kill: float
    seconds_starting: float
    seconds_running: float
    seconds_checking: float

    @property
    def ok(self) -> bool:
        return not (self.lost or self.half_applied or self.damaged or self.errors
                    or self.database_locked)

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.acknowledged_by_kind.items()))
        doubt_yes = sum(self.in_doubt_applied.values())
        doubt_no = sum(self.in_doubt_not_applied.values())
        return [
            f"crash safety on {self.backend} (seed {self.seed})",
            f"  kills:                 {self.kills}",
            f"  acknowledged changes:  {self.acknowledged} ({kinds})",
            f"  in doubt at a kill:    {doubt_yes + doubt_no} ({doubt_yes} had committed, "
            f"{doubt_no} had not)",
            f"  lost:                  {self.lost}",
            f"  half-applied:          {self.half_applied}",
            f"  damaged:               {self.damaged}",
            f"  key rotations:         {self.rotations_started} started, "
            f"{self.rotations_finished} finished before a kill (the others were resumed)",
            f"  server log:            {self.server_tracebacks} tracebacks, "
            f"{self.database_locked} 'database is locked'",
            f"  client errors:         {len(self.errors)}",
            f"  time:                  {self.seconds:.0f} s ({self.seconds_per_kill:.2f} s per "
            f"kill: starting {self.seconds_starting:.0f} s, traffic "
            f"{self.seconds_running:.0f} s, checks {self.seconds_checking:.0f} s)",
            *(f"  ! {line}" for line in [*self.errors, *self.problems][:40]),
            "  result:                " + ("ok" if self.ok else "FAILED"),
        ]


def run(backend: str, kills: int, seed: int, *, postgres_url: str, keep: bool,
        min_seconds: float, max_seconds: float, progress: bool) -> Report:
    """Build a vault, kill it ``kills`` times under traffic, check it after each kill."""
    from vault.crypto.keyring import KeyRing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", "vault.cli", "vault.app", "vault.server",
                                    "gunicorn.arbiter", "gunicorn.workers.gthread"])
    began = time.monotonic()
    workspace = Workspace(backend, postgres_url, keep)
    tally = Tally()
    errors: list[str] = []
    vault: Vault | None = None
    try:
        workspace.create()
        world = World(_register_merchants(workspace))
        world.initial_kek = KeyRing.load(workspace.keyring_path).active_kek_id
        vault = Vault(workspace, context)
        traffic = Traffic(vault, world, tally, seed)
        rng = random.Random(seed)  # noqa: S311 (a test schedule)
        for cycle in range(kills):
            seconds = rng.uniform(min_seconds, max_seconds)
            rotate_at = rng.uniform(0, seconds / 2) if rng.random() < 0.3 else None
            t0 = time.monotonic()
            vault.start()
            t1 = time.monotonic()
            traffic.run(cycle, seconds, rotate_at)
            tally.kills += 1
            workspace.wait_for_disconnects()
            t2 = time.monotonic()
            Checker(workspace, world, tally).run()
            t3 = time.monotonic()
            tally.seconds_starting += t1 - t0
            tally.seconds_running += t2 - t1
            tally.seconds_checking += t3 - t2
            errors = traffic.errors
            failed = errors or tally.lost or tally.half_applied or tally.damaged
            if progress and (failed or tally.kills % 10 == 0):
                print(f"  {tally.kills} kills, {sum(tally.acknowledged.values())} "
                      f"acknowledged, {len(world.live())} people, "
                      f"{time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
            if failed:
                break
    finally:
        if vault is not None:
            vault.kill()
        log = workspace.folder / "server.log"
        server_log = log.read_text(errors="replace") if log.exists() else ""
        if keep:
            print(f"kept {workspace.folder}" + (f" and database {workspace.pg_name}"
                                                 if workspace.pg_name else ""),
                  file=sys.stderr)
        else:
            workspace.remove()
    seconds = time.monotonic() - began
    return Report(
        backend=backend, seed=seed, kills=tally.kills,
        acknowledged=sum(tally.acknowledged.values()),
        acknowledged_by_kind=dict(tally.acknowledged), refused=sum(tally.refused.values()),
        in_doubt_applied=dict(tally.in_doubt_applied),
        in_doubt_not_applied=dict(tally.in_doubt_not_applied),
        lost=len(tally.lost), half_applied=len(tally.half_applied),
        damaged=len(tally.damaged), rotations_started=tally.rotations_started,
        rotations_finished=len(tally.rotations), server_tracebacks=server_log.count("Traceback"),
        database_locked=server_log.count("database is locked"), errors=errors,
        problems=[*tally.damaged, *tally.lost, *tally.half_applied],
        seconds=seconds, seconds_per_kill=seconds / max(tally.kills, 1),
        seconds_starting=tally.seconds_starting, seconds_running=tally.seconds_running,
        seconds_checking=tally.seconds_checking)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres-url", default=os.environ.get("VAULT_TEST_DATABASE_URL",
                                                                 DEFAULT_POSTGRES))
    parser.add_argument("--min-seconds", type=float, default=0.2,
                        help="shortest traffic between a start and its kill")
    parser.add_argument("--max-seconds", type=float, default=2.0,
                        help="longest traffic between a start and its kill")
    parser.add_argument("--keep", action="store_true",
                        help="keep the folder (and PostgreSQL database) for a look afterwards")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    # Stopped from outside: still kill the vault and drop what was made (run's ``finally``).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    report = run(args.backend, args.kills, args.seed, postgres_url=args.postgres_url,
                 keep=args.keep, min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                 progress=not args.quiet)
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
