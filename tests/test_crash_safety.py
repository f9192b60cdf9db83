"""Crash safety: ``scripts/crash_safety.py`` in a short round, and what its check can see.

The script kills a running vault with SIGKILL at random moments and checks
the database each time (see its docstring). Here it runs a short round per
backend; the full round (``--kills 200``) is run by hand. The other tests
make sure its check is not blind: each damages a healthy database in one
way a crash could (a revocation without its audit event, a permission
change without its version, an erasure half done, a tampered event) and
the check must name it, while the healthy database passes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from api_helpers import (
    ApiMerchant,
    Subscribed,
    erase,
    register_merchant,
    revoke,
    set_permission,
    sign_up,
    subscribe,
)
from sqlalchemy import text
from sqlmodel import select

from vault.crypto.keyring import KeyRing
from vault.extensions import Runtime
from vault.models import AuditEvent, OAuthToken
from vault.oauth.tokens import token_hash
from vault.services.audit import AuditTag, record_event
from vault.services.keys import rotate_keks

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "crash_safety.py"
SHORT_ROUND_KILLS = 8


@pytest.fixture(scope="module")
def crash_safety() -> ModuleType:
    """The script, imported as a module (``scripts`` is not a package)."""
    spec = importlib.util.spec_from_file_location("crash_safety", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["crash_safety"] = module
    spec.loader.exec_module(module)
    return module


# -- the short round ------------------------------------------------------------------------


def _backends() -> list[str]:
    if os.environ.get("VAULT_TEST_DATABASE_URL"):
        return ["sqlite", "postgresql"]
    if os.environ.get("VAULT_REQUIRE_POSTGRES") == "1":
        pytest.fail("VAULT_TEST_DATABASE_URL is not set but VAULT_REQUIRE_POSTGRES=1")
    return ["sqlite"]


@pytest.mark.slow
def test_a_short_round_of_kills_per_backend_loses_nothing_and_half_applies_nothing() -> None:
    """Both backends' rounds run side by side (each mostly waits for its server to start)."""
    rounds = {backend: subprocess.Popen(
        [sys.executable, str(SCRIPT), "--backend", backend, "--kills", str(SHORT_ROUND_KILLS),
         "--seed", "7", "--min-seconds", "0.5", "--max-seconds", "1.5", "--json", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        for backend in _backends()}
    try:
        outcomes = {backend: (*process.communicate(timeout=600), process.returncode)
                    for backend, process in rounds.items()}
    finally:
        for process in rounds.values():
            if process.poll() is None:
                process.terminate()  # the script stops its vault and cleans up on SIGTERM
                process.wait(60)
    for backend, (out, err, status) in outcomes.items():
        report = json.loads(out) if out.strip().startswith("{") else {}
        assert status == 0, (backend, out[-3000:], err[-3000:])
        assert report["ok"] is True
        assert report["kills"] == SHORT_ROUND_KILLS
        assert (report["lost"], report["half_applied"], report["damaged"]) == (0, 0, 0)
        assert (report["errors"], report["database_locked"]) == ([], 0)
        kinds = report["acknowledged_by_kind"]
        assert report["acknowledged"] == sum(kinds.values()) > SHORT_ROUND_KILLS
        # The traffic really was a mix of consent changes, not one kind over and over.
        changes = {"sign_up", "grant", "set_permission", "revoke", "update_profile", "erase"}
        assert len(changes & set(kinds)) >= 3, (backend, kinds)


# -- the check sees what a crash could do ------------------------------------------------------


@dataclass
class Healthy:
    """A small vault as clients left it, and the script's picture of it."""

    runtime: Runtime
    merchant: ApiMerchant
    kept: Subscribed
    revoked: Subscribed
    erased_person: str
    world: Any
    tally: Any
    checker: Any

    def check(self) -> Any:
        self.tally.lost.clear()
        self.tally.half_applied.clear()
        self.tally.damaged.clear()
        self.checker.run()
        return self.tally

    def sql(self, statement: str, **params: object) -> None:
        with self.runtime.database.write() as session:
            session.connection().execute(text(statement), params)


@pytest.fixture
def healthy(runtime: Runtime, crash_safety: ModuleType, database_url: str) -> Iterator[Healthy]:
    cs = crash_safety
    merchant = register_merchant(runtime)
    kept = subscribe(runtime, merchant, scope="contact:email:offers contact:sms:service")
    runtime.clock.advance(timedelta(hours=1))  # so the grant's terms are kept in the history
    set_permission(runtime, kept, "email", "offers", allowed=True, max_per_week=3)
    revoked = subscribe(runtime, merchant)
    runtime.clock.advance(timedelta(hours=1))
    revoke(runtime, revoked)
    gone = subscribe(runtime, merchant)
    erase(runtime, gone.person_id)
    lonely = sign_up(runtime)

    world = cs.World([{"id": merchant.id, "client_id": merchant.client_id,
                       "client_secret": merchant.client_secret}])
    assert runtime.keyring.path is not None
    world.initial_kek = runtime.keyring.active_kek_id

    def person(pid: str, *subs: tuple[Subscribed, str, int, int, int]) -> Any:
        model = cs.Person(email=f"{pid}@example.org", name="", id=pid)
        for sub, status, grants, changes, revokes in subs:
            model.subs[merchant.id] = cs.Sub(merchant.id, sub.subscription_id, sub.subject,
                                             status, grants, changes, revokes)
        return model

    world.people = [person(kept.person_id, (kept, "active", 1, 1, 0)),
                    person(revoked.person_id, (revoked, "revoked", 1, 0, 1)),
                    person(gone.person_id, (gone, "erased", 1, 0, 0)),
                    person(lonely)]
    world.people[2].erased = True
    for model in world.people:
        if not model.erased:
            with runtime.database.read() as session:
                model.name = runtime.accounts.get_profile(session, model.id).name
    workspace = _FakeWorkspace(database_url, runtime.keyring.path)
    tally = cs.Tally()
    yield Healthy(runtime, merchant, kept, revoked, gone.person_id, world, tally,
                  cs.Checker(workspace, world, tally))


@dataclass
class _FakeWorkspace:
    """What the checker reads of the script's workspace."""

    database_url: str
    keyring_path: Path

    @property
    def sqlite_path(self) -> Path | None:
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///"))
        return None


def test_the_check_passes_a_healthy_vault(healthy: Healthy) -> None:
    tally = healthy.check()
    assert (tally.lost, tally.half_applied, tally.damaged) == ([], [], [])
    # The changes it checks did keep the states they replaced.
    for sub in (healthy.kept, healthy.revoked):
        with healthy.runtime.database.read() as session:
            assert session.connection().execute(text(
                "SELECT count(*) FROM terms_history WHERE subscription_id = :id"),
                {"id": sub.subscription_id}).scalar_one() == 1


def _revoke_without_event(h: Healthy) -> None:
    h.sql("UPDATE subscription SET status = 'revoked' WHERE id = :id",
          id=h.kept.subscription_id)


def _permission_change_without_event(h: Healthy) -> None:
    h.sql("UPDATE contact_permission SET version = version + 1 WHERE subscription_id = :id",
          id=h.kept.subscription_id)


def _event_without_its_change(h: Healthy) -> None:
    with h.runtime.database.write() as session:
        record_event(session, clock=h.runtime.clock, tag=AuditTag.PERMISSION_CHANGED,
                     actor=f"person:{h.kept.person_id}", person_ref=h.kept.person_id,
                     merchant_id=h.merchant.id, subject=h.kept.subject,
                     data={"before": None, "after": None, "version": 3})


def _revocation_leaving_a_token_live(h: Healthy) -> None:
    with h.runtime.database.write() as session:
        session.add(OAuthToken(
            id="tok1", client_id=h.merchant.client_id, person_id=h.revoked.person_id,
            subscription_id=h.revoked.subscription_id, family_id="fam1", scope="",
            access_token_hash=token_hash("still-live"), issued_at=h.runtime.clock.now(),
            access_expires_at=h.runtime.clock.now()))


def _erasure_half_done(h: Healthy) -> None:
    h.sql("DELETE FROM profile WHERE person_id = :id", id=h.kept.person_id)


def _tampered_event(h: Healthy) -> None:
    with h.runtime.database.read() as session:
        last = session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert last is not None
    h.sql("UPDATE audit_event SET data = :data WHERE seq = :seq", data='{"x": 1}', seq=last.seq)


def _acknowledged_change_lost(h: Healthy) -> None:
    h.world.people[0].subs[h.merchant.id].permission_changes += 1  # acknowledged, not stored


def _webhook_lost(h: Healthy) -> None:
    h.sql("DELETE FROM webhook_outbox WHERE subject = :subject AND event_type = "
          "'subscription.revoked'", subject=h.revoked.subject)


def _change_without_its_history(h: Healthy) -> None:
    h.sql("DELETE FROM terms_history WHERE subscription_id = :id", id=h.kept.subscription_id)


def _history_without_its_change(h: Healthy) -> None:
    h.sql("UPDATE subscription SET terms_since = created_at WHERE id = :id",
          id=h.revoked.subscription_id)


def _key_under_a_lost_kek(h: Healthy) -> None:
    h.sql("UPDATE person_key SET kek_id = 'kek-gone' WHERE person_id = :id",
          id=h.kept.person_id)


DAMAGE: dict[str, tuple[Callable[[Healthy], None], str]] = {
    "revocation-without-its-event": (_revoke_without_event, "half_applied"),
    "permission-version-without-event": (_permission_change_without_event, "half_applied"),
    "event-without-its-change": (_event_without_its_change, "half_applied"),
    "revocation-leaving-a-token-live": (_revocation_leaving_a_token_live, "half_applied"),
    "erasure-half-done": (_erasure_half_done, "half_applied"),
    "webhook-lost": (_webhook_lost, "half_applied"),
    "key-under-a-lost-kek": (_key_under_a_lost_kek, "half_applied"),
    "change-without-its-history": (_change_without_its_history, "half_applied"),
    "history-without-its-change": (_history_without_its_change, "half_applied"),
    "tampered-event": (_tampered_event, "damaged"),
    "acknowledged-change-lost": (_acknowledged_change_lost, "lost"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_the_check_names_each_kind_of_damage(healthy: Healthy, damage: str) -> None:
    do, where = DAMAGE[damage]
    do(healthy)
    tally = healthy.check()
    assert getattr(tally, where), (tally.lost, tally.half_applied, tally.damaged)


# -- a crash the random rounds rarely hit: right after a rotation's last batch ---------------


def test_a_rotation_killed_after_its_last_batch_is_recorded_all_the_same(
        runtime: Runtime, crash_safety: ModuleType, database_url: str) -> None:
    """Killed after the last rewrap committed: the rotation must already be in the log.

    Otherwise the next ``keys rotate`` finds nothing left to resume, starts
    another KEK, and the finished rotation is never recorded.
    """
    people = [sign_up(runtime) for _ in range(5)]
    first_kek = runtime.keyring.active_kek_id

    class Killed(Exception):
        pass

    def die_after_the_last_batch(done: int) -> None:
        if done == len(people):
            raise Killed

    with pytest.raises(Killed):
        rotate_keks(runtime.database, runtime.keyring, clock=runtime.clock, batch_size=2,
                    on_batch=die_after_the_last_batch)
    assert runtime.keyring.path is not None
    ring = KeyRing.load(runtime.keyring.path)
    second_kek = ring.active_kek_id
    report = rotate_keks(runtime.database, ring, clock=runtime.clock, batch_size=2)
    assert report.kek_id != second_kek  # nothing left to resume: a new rotation

    with runtime.database.read() as session:
        rotated = [json.loads(e.data)["kek_id"] for e in session.exec(
            select(AuditEvent).where(AuditEvent.tag == str(AuditTag.KEK_ROTATED)))]
    assert rotated == [second_kek, report.kek_id]
    # ... and the script's check agrees.
    cs = crash_safety
    world = cs.World([])
    world.initial_kek = first_kek
    world.people = [cs.Person(email="", name="", id=pid) for pid in people]
    with runtime.database.read() as session:
        for model in world.people:
            model.name = runtime.accounts.get_profile(session, model.id).name
    tally = cs.Tally()
    cs.Checker(_FakeWorkspace(database_url, runtime.keyring.path), world, tally).run()
    assert (tally.lost, tally.half_applied, tally.damaged) == ([], [], [])
