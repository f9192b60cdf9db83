"""Signed tree heads: checkpoints on demand and on a schedule, proofs, and refusals.

The vault must never sign two heads that contradict each other: a checkpoint
over a log whose stored history changed is refused and signs nothing. Proofs
come from the stored Merkle subtrees and must equal RFC 9162's, computed here
from the events themselves.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from api_helpers import API, Vault, assert_problem, register_merchant, rows, token_header
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlmodel import select
from test_cli import Workspace, describe

from vault.audit.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_inclusion,
)
from vault.audit.tree_head import TreeHead, sign_tree_head, verify_tree_head
from vault.audit.verify import leaf_bytes, verify_consistency_between, verify_export
from vault.clock import FixedClock
from vault.config import Settings
from vault.db import Database
from vault.errors import ConfigurationError, LogIntegrityError
from vault.extensions import Runtime
from vault.models import AuditEvent, AuditHead
from vault.services import tree_heads
from vault.services.audit import AuditTag, chain_hash, event_document, record_event
from vault.services.audit_export import export_lines
from vault.services.merkle_store import MerkleStore

TREE_HEAD = f"{API}/audit/tree-head"
CONSISTENCY = f"{API}/audit/proofs/consistency"
INCLUSION = f"{API}/audit/proofs/inclusion"


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    return Vault(app, client, runtime, clock)


def append_events(runtime: Runtime, n: int) -> None:
    """``n`` consent changes, straight through the audit service."""
    with runtime.database.write() as session:
        for i in range(n):
            record_event(session, clock=runtime.clock, tag=AuditTag.PERMISSION_CHANGED,
                         actor="person:p1", person_ref="p1", merchant_id="m1",
                         subject=f"sub_{i}", data={"after": {"allowed": i % 2 == 0}})


def checkpoint(runtime: Runtime) -> TreeHead:
    with runtime.database.write() as session:
        return tree_heads.checkpoint(session, signing_key=runtime.keyring.signing_key,
                                     clock=runtime.clock)


def jwks(runtime: Runtime) -> dict[str, Any]:
    return {"keys": [key.public_jwk() for key in runtime.keyring.signing_keys]}


def log_leaves(runtime: Runtime) -> list[bytes]:
    """Leaf hashes recomputed from the stored events, independently of the stored tree."""
    with runtime.database.read() as session:
        events = session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()
        return [leaf_hash(leaf_bytes(event_document(e))) for e in events]


def stored_sizes(runtime: Runtime) -> list[int]:
    return [int(r["tree_size"]) for r in rows(
        runtime, "SELECT tree_size FROM tree_head ORDER BY tree_size")]


def node_count(runtime: Runtime) -> int:
    return int(rows(runtime, "SELECT count(*) AS n FROM audit_tree_node")[0]["n"])


def auditor(vault: Vault) -> dict[str, str]:
    return token_header(vault.client, register_merchant(vault.runtime, "Audit Co",
                                                        kind="auditor"))


def rewrite_history(runtime: Runtime, seq: int, **changes: object) -> None:
    """Change one event and re-chain everything after it, as a careful forger would."""
    with runtime.database.write() as session:
        events = session.exec(select(AuditEvent).where(AuditEvent.seq >= seq)
                              .order_by(AuditEvent.seq)).all()
        previous = events[0].prev_hash
        for event in events:
            if event.seq == seq:
                for name, value in changes.items():
                    setattr(event, name, value)
            event.prev_hash = previous
            event.hash = chain_hash(previous, event_document(event))
            previous = event.hash
            session.add(event)
        head = session.get(AuditHead, 1)
        assert head is not None
        head.hash = previous
        session.add(head)


# -- checkpoints ----------------------------------------------------------------------------


def test_a_checkpoint_signs_the_log_and_is_reused_until_the_log_grows(vault: Vault) -> None:
    rt = vault.runtime
    append_events(rt, 5)
    first = checkpoint(rt)
    assert first.tree_size == 5
    assert first.root_hash == root(log_leaves(rt))
    assert first.kid == rt.keyring.signing_key.kid
    assert verify_tree_head(first, jwks(rt))

    vault.clock.advance(timedelta(minutes=5))
    assert checkpoint(rt) == first  # nothing new: the same signed head, not a fresh one
    assert stored_sizes(rt) == [5]

    append_events(rt, 3)
    second = checkpoint(rt)
    assert (second.tree_size, second.root_hash) == (8, root(log_leaves(rt)))
    assert second.timestamp > first.timestamp
    assert stored_sizes(rt) == [5, 8]


def test_the_stored_tree_serves_exactly_rfc_9162_proofs(vault: Vault) -> None:
    rt = vault.runtime
    sizes = [1, 2, 3, 4, 7, 8, 13, 21, 32, 33, 50]
    previous = 0
    for size in sizes:
        append_events(rt, size - previous)
        assert checkpoint(rt).tree_size == size
        previous = size
    leaves = log_leaves(rt)
    assert stored_sizes(rt) == sizes
    assert node_count(rt) == 2 * len(leaves) - bin(len(leaves)).count("1")
    with rt.database.read() as session:
        store = MerkleStore(session)
        for size in sizes:
            head = tree_heads.at_size(session, size)
            assert head is not None and head.root_hash == root(leaves[:size])
            assert store.inclusion_proofs(list(range(size)), size) == [
                inclusion_proof(leaves[:size], i) for i in range(size)], size
            for old in sizes:
                if old <= size:
                    assert store.consistency_proof(old, size) == consistency_proof(
                        leaves[:size], old), (old, size)


def test_an_empty_log_has_a_head_too(vault: Vault) -> None:
    head = checkpoint(vault.runtime)
    assert head.tree_size == 0 and verify_tree_head(head, jwks(vault.runtime))
    append_events(vault.runtime, 2)
    assert checkpoint(vault.runtime).tree_size == 2


def _edit_uncovered_event(runtime: Runtime) -> None:
    with runtime.database.write() as session:
        session.execute(text("UPDATE audit_event SET actor = 'operator' WHERE seq = 12"))


def _delete_uncovered_event(runtime: Runtime) -> None:
    with runtime.database.write() as session:
        session.execute(text("DELETE FROM audit_event WHERE seq = 13"))


def _drop_the_newest_events(runtime: Runtime) -> None:
    with runtime.database.write() as session:
        session.execute(text("DELETE FROM audit_event WHERE seq > 8"))
        session.execute(text("UPDATE audit_head SET seq = 8"))


def _rewrite_covered_history(runtime: Runtime) -> None:
    rewrite_history(runtime, 4, actor="person:someone-else")


def _damage_the_stored_tree(runtime: Runtime) -> None:
    with runtime.database.write() as session:
        session.execute(text("UPDATE audit_tree_node SET hash = :h "
                             "WHERE level = 1 AND position = 4"), {"h": bytes(32)})


def _lose_a_stored_subtree(runtime: Runtime) -> None:
    with runtime.database.write() as session:
        session.execute(text("DELETE FROM audit_tree_node WHERE level = 3 AND position = 0"))


@pytest.mark.parametrize(("tamper", "reason"), [
    (_edit_uncovered_event, "event 12 does not match the hash chain"),
    (_delete_uncovered_event, "event 13 is missing"),
    (_drop_the_newest_events, "the log holds 8 events but a signed head covers 10"),
    (_rewrite_covered_history, "history was rewritten"),
    (_damage_the_stored_tree, "no longer hashes to the head of size 10"),
    (_lose_a_stored_subtree, "lacks the subtree at level 3, position 0"),
], ids=["edited", "deleted", "truncated", "rewritten", "tree-damaged", "tree-lost"])
def test_a_log_that_does_not_extend_the_last_head_is_refused(vault: Vault, tamper: Any,
                                                             reason: str) -> None:
    rt = vault.runtime
    append_events(rt, 10)
    checkpoint(rt)
    append_events(rt, 5)
    tamper(rt)
    nodes = node_count(rt)
    with pytest.raises(LogIntegrityError, match=reason):
        checkpoint(rt)
    assert stored_sizes(rt) == [10]  # nothing signed...
    assert node_count(rt) == nodes  # ...and nothing half-written


def test_two_checkpointers_at_once_make_one_head(vault: Vault, settings: Settings) -> None:
    rt = vault.runtime
    append_events(rt, 20)
    racers = 4
    barrier = threading.Barrier(racers)
    heads: list[TreeHead] = []
    errors: list[BaseException] = []

    def race() -> None:
        # Each racer has its own engine, as separate processes would.
        database = Database(settings.database_url, busy_timeout_ms=30_000)
        try:
            barrier.wait()
            with database.write() as session:
                heads.append(tree_heads.checkpoint(
                    session, signing_key=rt.keyring.signing_key, clock=rt.clock))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            database.dispose()

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len({(h.tree_size, h.signature) for h in heads}) == 1
    assert stored_sizes(rt) == [20]
    assert node_count(rt) == 2 * 20 - bin(20).count("1")


# -- on a schedule ------------------------------------------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_periodic_checkpoints_run_once_per_interval(vault: Vault) -> None:
    rt = vault.runtime
    ticks = FakeMonotonic()
    periodic = tree_heads.PeriodicCheckpoints(60, monotonic=ticks)
    append_events(rt, 3)
    assert periodic.run(rt.database, signing_key=rt.keyring.signing_key,
                        clock=rt.clock).tree_size == 3  # type: ignore[union-attr]
    append_events(rt, 2)
    ticks.now += 59
    assert periodic.run(rt.database, signing_key=rt.keyring.signing_key, clock=rt.clock) is None
    ticks.now += 1
    assert periodic.run(rt.database, signing_key=rt.keyring.signing_key,
                        clock=rt.clock).tree_size == 5  # type: ignore[union-attr]
    assert stored_sizes(rt) == [3, 5]
    never = tree_heads.PeriodicCheckpoints(0, monotonic=ticks)
    assert not never.due()


def test_a_refused_periodic_checkpoint_waits_a_full_interval(vault: Vault) -> None:
    rt = vault.runtime
    ticks = FakeMonotonic()
    periodic = tree_heads.PeriodicCheckpoints(60, monotonic=ticks)
    append_events(rt, 10)
    periodic.run(rt.database, signing_key=rt.keyring.signing_key, clock=rt.clock)
    append_events(rt, 5)
    _edit_uncovered_event(rt)
    ticks.now += 60
    with pytest.raises(LogIntegrityError):
        periodic.run(rt.database, signing_key=rt.keyring.signing_key, clock=rt.clock)
    assert not periodic.due()


def test_the_interval_is_a_setting() -> None:
    assert Settings.from_env({}).checkpoint_interval_s == 300
    assert Settings.from_env({"VAULT_CHECKPOINT_INTERVAL_S": "0"}).checkpoint_interval_s == 0
    for bad in ("-5", "1.5", "ten", "٣"):
        with pytest.raises(ConfigurationError, match="VAULT_CHECKPOINT_INTERVAL_S"):
            Settings.from_env({"VAULT_CHECKPOINT_INTERVAL_S": bad})


def test_the_worker_and_the_command_line_checkpoint(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path)
    assert workspace.run("init").returncode == 0
    workspace.run_json("auditor", "add", "--name", "Audit Co")
    keys = json.loads(workspace.run("keys", "jwks").stdout)

    head = workspace.run_json("audit", "checkpoint")
    assert head["tree_size"] == 1 and verify_tree_head(TreeHead.from_json(head), keys)
    assert workspace.run_json("audit", "checkpoint") == head  # unchanged log, same head

    workspace.run_json("merchant", "add", "--name", "Shop", "--redirect-uri",
                       "https://shop.example/cb")
    off = workspace.run_json("worker", "--once", VAULT_CHECKPOINT_INTERVAL_S="0")
    assert off["tree_size"] is None
    report = workspace.run_json("worker", "--once", VAULT_CHECKPOINT_INTERVAL_S="60")
    assert report["tree_size"] == 2 and report["delivered"] == 0
    assert report["history_pruned"] == 0

    workspace.run_json("auditor", "add", "--name", "Second Audit Co")
    with closing(sqlite3.connect(workspace.root / "var" / "vault.db")) as db, db:
        db.execute("UPDATE audit_event SET actor = 'operator:forged' WHERE seq = 3")
    refused = workspace.run("worker", "--once")
    assert refused.returncode == 1, describe(refused)
    assert "refusing to sign a tree head: event 3 does not match the hash chain" in (
        refused.stderr)
    assert "Traceback" not in refused.stderr
    again = workspace.run("audit", "checkpoint")
    assert again.returncode == 1 and "refusing to sign" in again.stderr, describe(again)


# -- exports use stored heads -------------------------------------------------------------


def test_exports_carry_a_stored_head_and_reuse_it(vault: Vault) -> None:
    rt = vault.runtime
    headers = auditor(vault)
    append_events(rt, 7)
    first = vault.client.get(f"{API}/audit/events", headers=headers).get_data(as_text=True)
    second = vault.client.get(f"{API}/audit/events", headers=headers).get_data(as_text=True)
    assert first == second  # the same signed head, not a new one per export
    with rt.database.read() as session:
        stored = tree_heads.latest(session)
    assert stored is not None and stored.tree_size == 8  # the auditor's registration too
    assert TreeHead.from_json(first.splitlines()[0]) == stored
    assert verify_export(first.splitlines(), jwks(rt)).ok


# -- the proof endpoints ------------------------------------------------------------------


def test_latest_head_is_served_and_signed_once_before_the_first(vault: Vault) -> None:
    rt = vault.runtime
    headers = auditor(vault)
    response = vault.client.get(TREE_HEAD, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    head = TreeHead.from_json(response.get_json())
    assert head.tree_size == 1 and verify_tree_head(head, jwks(rt))
    append_events(rt, 4)
    # The newest stored head is served; the worker, exports and receipts sign later ones.
    assert TreeHead.from_json(vault.client.get(TREE_HEAD, headers=headers).get_json()) == head
    checkpoint(rt)
    assert vault.client.get(TREE_HEAD, headers=headers).get_json()["tree_size"] == 5


def test_consistency_between_stored_heads_verifies_until_history_is_rewritten(
        vault: Vault) -> None:
    rt = vault.runtime
    headers = auditor(vault)
    append_events(rt, 9)
    old = checkpoint(rt)
    append_events(rt, 15)
    new = checkpoint(rt)
    response = vault.client.get(CONSISTENCY, headers=headers,
                                query_string={"first": old.tree_size, "second": new.tree_size})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert TreeHead.from_json(body["first"]) == old and TreeHead.from_json(body["second"]) == new
    assert verify_consistency_between(old, new, body["proof"], jwks(rt)).ok
    assert body["proof"] == [p.hex() for p in consistency_proof(log_leaves(rt), old.tree_size)]

    rewrite_history(rt, 4, actor="person:someone-else")
    append_events(rt, 1)
    with pytest.raises(LogIntegrityError, match="history was rewritten"):
        checkpoint(rt)
    # Had a vault signed the rewritten log, its proof could not link it to the old head...
    leaves = log_leaves(rt)
    forged = sign_tree_head(len(leaves), root(leaves), new.timestamp + 1,
                            rt.keyring.signing_key.private_key, rt.keyring.signing_key.kid)
    result = verify_consistency_between(old, forged, consistency_proof(leaves, old.tree_size),
                                        jwks(rt))
    assert not result.ok and "history rewritten" in (result.reason or "")
    # ...and the rewritten events no longer verify against the heads it did sign.
    with rt.database.read() as session:
        full = list(export_lines(session, head=new))
        one = list(export_lines(session, head=new, merchant_id="m1"))
    assert "root mismatch" in (verify_export(full, jwks(rt)).reason or "")
    broken = verify_export(one, jwks(rt))
    assert not broken.ok and broken.first_bad_index == 3


def test_inclusion_proof_of_an_event_verifies_against_its_head(vault: Vault) -> None:
    rt = vault.runtime
    headers = auditor(vault)
    append_events(rt, 12)
    small = checkpoint(rt)
    append_events(rt, 6)
    checkpoint(rt)
    for query, size in (({"index": 7}, 19), ({"index": 7, "tree_size": small.tree_size}, 13)):
        response = vault.client.get(INCLUSION, headers=headers, query_string=query)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        head = TreeHead.from_json(body["tree_head"])
        assert (body["index"], body["tree_size"], head.tree_size) == (7, size, size)
        assert verify_tree_head(head, jwks(rt))
        hashed = leaf_hash(leaf_bytes(body["leaf"]))
        assert body["leaf"]["seq"] == 8 and hashed.hex() == body["leaf_hash"]
        proof = [bytes.fromhex(p) for p in body["proof"]]
        assert verify_inclusion(hashed, 7, size, proof, head.root_hash)


def test_proofs_need_an_auditor_and_sensible_sizes(vault: Vault) -> None:
    rt = vault.runtime
    headers = auditor(vault)
    append_events(rt, 4)
    checkpoint(rt)
    shop = register_merchant(rt, "Book Shop")
    for path, query in ((TREE_HEAD, {}), (CONSISTENCY, {"first": 1, "second": 5}),
                        (INCLUSION, {"index": 0})):
        assert_problem(vault.client.get(path, query_string=query), 401)
        assert_problem(vault.client.get(path, query_string=query,
                                        headers=token_header(vault.client, shop)), 403)
    bad = [
        (CONSISTENCY, {"first": 5, "second": 1}, 400, "first"),
        (CONSISTENCY, {"first": 2, "second": 5}, 404, "first"),
        (CONSISTENCY, {"first": 5, "second": 9}, 404, "second"),
        (CONSISTENCY, {"first": -1, "second": 5}, 422, "first"),
        (CONSISTENCY, {"second": 5}, 422, "first"),
        (CONSISTENCY, {"first": "x", "second": 5}, 422, "first"),
        (INCLUSION, {"index": 5}, 400, "index"),
        (INCLUSION, {"index": 0, "tree_size": 3}, 404, "tree_size"),
        (INCLUSION, {"index": 2**70}, 422, "index"),
        (INCLUSION, {}, 422, "index"),
    ]
    for path, query, status, field in bad:
        assert_problem(vault.client.get(path, query_string=query, headers=headers), status,
                       field=field)
    consistent = vault.client.get(CONSISTENCY, query_string={"first": 5, "second": 5},
                                  headers=headers)
    assert consistent.status_code == 200 and consistent.get_json()["proof"] == []
