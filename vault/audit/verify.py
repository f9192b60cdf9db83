"""Offline verification of a consent-log export against a signed tree head.

Needs only the export file and the vault's JWKS: no database, no server. An
export is JSON Lines; the first line is the signed tree head plus
``"kind": "tree_head"`` and ``"filtered": true|false``, every further line is
``{"kind": "event", "index": i, "leaf": {...}, "proof": [hex, ...]}``.

* A **full** export holds every leaf ``0..tree_size-1`` in order; the verifier
  recomputes the Merkle root with :class:`~vault.audit.merkle.TreeBuilder`
  in O(log n) memory and compares it with the signed root.
* A **filtered** export holds some leaves, each with its inclusion proof,
  checked one by one against the signed root.

The leaf bytes are the canonical JSON of the event document. The canonical
form is defined here, in the module with no database dependencies, and the
vault's own log (:mod:`vault.services.audit`) imports it from here, so the two
can never disagree.

Limits worth knowing: a full export with a leaf altered so that it still parses
and still carries the right ``seq`` can only be detected as a root mismatch at
the end; which leaf changed cannot be said in constant memory without proofs,
so ``first_bad_index`` is then ``None``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vault.audit.merkle import (
    HASH_SIZE,
    TreeBuilder,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from vault.audit.tree_head import TreeHead, TreeHeadError, verify_tree_head

_HEAD_KEYS = frozenset({"kind", "filtered", "tree_size", "root_hash", "timestamp", "signature",
                        "kid"})


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_export`.

    ``events`` counts event lines accepted before the verdict; on failure
    ``first_bad_index`` is the leaf index the problem was found at (``None``
    when the tree head itself, or the export as a whole, is at fault).
    """

    ok: bool
    events: int
    first_bad_index: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class ConsistencyResult:
    """Outcome of :func:`verify_consistency_between`."""

    ok: bool
    reason: str | None = None


class _BadLine(ValueError):
    """A line that cannot be read; ``index`` is the leaf index it claimed, if any."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


def canonical_json(value: object) -> str:
    """Sorted keys, no spaces, non-ASCII kept: the vault's canonical form."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def leaf_bytes(document: Mapping[str, Any]) -> bytes:
    """The Merkle leaf of one event: its canonical JSON, UTF-8 encoded."""
    return canonical_json(document).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers may keep different copies of a duplicated key, so what one tool
    # shows would not be what was hashed; refuse instead.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _BadLine(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise _BadLine(f"non-standard JSON constant {name}")


