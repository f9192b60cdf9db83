"""Signed tree heads: the checkpoints of the consent log that auditors keep and compare.

A tree head says "the first N events of my log hash to this Merkle root",
signed with the vault's Ed25519 key. Anyone holding two heads can ask for a
consistency proof and check that the later log only extends the earlier one;
anyone holding one can check an event's inclusion. That is only worth
something if the vault never signs two heads that contradict each other, so
this module is built around that rule.

**Checkpointing** (:func:`checkpoint`) signs a head for the log's current size
and stores it in ``tree_head`` (primary key ``tree_size``):

1. Checkpointers are serialised: on PostgreSQL by a transaction-scoped
   advisory lock (a row lock on ``audit_head`` would stall every consent
   change for the checkpoint's duration), on SQLite by the write lock that
   ``Database.write()`` takes up front (``BEGIN IMMEDIATE``). Under the lock
   the newest stored head is read again, so a second checkpointer finds the
   first one's head and returns it: one head per size, sizes increasing.
2. If the log has not grown, the newest head is returned unchanged.
3. Only new events are hashed. The Merkle tree's perfect-subtree roots are
   stored (``audit_tree_node``, see :mod:`vault.services.merkle_store`); the
   builder resumes from the O(log n) frontier of the previous head and writes
   each subtree root as it completes, which also makes every later proof a
   few reads.
4. Before signing, the new head must provably extend the previous one, or
   nothing is signed and :class:`~vault.errors.LogIntegrityError` is raised
   (and logged as critical):

   * the stored frontier must fold to the previous signed root;
   * the event at the previous size must still carry the chain hash the
     previous head recorded, so a rewritten and re-chained history is caught;
   * every new event must link to its predecessor and match its own chain
     hash, with no gap in ``seq``;
   * an RFC 9162 consistency proof from the stored nodes must verify between
     the previous root and the new one.

   An event already covered by a head and altered in place is not rehashed
   here (that would cost O(n) per checkpoint); it is caught by anyone who
   verifies an export or an inclusion proof against the signed heads, which
   is exactly what the heads are for, and by ``services.audit.check_log``.

Checkpoints happen on demand (exports, receipts, the first request for the
latest head) and periodically in ``prefvault worker``
(``VAULT_CHECKPOINT_INTERVAL_S``, :class:`PeriodicCheckpoints`).

Heads are stored with the chain hash of their last event; proofs
(:func:`inclusion`, :func:`consistency`) are answered from stored heads and
nodes only. No Flask here: the API and the CLI call these functions.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel import Session, col, select

from vault.audit.merkle import TreeBuilder, leaf_hash, verify_consistency
from vault.audit.tree_head import TreeHead, sign_tree_head
from vault.audit.verify import leaf_bytes
from vault.clock import Clock
from vault.crypto.keyring import SigningKey
from vault.db import Database
from vault.errors import LogIntegrityError, NotFound, ValidationFailed
from vault.models import AuditEvent, SignedTreeHead
from vault.services.audit import GENESIS_HASH, chain_hash
from vault.services.audit_reader import document, events, head_seq
from vault.services.merkle_store import MerkleStore

log = logging.getLogger(__name__)

#: the PostgreSQL advisory lock that serialises checkpointers (any fixed 63-bit number)
CHECKPOINT_LOCK = int.from_bytes(hashlib.sha256(b"prefvault:checkpoint").digest()[:8],
                                 "big") >> 1


def _tree_head(row: SignedTreeHead) -> TreeHead:
    return TreeHead(int(row.tree_size), bytes(row.root_hash), int(row.timestamp),
                    bytes(row.signature), row.kid)


def _latest_row(session: Session) -> SignedTreeHead | None:
    return session.exec(
        select(SignedTreeHead).order_by(col(SignedTreeHead.tree_size).desc()).limit(1)
        .execution_options(populate_existing=True)
    ).first()


def latest(session: Session) -> TreeHead | None:
    """The newest stored signed head, or None before the first checkpoint."""
    row = _latest_row(session)
    return None if row is None else _tree_head(row)


def at_size(session: Session, tree_size: int) -> TreeHead | None:
    """The stored head for exactly ``tree_size`` events, if the vault signed one."""
    row = session.get(SignedTreeHead, tree_size)
    return None if row is None else _tree_head(row)


def _refuse(reason: str) -> LogIntegrityError:
    log.critical("refusing to sign a tree head: %s", reason)
    return LogIntegrityError(f"refusing to sign a tree head: {reason}")


def _serialise(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHECKPOINT_LOCK})


def _unix_ms(clock: Clock) -> int:
    return int(clock.now().timestamp() * 1000)


def checkpoint(session: Session, *, signing_key: SigningKey, clock: Clock) -> TreeHead:
    """Sign and store a head for the log as it is now; see the module docstring.

    Returns the newest stored head unchanged when the log has not grown.
    Flushes; the caller commits (inside ``Database.write()``, whose up-front
    write lock is what serialises checkpointers on SQLite).
    """
    _serialise(session)
    previous = _latest_row(session)
    old = int(previous.tree_size) if previous is not None else 0
    size = head_seq(session)
    if previous is not None and size == old:
        return _tree_head(previous)
    if size < old:
        raise _refuse(f"the log holds {size} events but a signed head covers {old}")
    store = MerkleStore(session)
    try:
        frontier = store.frontier(old)
    except LogIntegrityError as exc:
        raise _refuse(exc.detail) from None
    builder = TreeBuilder.resume(old, frontier, on_node=store.add)
    chain = GENESIS_HASH
    if previous is not None:
        if builder.root() != bytes(previous.root_hash):
            raise _refuse(f"the stored Merkle tree no longer hashes to the head of size {old}")
        chain = bytes(previous.chain_hash)
        last = session.get(AuditEvent, old, populate_existing=True) if old else None
        if old and (last is None or bytes(last.hash) != chain):
            raise _refuse(f"event {old} is no longer the one the head of size {old} covered "
                          "(history was rewritten)")
    expected = old + 1
    for row in events(session, after=old, upto=size):
        if row.seq != expected:
            raise _refuse(f"event {expected} is missing")
        doc = document(row)
        if bytes(row.prev_hash) != chain or chain_hash(chain, doc) != bytes(row.hash):
            raise _refuse(f"event {row.seq} does not match the hash chain")
        chain = bytes(row.hash)
        builder.append(leaf_hash(leaf_bytes(doc)))
        expected += 1
    if expected != size + 1:
        raise _refuse(f"event {expected} is missing")
    store.flush()
    root = builder.root()
    if previous is not None and not verify_consistency(
            old, size, bytes(previous.root_hash), root, store.consistency_proof(old, size)):
        raise _refuse(f"the log of {size} events is not consistent with the head of size {old}")
    timestamp = max(_unix_ms(clock), int(previous.timestamp) if previous is not None else 0)
    head = sign_tree_head(size, root, timestamp, signing_key.private_key, signing_key.kid)
    session.add(SignedTreeHead(tree_size=size, root_hash=root, timestamp=timestamp,
                               kid=signing_key.kid, signature=head.signature, chain_hash=chain,
                               created_at=clock.now()))
    session.flush()
    log.info("signed tree head: %d events, root %s", size, root.hex())
    return head


def covering(session: Session, index: int) -> TreeHead | None:
    """The newest stored head that covers leaf ``index``, if any does yet."""
    head = latest(session)
    return head if head is not None and head.tree_size > index else None


class PeriodicCheckpoints:
    """When ``prefvault worker`` signs the next head: every ``interval`` seconds (0: never)."""

    def __init__(self, interval: float, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._monotonic = monotonic
        self._next = monotonic()

    def due(self) -> bool:
        """Whether a checkpoint is due now."""
        return self.interval > 0 and self._monotonic() >= self._next

    def run(self, database: Database, *, signing_key: SigningKey,
            clock: Clock) -> TreeHead | None:
        """Checkpoint in a transaction of its own if one is due; the head, or None."""
        if not self.due():
            return None
        # A refusal must not be retried in a tight loop: the next try waits a full interval.
        self._next = self._monotonic() + self.interval
        with database.write() as session:
            return checkpoint(session, signing_key=signing_key, clock=clock)


# -- proofs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InclusionProof:
    """Leaf ``index`` of the log, its stored leaf hash and its path to ``head``'s root."""

    head: TreeHead
    index: int
    leaf: dict[str, object]
    leaf_hash: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class ConsistencyProof:
    """Two stored heads and the RFC 9162 proof that the second extends the first."""

    first: TreeHead
    second: TreeHead
    proof: list[bytes]


