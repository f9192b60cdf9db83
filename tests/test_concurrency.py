"""Concurrent changes to one subscription against a live gunicorn server (2 workers x 4 threads).

Several threads act at once, each with its own HTTP connection, the way a
person with a few browser tabs and a busy shop would: permission saves from
tabs that all showed the same version, revocations from several tabs, and
decisions asked all the while. What must hold, on SQLite and PostgreSQL:

- no lost update: of saves made over one version exactly one wins and the
  others get a clean 409; retried, every change lands, and the permission
  record, its version and the audit log account for each one exactly once;
- revocation is immediate: every decision whose request was sent after the
  first revocation answered is denied (client-side clocks of one process);
- several revocations at once revoke once (one audit event), and a save
  sent after the revocation answered is refused with 409;
- nothing surfaces as a 5xx, and SQLite's "database is locked" never reaches
  a client (nor the server's log).

A summary of what was sent and seen is printed at the end of the module.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from api_helpers import PASSWORD, Subscribed, register_merchant, subscribe
from sqlmodel import select

from vault.config import Settings
from vault.crypto.keyring import KeyRing
from vault.extensions import Runtime
from vault.models import AuditEvent, ContactPermission, Subscription, WebhookOutbox
from vault.services import subscriptions as subscription_service
from vault.services.audit import AuditTag

PREFVAULT = Path(sys.executable).with_name("prefvault")
TABS = 6
#: the cells each tab changes, one per tab
CELLS = [("email", "offers"), ("sms", "service"), ("phone", "order_updates"),
         ("post", "surveys"), ("push", "abandoned_cart"), ("email", "personalised_offers")]
LOCKED = "database is locked"


# -- the server --------------------------------------------------------------------------------


@dataclass
class Served:
    """``prefvault serve`` on 127.0.0.1, and where its log goes."""

    base_url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(settings: Settings, keyring: KeyRing, runtime: Runtime,
           tmp_path: Path) -> Iterator[Served]:
    """The vault under gunicorn with two workers, over the test's database and key ring."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    many = "1000000 per minute"
    env = {**os.environ, "VAULT_DATABASE_URL": settings.database_url,
           "VAULT_KEYRING": str(keyring.path), "VAULT_VAR_DIR": str(tmp_path),
           "VAULT_ISSUER": base_url, "VAULT_ENV": "development", "VAULT_LOG_LEVEL": "WARNING",
           "VAULT_RATE_LIMIT_LOGIN": many, "VAULT_RATE_LIMIT_LOGIN_ADDRESS": many,
           "VAULT_RATE_LIMIT_TOKEN": many, "VAULT_RATE_LIMIT_API": many}
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(PREFVAULT), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2", "--threads", "4"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        with httpx.Client(timeout=2) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{base_url}/health").status_code == 200:
                        break
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        yield Served(base_url, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


# -- a browser, roughly ------------------------------------------------------------------------


class _Forms(HTMLParser):
    """Every ``<form>`` with the inputs a browser would send (checked boxes only)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""),
                               "method": a.get("method", "get").lower(), "fields": []})
        elif tag == "input" and self.forms and a.get("name"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.forms[-1]["fields"].append((a["name"], a.get("value", "")))


def form_on(html: str, action_ends_with: str) -> dict[str, Any]:
    parser = _Forms()
    parser.feed(html)
    return next(f for f in parser.forms if f["method"] == "post"
                and f["action"].split("?")[0].endswith(action_ends_with))


@dataclass
class Seen:
    """What the clients saw, for the module's summary and the assertions."""

    statuses: Counter[int] = field(default_factory=Counter)
    locked: int = 0

    def saw(self, response: httpx.Response) -> httpx.Response:
        self.statuses[response.status_code] += 1
        if LOCKED in response.text:
            self.locked += 1
        return response

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def browser(served: Served, cookies: httpx.Cookies | None = None) -> httpx.Client:
    return httpx.Client(base_url=served.base_url, timeout=60, follow_redirects=False,
                        cookies=cookies)


def log_in(served: Served, email: str) -> httpx.Cookies:
    """Log in through the form; the session cookie every tab of this browser shares."""
    with browser(served) as http:
        page = http.get("/login")
        form = form_on(page.text, "/login")
        fields = dict(form["fields"]) | {"email": email, "password": PASSWORD}
        answer = http.post("/login", data=fields)
        assert answer.status_code == 302, answer.text[:500]
        return httpx.Cookies(http.cookies)


def permission_form(http: httpx.Client, seen: Seen, subscription_id: str
                    ) -> list[tuple[str, str]]:
    """The merchant page's permission form as a browser would send it, unchanged."""
    page = seen.saw(http.get(f"/subscriptions/{subscription_id}"))
    assert page.status_code == 200, page.text[:500]
    return list(form_on(page.text, "/permissions")["fields"])


def with_cap(fields: list[tuple[str, str]], cell: tuple[str, str], cap: int
             ) -> list[tuple[str, str]]:
    """The form with one cell allowed and capped at ``cap`` a week."""
    key = f"{cell[0]}:{cell[1]}"
    changed = [(n, v) for n, v in fields
               if n != f"max_per_week:{key}" and not (n == "allow" and v == key)]
    return [*changed, ("allow", key), (f"max_per_week:{key}", str(cap))]


def save(http: httpx.Client, seen: Seen, subscription_id: str,
         fields: list[tuple[str, str]]) -> int:
    answer = seen.saw(http.post(f"/subscriptions/{subscription_id}/permissions",
                                content=_encode(fields),
                                headers={"Content-Type": "application/x-www-form-urlencoded"}))
    return answer.status_code


def _encode(fields: list[tuple[str, str]]) -> bytes:
    return urlencode(fields).encode()


def at_once(count: int, work: Callable[[int, threading.Barrier], Any]) -> list[Any]:
    """Run ``work(i, barrier)`` in ``count`` threads; their results in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = work(i, barrier)
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if errors:
        raise errors[0]
    return results


# -- reading the outcome ----------------------------------------------------------------------


def events(runtime: Runtime, subject: str, tag: AuditTag) -> list[dict[str, Any]]:
    with runtime.database.read() as session:
        return [json.loads(e.data) for e in session.exec(
            select(AuditEvent).where(AuditEvent.subject == subject,
                                     AuditEvent.tag == str(tag)).order_by(AuditEvent.seq))]


def permission_version(runtime: Runtime, subscription_id: str) -> int:
    with runtime.database.read() as session:
        row = session.get(ContactPermission, subscription_id)
        assert row is not None
        return row.version


def webhooks(runtime: Runtime, subject: str, event_type: str) -> int:
    with runtime.database.read() as session:
        return len(session.exec(select(WebhookOutbox).where(
            WebhookOutbox.subject == subject, WebhookOutbox.event_type == event_type)).all())


_SUMMARY: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if _SUMMARY:
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print("\n".join(["", "concurrency report", *_SUMMARY]), flush=True)


# -- no lost update ---------------------------------------------------------------------------


def test_saves_from_tabs_that_showed_one_version_lose_no_update(
        served: Served, runtime: Runtime) -> None:
    merchant = register_merchant(runtime)
    scope = " ".join(f"contact:{c}:{p}" for c, p in CELLS)
    sub = subscribe(runtime, merchant, scope=scope)
    cookies = log_in(served, sub.email)
    seen = Seen()
    start_version = permission_version(runtime, sub.subscription_id)
    caps = {cell: 10 + i for i, cell in enumerate(CELLS)}

    def first_round(i: int, barrier: threading.Barrier) -> int:
        with browser(served, cookies) as http:
            fields = permission_form(http, seen, sub.subscription_id)
            barrier.wait()  # every tab has shown the same version; all save at once
            return save(http, seen, sub.subscription_id, with_cap(fields, CELLS[i], caps[CELLS[i]]))

    first = at_once(TABS, first_round)
    assert sorted(first) == [302] + [409] * (TABS - 1), first

    # Each tab that lost reloads and saves again, racing the others, until its change is in.
    pending = [i for i, status in enumerate(first) if status == 409]
    conflicts = TABS - 1
    for _ in range(TABS * 3):
        if not pending:
            break

        def retry(n: int, barrier: threading.Barrier, pending: list[int] = pending) -> int:
            cell = CELLS[pending[n]]
            with browser(served, cookies) as http:
                fields = permission_form(http, seen, sub.subscription_id)
                barrier.wait()
                return save(http, seen, sub.subscription_id, with_cap(fields, cell, caps[cell]))

        statuses = at_once(len(pending), retry)
        assert set(statuses) <= {302, 409}, statuses
        conflicts += statuses.count(409)
        pending = [i for i, status in zip(pending, statuses, strict=True) if status == 409]
    assert pending == []

    # Every change is in the record, once, and the log and the outbox account for each.
    with runtime.database.read() as session:
        row = session.get(Subscription, sub.subscription_id)
        assert row is not None
        grid = subscription_service.view(session, row, data_keys=runtime.data_keys).permissions
    assert {cell: (grid[cell].allowed, grid[cell].max_per_week) for cell in CELLS} == \
        {cell: (True, cap) for cell, cap in caps.items()}
    changed = events(runtime, sub.subject, AuditTag.PERMISSION_CHANGED)
    assert len(changed) == TABS
    assert sorted(e["version"] for e in changed) == \
        list(range(start_version + 1, start_version + TABS + 1))
    assert sorted((e["after"]["channel"], e["after"]["purpose"], e["after"]["max_per_week"])
                  for e in changed) == sorted((c, p, cap) for (c, p), cap in caps.items())
    assert permission_version(runtime, sub.subscription_id) == start_version + TABS
    assert webhooks(runtime, sub.subject, "subscription.updated") == TABS
    assert seen.server_errors == 0 and seen.locked == 0, seen
    assert LOCKED not in served.log_text()
    _SUMMARY.append(
        f"  {runtime.database.dialect:<10} permission saves: {TABS} tabs, {conflicts} clean "
        f"409 conflicts, {TABS} changes kept, 0 lost; 5xx {seen.server_errors}, "
        f"'locked' {seen.locked}")


# -- revocation is immediate ------------------------------------------------------------------


@dataclass
class Asked:
    sent: float
    answered: float
    allowed: bool
    reason: str


def test_no_decision_allows_once_a_revocation_has_answered(
        served: Served, runtime: Runtime) -> None:
    merchant = register_merchant(runtime)
    sub: Subscribed = subscribe(runtime, merchant, scope="contact:email:offers profile:email")
    cookies = log_in(served, sub.email)
    with httpx.Client(base_url=served.base_url, timeout=60) as http:
        token = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                          auth=(merchant.client_id, merchant.client_secret)).json()
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    seen = Seen()
    lock = threading.Lock()
    asked: list[Asked] = []
    saves: list[tuple[float, float, int]] = []
    stop = threading.Event()

    def ask() -> None:
        with httpx.Client(base_url=served.base_url, timeout=60) as http:
            while not stop.is_set():
                sent = time.monotonic()
                answer = seen.saw(http.post("/api/v1/decisions", headers=bearer, json={
                    "subject": sub.subject, "channel": "email", "purpose": "offers"}))
                answered = time.monotonic()
                assert answer.status_code == 200, answer.text[:300]
                body = answer.json()
                with lock:
                    asked.append(Asked(sent, answered, body["allowed"], body["reason"]))

    def edit(number: int) -> None:
        rng = random.Random(number)
        with browser(served, cookies) as http:
            while not stop.is_set():
                page = seen.saw(http.get(f"/subscriptions/{sub.subscription_id}"))
                if page.status_code != 200:
                    return
                try:
                    fields = list(form_on(page.text, "/permissions")["fields"])
                except StopIteration:
                    return  # no grid to edit once access has ended
                sent = time.monotonic()
                status = save(http, seen, sub.subscription_id,
                              with_cap(fields, ("email", "offers"), rng.randint(50, 1000)))
                with lock:
                    saves.append((sent, time.monotonic(), status))

    workers = [threading.Thread(target=ask) for _ in range(4)]
    workers += [threading.Thread(target=edit, args=(n,)) for n in range(2)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)

        def revoke(_n: int, barrier: threading.Barrier) -> tuple[float, float, int]:
            with browser(served, cookies) as http:
                page = seen.saw(http.get(f"/subscriptions/{sub.subscription_id}/revoke"))
                assert page.status_code == 200, page.text[:300]
                form = form_on(page.text, "/revoke")
                barrier.wait()
                sent = time.monotonic()
                answer = seen.saw(http.post(form["action"], data=dict(form["fields"])))
                return sent, time.monotonic(), answer.status_code

        revocations = at_once(3, revoke)
        time.sleep(1.0)
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)

    assert [status for _, _, status in revocations] == [302, 302, 302]
    revoked_at = min(answered for _, answered, _ in revocations)
    first_sent = min(sent for sent, _, _ in revocations)
    before = [a for a in asked if a.answered < first_sent]
    after = [a for a in asked if a.sent > revoked_at]
    assert before and all(a.allowed for a in before)  # it was allowed until then
    assert after, "no decision was asked after the revocation answered"
    allowed_after = [a for a in after if a.allowed or a.reason != "revoked"]
    assert allowed_after == []

    # Three tabs, one revocation: one event, one webhook.
    assert len(events(runtime, sub.subject, AuditTag.SUBSCRIPTION_REVOKED)) == 1
    assert webhooks(runtime, sub.subject, "subscription.revoked") == 1
    # Saves racing the revocation: each one kept has its event; none after it is kept.
    kept = [s for s in saves if s[2] == 302]
    assert {status for _, _, status in saves} <= {302, 409}, saves
    assert len(events(runtime, sub.subject, AuditTag.PERMISSION_CHANGED)) == len(kept)
    assert permission_version(runtime, sub.subscription_id) == 1 + len(kept)
    assert all(status == 409 for sent, _, status in saves if sent > revoked_at)
    assert seen.server_errors == 0 and seen.locked == 0, seen
    assert LOCKED not in served.log_text()
    _SUMMARY.append(
        f"  {runtime.database.dialect:<10} revocation: {len(asked)} decisions "
        f"({len(before)} before, {len(after)} sent after the revocation answered, "
        f"{len(allowed_after)} of those allowed); 3 concurrent revokes -> 1 event; "
        f"{len(saves)} racing saves ({len(kept)} kept, {len(saves) - len(kept)} got 409); "
        f"5xx {seen.server_errors}, 'locked' {seen.locked}")


# -- the same through the services, from several processes -----------------------------------


def _in_a_process(settings: Settings, keyring_path: str, person_id: str, subscription_id: str,
                  change: tuple[str, str, int] | None, barrier: Any, answers: Any) -> None:
    """One process: wait for the others, then change one cell (or, with None, revoke)."""
    from vault.clock import SystemClock
    from vault.errors import VaultError

    runtime = Runtime.build(settings, KeyRing.load(Path(keyring_path)), SystemClock())
    try:
        barrier.wait(60)
        with runtime.database.write() as session:
            if change is None:
                subscription_service.revoke(session, person_id=person_id,
                                            subscription_id=subscription_id,
                                            data_keys=runtime.data_keys,
                                            clock=runtime.clock)
            else:
                subscription_service.set_permission(
                    session, person_id=person_id, subscription_id=subscription_id,
                    channel=change[0], purpose=change[1], allowed=True,
                    max_per_week=change[2], data_keys=runtime.data_keys, clock=runtime.clock)
        answers.put("ok")
    except VaultError as exc:
        answers.put(f"refused: {type(exc).__name__}")
    except Exception as exc:  # reported to the test, which fails on it
        answers.put(f"error: {type(exc).__name__}: {exc}")
    finally:
        runtime.database.dispose()


def _run_processes(settings: Settings, keyring: KeyRing, sub: Subscribed,
                   changes: list[tuple[str, str, int] | None]) -> list[str]:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["vault.services.subscriptions", "vault.extensions"])
    barrier = context.Barrier(len(changes))
    answers = context.Queue()
    processes = [context.Process(target=_in_a_process, args=(
        settings, str(keyring.path), sub.person_id, sub.subscription_id, change, barrier,
        answers)) for change in changes]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    return sorted(answers.get(timeout=5) for _ in processes)


def test_permission_changes_from_several_processes_all_land(
        settings: Settings, keyring: KeyRing, runtime: Runtime) -> None:
    """Without a version to check, every change must land: the record is read and
    rewritten under a lock, so no process can write over another's change."""
    merchant = register_merchant(runtime)
    sub = subscribe(runtime, merchant, scope=" ".join(f"contact:{c}:{p}" for c, p in CELLS))
    start_version = permission_version(runtime, sub.subscription_id)
    changes = [(c, p, 100 + i) for i, (c, p) in enumerate(CELLS)]

    answers = _run_processes(settings, keyring, sub, list(changes))

    assert answers == ["ok"] * len(changes)  # never "database is locked", never a conflict
    with runtime.database.read() as session:
        row = session.get(Subscription, sub.subscription_id)
        assert row is not None
        grid = subscription_service.view(session, row, data_keys=runtime.data_keys).permissions
    assert {(c, p): grid[(c, p)].max_per_week for c, p, _ in changes} == \
        {(c, p): cap for c, p, cap in changes}
    logged = events(runtime, sub.subject, AuditTag.PERMISSION_CHANGED)
    assert sorted(e["version"] for e in logged) == \
        list(range(start_version + 1, start_version + len(changes) + 1))
    assert permission_version(runtime, sub.subscription_id) == start_version + len(changes)
    _SUMMARY.append(f"  {runtime.database.dialect:<10} {len(changes)} processes changing one "
                    f"cell each at once: {len(logged)} changes kept, 0 lost, 0 'locked'")


def test_revocations_from_several_processes_revoke_once(
        settings: Settings, keyring: KeyRing, runtime: Runtime) -> None:
    merchant = register_merchant(runtime)
    sub = subscribe(runtime, merchant)
    changes: list[tuple[str, str, int] | None] = [None] * 4 + \
        [("email", "offers", 5), ("sms", "service", 6)]

    answers = _run_processes(settings, keyring, sub, changes)

    # Each revocation answers (the later ones find it done); a change racing them either
    # landed before or is refused as a conflict, never an error.
    assert answers.count("ok") >= 4, answers
    assert set(answers) <= {"ok", "refused: Conflict"}, answers
    assert len(events(runtime, sub.subject, AuditTag.SUBSCRIPTION_REVOKED)) == 1
    assert webhooks(runtime, sub.subject, "subscription.revoked") == 1
    kept = answers.count("ok") - 4
    assert len(events(runtime, sub.subject, AuditTag.PERMISSION_CHANGED)) == kept
    assert permission_version(runtime, sub.subscription_id) == 1 + kept
    _SUMMARY.append(f"  {runtime.database.dialect:<10} 4 processes revoking at once with 2 "
                    f"changing: 1 revocation event, {kept} changes kept, "
                    f"{2 - kept} refused with a conflict")
