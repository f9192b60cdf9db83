"""Many writers and checkpointers at once: the log stays gap-free, chained and verifiable.

Eight writers, each with its own engine and connections (as separate app
processes would have), append 500 consent-change events each through
``record_event`` (the one place every consent change goes through, and the
one that serialises them), one transaction per event, while two
checkpointers sign tree heads as fast as they can. Afterwards the sequence
is exactly 1..N, the hash chain checks out, every stored head is consistent
with the next, and the newest head's root is the root of the events as stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from itertools import pairwise

import pytest
from api_helpers import rows
from sqlmodel import select

from vault.audit.merkle import consistency_proof, leaf_hash, root
from vault.audit.tree_head import TreeHead, verify_tree_head
from vault.audit.verify import leaf_bytes, verify_consistency_between, verify_export
from vault.config import Settings
from vault.db import Database
from vault.extensions import Runtime
from vault.models import AuditEvent, SignedTreeHead
from vault.services import tree_heads
from vault.services.audit import AuditTag, check_log, event_document, record_event
from vault.services.audit_export import export_lines
from vault.services.merkle_store import MerkleStore

WRITERS = 8
CHANGES = 500
CHECKPOINTERS = 2
PAIRS = (("email", "offers"), ("sms", "order_updates"), ("post", "surveys"))

pytestmark = pytest.mark.slow


def _in_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return errors


def test_concurrent_writers_and_checkpointers_keep_one_verifiable_log(
        runtime: Runtime, settings: Settings) -> None:
    before = int(rows(runtime, "SELECT count(*) AS n FROM audit_event")[0]["n"])
    start = threading.Barrier(WRITERS + CHECKPOINTERS)
    writing = threading.Event()
    writing.set()

    def engine() -> Database:
        # Each thread its own engine and pool: on SQLite, no shared in-process lock either.
        return Database(settings.database_url, busy_timeout_ms=60_000)

    def writer(number: int) -> Callable[[], None]:
        def changes() -> None:
            database = engine()
            try:
                start.wait()
                for n in range(CHANGES):
                    channel, purpose = PAIRS[n % len(PAIRS)]
                    with database.write() as session:
                        record_event(session, clock=runtime.clock,
                                     tag=AuditTag.PERMISSION_CHANGED,
                                     actor=f"person:p{number}", person_ref=f"p{number}",
                                     merchant_id="m1", subject=f"sub_{number}",
                                     data={"after": {"channel": channel, "purpose": purpose,
                                                     "allowed": n % 2 == 0},
                                           "version": n + 2})
            finally:
                database.dispose()
        return changes

    def checkpointer() -> None:
        database = engine()
        try:
            start.wait()
            while writing.is_set():
                with database.write() as session:
                    tree_heads.checkpoint(session, signing_key=runtime.keyring.signing_key,
                                          clock=runtime.clock)
                time.sleep(0.05)
        finally:
            database.dispose()

    writers = [writer(number) for number in range(WRITERS)]

    def all_writers() -> None:
        errors = _in_threads(writers)
        writing.clear()
        if errors:
            raise errors[0]

    errors = _in_threads([all_writers, *[checkpointer] * CHECKPOINTERS])
    assert not errors, errors

    total = before + WRITERS * CHANGES
    seqs = [int(r["seq"]) for r in rows(runtime, "SELECT seq FROM audit_event ORDER BY seq")]
    assert seqs == list(range(1, total + 1))
    with runtime.database.read() as session:
        assert check_log(session).ok
    with runtime.database.write() as session:
        final = tree_heads.checkpoint(session, signing_key=runtime.keyring.signing_key,
                                      clock=runtime.clock)
    jwks = {"keys": [key.public_jwk() for key in runtime.keyring.signing_keys]}
    with runtime.database.read() as session:
        events = session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()
        leaves = [leaf_hash(leaf_bytes(event_document(e))) for e in events]
        assert final.tree_size == total and final.root_hash == root(leaves)
        assert verify_tree_head(final, jwks)
        stored = session.exec(select(SignedTreeHead).order_by(SignedTreeHead.tree_size)).all()
        heads = [TreeHead(h.tree_size, bytes(h.root_hash), h.timestamp, bytes(h.signature),
                          h.kid) for h in stored]
        assert len(heads) > 2, "the checkpointers never ran while the writers wrote"
        store = MerkleStore(session)
        for old, new in pairwise(heads):
            assert old.timestamp <= new.timestamp
            proof = store.consistency_proof(old.tree_size, new.tree_size)
            assert proof == consistency_proof(leaves[:new.tree_size], old.tree_size)
            assert verify_consistency_between(old, new, proof, jwks).ok
        result = verify_export(export_lines(session, head=final), jwks)
    assert result.ok and result.events == total, result