def _stored(session: Session, tree_size: int, field: str) -> TreeHead:
    head = at_size(session, tree_size)
    if head is None:
        raise NotFound(f"the vault signed no tree head of size {tree_size}", field=field)
    return head


def inclusion(session: Session, index: int, tree_size: int | None = None) -> InclusionProof:
    """Inclusion proof of leaf ``index`` against the stored head of ``tree_size``
    (default: the newest head)."""
    if tree_size is None:
        head = latest(session)
        if head is None:
            raise NotFound("the vault has signed no tree head yet", field="tree_size")
    else:
        head = _stored(session, tree_size, "tree_size")
    if index >= head.tree_size:
        raise ValidationFailed(f"index {index} is outside the tree of size {head.tree_size}",
                               field="index")
    event = session.get(AuditEvent, index + 1)
    if event is None:
        raise LogIntegrityError(f"event {index + 1}, covered by a signed head, is missing")
    store = MerkleStore(session)
    return InclusionProof(head, index, document(event), store.leaf(index),
                          store.inclusion_proof(index, head.tree_size))


def consistency(session: Session, first: int, second: int) -> ConsistencyProof:
    """Consistency proof between the stored heads of sizes ``first`` <= ``second``."""
    if first > second:
        raise ValidationFailed("first must not be larger than second", field="first")
    old = _stored(session, first, "first")
    new = _stored(session, second, "second")
    return ConsistencyProof(old, new, MerkleStore(session).consistency_proof(first, second))
