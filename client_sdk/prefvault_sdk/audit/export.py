"""Offline verification of a consent-log export against a signed tree head.

Needs only the export file and the vault's JWKS: no database, no server. The
reference form is JSON Lines; the first line is the signed tree head plus
``"kind": "tree_head"`` and ``"filtered": true|false``, every further line is
``{"kind": "event", "index": i, "leaf": {...}, "proof": [hex, ...]}``. The CSV
form (:mod:`.export_csv`) carries the same records, one per row, and is
recognised by its header; both go through the same checks below.

* A **full** export holds every leaf ``0..tree_size-1`` in order; the verifier
  recomputes the Merkle root with :class:`~.merkle.TreeBuilder` in O(log n)
  memory and compares it with the signed root.
* A **filtered** export holds some leaves, each with its inclusion proof,
  checked one by one against the signed root.

The leaf bytes are the canonical JSON of the event document
(:mod:`.canonical`), which the vault's own log imports from this package.

Limits worth knowing: a full export with a leaf altered so that it still parses
and still carries the right ``seq`` can only be detected as a root mismatch at
the end; which leaf changed cannot be said in constant memory without proofs,
so ``first_bad_index`` is then ``None``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .canonical import (
    MalformedRecord,
    canonical_json,
    event_leaf_hash,
    leaf_bytes,
    parse_object,
)
from .export_csv import is_csv_header, read_csv
from .merkle import HASH_SIZE, TreeBuilder, verify_consistency, verify_inclusion
from .tree_head import TreeHead, TreeHeadError, verify_tree_head

_HEAD_KEYS = frozenset({"kind", "filtered", "tree_size", "root_hash", "timestamp", "signature",
                        "kid"})

__all__ = [
    "ConsistencyResult",
    "VerifyResult",
    "canonical_json",
    "leaf_bytes",
    "render_jsonl",
    "verify_consistency_between",
    "verify_export",
]


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_export`.

    ``events`` counts event records accepted before the verdict; on failure
    ``first_bad_index`` is the leaf index the problem was found at (``None``
    when the tree head itself, or the export as a whole, is at fault).
    ``tree_size`` is the signed head's, once its signature checked out.
    """

    ok: bool
    events: int
    first_bad_index: int | None = None
    reason: str | None = None
    tree_size: int | None = None


@dataclass(frozen=True)
class ConsistencyResult:
    """Outcome of :func:`verify_consistency_between`."""

    ok: bool
    reason: str | None = None