def _parse(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _BadLine:
        raise
    except (ValueError, RecursionError) as exc:
        raise _BadLine("not valid JSON") from exc
    if not isinstance(value, dict):
        raise _BadLine("not a JSON object")
    return value


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _decode_proof(raw: object) -> list[bytes]:
    if not isinstance(raw, list):
        raise _BadLine("proof must be a list of hex hashes")
    proof: list[bytes] = []
    for item in raw:
        if not isinstance(item, str) or len(item) != 2 * HASH_SIZE:
            raise _BadLine("proof entries must be 64 hex digits")
        try:
            proof.append(bytes.fromhex(item))
        except ValueError as exc:
            raise _BadLine("proof entries must be 64 hex digits") from exc
    return proof


def _event_leaf_hash(event: Mapping[str, Any]) -> bytes:
    leaf = event["leaf"]
    if not isinstance(leaf, dict):
        raise _BadLine("leaf must be a JSON object")
    seq = leaf.get("seq")
    # The vault's seq is gap-free and 1-based, so it must agree with the leaf index;
    # this pins a moved or renumbered event to the spot where it went wrong.
    if "seq" in leaf and seq != event["index"] + 1:
        raise _BadLine(f"seq {seq!r} does not match index {event['index']}")
    try:
        return leaf_hash(leaf_bytes(leaf))
    except UnicodeEncodeError as exc:
        raise _BadLine("leaf is not encodable as UTF-8") from exc


def _read_head(line: str) -> tuple[TreeHead, bool]:
    record = _parse(line)
    if record.get("kind") != "tree_head":
        raise _BadLine("first line is not a tree_head")
    filtered = record.get("filtered")
    if not isinstance(filtered, bool):
        raise _BadLine("tree_head lacks a boolean 'filtered'")
    unknown = set(record) - _HEAD_KEYS
    if unknown:
        raise _BadLine(f"unknown tree_head fields {sorted(unknown)}")
    try:
        return TreeHead.from_json(record), filtered
    except TreeHeadError as exc:
        raise _BadLine(str(exc)) from exc


def _read_event(line: str, filtered: bool) -> tuple[int, dict[str, Any], list[bytes]]:
    record = _parse(line)
    if record.get("kind") != "event":
        raise _BadLine("not an event line")
    allowed = {"kind", "index", "leaf", "proof"} if filtered else {"kind", "index", "leaf"}
    unknown = set(record) - allowed
    if unknown:
        raise _BadLine(f"unexpected fields {sorted(unknown)}")
    if "leaf" not in record:
        raise _BadLine("event lacks a leaf")
    if not _is_index(record.get("index")):
        raise _BadLine("index must be a non-negative integer")
    try:
        proof = _decode_proof(record.get("proof")) if filtered else []
    except _BadLine as exc:
        raise _BadLine(str(exc), record["index"]) from exc
    return record["index"], record, proof


def verify_export(lines: Iterable[str], jwks: Mapping[str, Any]) -> VerifyResult:
    """Verify an export (any iterable of lines, e.g. an open file) against ``jwks``.

    Stops at the first problem. Blank lines are ignored. Memory stays
    constant for full exports, whatever their size.
    """
    iterator = iter(lines)
    head_line = next((line for line in iterator if line.strip()), None)
    if head_line is None:
        return VerifyResult(False, 0, None, "export is empty: no tree head")
    try:
        head, filtered = _read_head(head_line)
    except _BadLine as exc:
        return VerifyResult(False, 0, None, f"tree head malformed: {exc}")
    if not verify_tree_head(head, jwks):
        return VerifyResult(False, 0, None, "tree head signature invalid")
    if filtered:
        return _verify_filtered(iterator, head)
    return _verify_full(iterator, head)


def _verify_full(lines: Iterable[str], head: TreeHead) -> VerifyResult:
    builder = TreeBuilder()
    count = 0
    for line_no, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        expected = count
        try:
            index, event, _ = _read_event(line, filtered=False)
            if index != expected:
                return VerifyResult(False, count, expected,
                                    f"index out of order: expected {expected}, found {index}")
            if index >= head.tree_size:
                return VerifyResult(
                    False, count, index,
                    f"extra leaves: tree has {head.tree_size}, export has more")
            builder.append(_event_leaf_hash(event))
        except _BadLine as exc:
            return VerifyResult(False, count, expected, f"line {line_no}: {exc}")
        count += 1
    if count < head.tree_size:
        return VerifyResult(False, count, count,
                            f"missing leaves: tree has {head.tree_size}, export has {count}")
    if builder.root() != head.root_hash:
        return VerifyResult(
            False, count, None,
            "root mismatch: the leaves do not hash to the signed root "
            "(a leaf was altered; a full export cannot say which)")
    return VerifyResult(True, count)


def _verify_filtered(lines: Iterable[str], head: TreeHead) -> VerifyResult:
    count = 0
    previous = -1
    for line_no, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        try:
            index, event, proof = _read_event(line, filtered=True)
        except _BadLine as exc:
            where = exc.index if exc.index is not None else previous + 1
            return VerifyResult(False, count, where, f"line {line_no}: {exc}")
        if index <= previous:
            return VerifyResult(False, count, index,
                                f"index out of order: {index} after {previous}")
        if index >= head.tree_size:
            return VerifyResult(False, count, index,
                                f"index {index} outside a tree of size {head.tree_size}")
        try:
            hashed = _event_leaf_hash(event)
        except _BadLine as exc:
            return VerifyResult(False, count, index, f"line {line_no}: {exc}")
        if not verify_inclusion(hashed, index, head.tree_size, proof, head.root_hash):
            return VerifyResult(False, count, index, "leaf hash does not match inclusion proof")
        previous = index
        count += 1
    return VerifyResult(True, count)


def verify_consistency_between(
    old_head: TreeHead,
    new_head: TreeHead,
    proof: Sequence[bytes] | Sequence[str],
    jwks: Mapping[str, Any],
) -> ConsistencyResult:
    """Check that ``new_head``'s log extends ``old_head``'s without rewriting it.

    Both heads must be signed by keys in ``jwks``; ``proof`` is the RFC 9162
    consistency proof, as bytes or hex strings.
    """
    if not verify_tree_head(old_head, jwks):
        return ConsistencyResult(False, "old tree head signature invalid")
    if not verify_tree_head(new_head, jwks):
        return ConsistencyResult(False, "new tree head signature invalid")
    if old_head.tree_size > new_head.tree_size:
        return ConsistencyResult(False, "old tree is larger than the new one")
    try:
        hashes = [p if isinstance(p, bytes) else bytes.fromhex(p) for p in proof]
    except (TypeError, ValueError):
        return ConsistencyResult(False, "proof entries must be hashes or hex strings")
    if not verify_consistency(old_head.tree_size, new_head.tree_size, old_head.root_hash,
                              new_head.root_hash, hashes):
        return ConsistencyResult(False, "consistency proof does not verify: history rewritten")
    return ConsistencyResult(True)