def render_jsonl(records: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The JSON Lines form of export records (head record first), one line each."""
    for record in records:
        yield json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _decode_proof(raw: object) -> list[bytes]:
    if not isinstance(raw, list):
        raise MalformedRecord("proof must be a list of hex hashes")
    proof: list[bytes] = []
    for item in raw:
        if not isinstance(item, str) or len(item) != 2 * HASH_SIZE:
            raise MalformedRecord("proof entries must be 64 hex digits")
        try:
            proof.append(bytes.fromhex(item))
        except ValueError as exc:
            raise MalformedRecord("proof entries must be 64 hex digits") from exc
    return proof


def _event_leaf_hash(event: Mapping[str, Any]) -> bytes:
    leaf = event["leaf"]
    if not isinstance(leaf, dict):
        raise MalformedRecord("leaf must be a JSON object")
    seq = leaf.get("seq")
    # The vault's seq is gap-free and 1-based, so it must agree with the leaf index;
    # this pins a moved or renumbered event to the spot where it went wrong.
    if "seq" in leaf and seq != event["index"] + 1:
        raise MalformedRecord(f"seq {seq!r} does not match index {event['index']}")
    return event_leaf_hash(leaf)


def _read_head(record: Mapping[str, Any]) -> tuple[TreeHead, bool]:
    if record.get("kind") != "tree_head":
        raise MalformedRecord("first line is not a tree_head")
    filtered = record.get("filtered")
    if not isinstance(filtered, bool):
        raise MalformedRecord("tree_head lacks a boolean 'filtered'")
    unknown = set(record) - _HEAD_KEYS
    if unknown:
        raise MalformedRecord(f"unknown tree_head fields {sorted(unknown)}")
    try:
        return TreeHead.from_json(record), filtered
    except TreeHeadError as exc:
        raise MalformedRecord(str(exc)) from exc


def _read_event(record: Mapping[str, Any],
                filtered: bool) -> tuple[int, Mapping[str, Any], list[bytes]]:
    if record.get("kind") != "event":
        raise MalformedRecord("not an event line")
    allowed = {"kind", "index", "leaf", "proof"} if filtered else {"kind", "index", "leaf"}
    unknown = set(record) - allowed
    if unknown:
        raise MalformedRecord(f"unexpected fields {sorted(unknown)}")
    if "leaf" not in record:
        raise MalformedRecord("event lacks a leaf")
    if not _is_index(record.get("index")):
        raise MalformedRecord("index must be a non-negative integer")
    try:
        proof = _decode_proof(record.get("proof")) if filtered else []
    except MalformedRecord as exc:
        raise MalformedRecord(str(exc), record["index"]) from exc
    return record["index"], record, proof


def _jsonl(first: str, lines: Iterator[str],
           first_line_no: int) -> Iterator[tuple[int, dict[str, Any]]]:
    yield first_line_no, parse_object(first)
    for line_no, line in enumerate(lines, start=first_line_no + 1):
        if not line.strip():
            continue
        try:
            yield line_no, parse_object(line)
        except MalformedRecord as exc:
            raise MalformedRecord(f"line {line_no}: {exc}") from exc


def verify_export(lines: Iterable[str], jwks: Mapping[str, Any]) -> VerifyResult:
    """Verify an export (any iterable of lines, e.g. an open file) against ``jwks``.

    JSON Lines or CSV, recognised by the first line. Stops at the first
    problem. Blank lines are ignored. Memory stays constant for full exports,
    whatever their size. Open CSV files with ``newline=""``.
    """
    iterator = iter(lines)
    first_line_no = 0
    first: str | None = None
    for first_line_no, line in enumerate(iterator, start=1):  # noqa: B007
        if line.strip():
            first = line
            break
    if first is None:
        return VerifyResult(False, 0, None, "export is empty: no tree head")
    reader = (read_csv(first, iterator, first_line_no=first_line_no) if is_csv_header(first)
              else _jsonl(first, iterator, first_line_no))
    try:
        _, head_record = next(reader)
        head, filtered = _read_head(head_record)
    except StopIteration:
        return VerifyResult(False, 0, None, "export is empty: no tree head")
    except MalformedRecord as exc:
        return VerifyResult(False, 0, None, f"tree head malformed: {exc}")
    if not verify_tree_head(head, jwks):
        return VerifyResult(False, 0, None, "tree head signature invalid")
    result = _verify_filtered(reader, head) if filtered else _verify_full(reader, head)
    return VerifyResult(result.ok, result.events, result.first_bad_index, result.reason,
                        head.tree_size)


def _next(reader: Iterator[tuple[int, dict[str, Any]]],
          ) -> tuple[int, dict[str, Any] | MalformedRecord] | None:
    """The reader's next record, a read failure as the record itself, None at the end."""
    try:
        return next(reader)
    except StopIteration:
        return None
    except MalformedRecord as exc:
        return 0, exc


def _verify_full(reader: Iterator[tuple[int, dict[str, Any]]], head: TreeHead) -> VerifyResult:
    builder = TreeBuilder()
    count = 0
    while (item := _next(reader)) is not None:
        line_no, record = item
        expected = count
        try:
            if isinstance(record, MalformedRecord):
                raise record
            index, event, _ = _read_event(record, filtered=False)
            if index != expected:
                return VerifyResult(False, count, expected,
                                    f"index out of order: expected {expected}, found {index}")
            if index >= head.tree_size:
                return VerifyResult(
                    False, count, index,
                    f"extra leaves: tree has {head.tree_size}, export has more")
            builder.append(_event_leaf_hash(event))
        except MalformedRecord as exc:
            where = f"line {line_no}: " if line_no else ""
            return VerifyResult(False, count, expected, f"{where}{exc}")
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


def _verify_filtered(reader: Iterator[tuple[int, dict[str, Any]]],
                     head: TreeHead) -> VerifyResult:
    count = 0
    previous = -1
    while (item := _next(reader)) is not None:
        line_no, record = item
        where = f"line {line_no}: " if line_no else ""
        try:
            if isinstance(record, MalformedRecord):
                raise record
            index, event, proof = _read_event(record, filtered=True)
        except MalformedRecord as exc:
            bad = exc.index if exc.index is not None else previous + 1
            return VerifyResult(False, count, bad, f"{where}{exc}")
        if index <= previous:
            return VerifyResult(False, count, index,
                                f"index out of order: {index} after {previous}")
        if index >= head.tree_size:
            return VerifyResult(False, count, index,
                                f"index {index} outside a tree of size {head.tree_size}")
        try:
            hashed = _event_leaf_hash(event)
        except MalformedRecord as exc:
            return VerifyResult(False, count, index, f"{where}{exc}")
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
