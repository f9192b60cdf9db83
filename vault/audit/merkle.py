"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing and proofs.

The consent log is published as an append-only Merkle tree so that anyone
holding a signed tree head can check, without trusting the vault, that an
event is in the log (inclusion proof) and that a later log only extends an
earlier one (consistency proof). Everything here is a pure function over
32-byte SHA-256 hashes: no database, no web framework, so the same code can
run inside the server, the CLI and an offline verifier.

Leaves and interior nodes are hashed with distinct one-byte prefixes
(0x00 and 0x01) so that a leaf can never be passed off as an interior node
(second-preimage resistance, RFC 9162 §2.1.1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)``: the hash of one log entry."""
    return hashlib.sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``).

    RFC 9162 splits every subtree there, which makes the left part a perfect
    tree and lets the log grow without rewriting existing subtrees.
    """
    return 1 << ((n - 1).bit_length() - 1)


def _check_size(name: str, value: int) -> None:
    # bool is an int subclass; a True tree size is a caller bug, not size 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def _subtree_root(hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH of ``hashes[start:end]`` (``end > start``) without copying slices."""
    builder = TreeBuilder()
    for i in range(start, end):
        builder.append(hashes[i])
    return builder.root()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash ``MTH(D[n])`` of a list of leaf hashes.

    The empty tree hashes to ``SHA-256("")`` as RFC 9162 §2.1.1 requires.
    Computed iteratively (see :class:`TreeBuilder`), so very large trees do
    not hit the recursion limit.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    return _subtree_root(leaf_hashes, 0, len(leaf_hashes))


class TreeBuilder:
    """Incremental MTH over a stream of leaf hashes in O(log n) memory.

    A tree of ``n`` leaves is the concatenation of perfect subtrees whose
    sizes are the binary digits of ``n``, largest first. The builder keeps
    exactly one hash per set bit (``_stack``, left to right); appending a leaf
    merges equal-sized neighbours like a binary counter carry. The root folds
    the stack from the right, which reproduces RFC 9162's split at the
    largest power of two. This lets a verifier hash a million-event export
    without holding it in memory.
    """

    __slots__ = ("_heights", "_size", "_stack")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self._heights: list[int] = []
        self._size = 0

    @property
    def size(self) -> int:
        """How many leaves have been appended."""
        return self._size

    def append(self, leaf_hash_: bytes) -> None:
        """Add the hash of the next leaf (already ``leaf_hash``-ed)."""
        if len(leaf_hash_) != HASH_SIZE:
            raise ValueError("leaf hash must be 32 bytes")
        value = leaf_hash_
        height = 0
        while self._heights and self._heights[-1] == height:
            value = node_hash(self._stack.pop(), value)
            self._heights.pop()
            height += 1
        self._stack.append(value)
        self._heights.append(height)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes in order."""
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """MTH of everything appended so far; the builder stays usable."""
        if not self._stack:
            return EMPTY_ROOT
        value = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            value = node_hash(left, value)
        return value


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """``PATH(index, D[n])`` (RFC 9162 §2.1.3.1), leaf-side sibling first.

    The audit path is the list of sibling subtree hashes needed to recompute
    the root from one leaf, so a client can check one event without seeing
    the others.
    """
    _check_size("index", index)
    n = len(leaf_hashes)
    if index >= n:
        raise ValueError(f"index {index} is outside a tree of size {n}")
    path: list[bytes] = []
    start, end, m = 0, n, index
    # Walk down from the root, recording the sibling at each level; the
    # recursion in the RFC appends on the way back up, so reverse at the end.
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            path.append(_subtree_root(leaf_hashes, start + k, end))
            end = start + k
        else:
            path.append(_subtree_root(leaf_hashes, start, start + k))
            start += k
            m -= k
    path.reverse()
    return path


def _proof_ok(proof: Sequence[bytes]) -> bool:
    return all(isinstance(p, bytes) and len(p) == HASH_SIZE for p in proof)


def verify_inclusion(
    leaf_hash_: bytes, index: int, tree_size: int, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """Check an inclusion proof with the algorithm of RFC 9162 §2.1.3.2.

    Returns ``False`` (never raises) for any malformed input, so an untrusted
    export cannot crash the verifier.
    """
    if isinstance(index, bool) or isinstance(tree_size, bool):
        return False
    if not isinstance(index, int) or not isinstance(tree_size, int):
        return False
    if index < 0 or index >= tree_size:
        return False
    if len(leaf_hash_) != HASH_SIZE or len(root_hash) != HASH_SIZE or not _proof_ok(proof):
        return False
    fn, sn = index, tree_size - 1
    r = leaf_hash_
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """``PROOF(old_size, D[n])`` (RFC 9162 §2.1.4.1).

    The proof lets someone holding the root of the first ``old_size`` leaves
    confirm that the current tree contains them unchanged. By convention the
    proof is empty when ``old_size`` is 0 or equals the tree size.
    """
    _check_size("old_size", old_size)
    n = len(leaf_hashes)
    if old_size > n:
        raise ValueError(f"old_size {old_size} is larger than the tree ({n})")
    if old_size in (0, n):
        return []
    proof: list[bytes] = []
    start, end, m = 0, n, old_size
    complete = True  # the "b" flag of SUBPROOF: is D[start:start+m] a whole old subtree
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(_subtree_root(leaf_hashes, start + k, end))
            end = start + k
        else:
            proof.append(_subtree_root(leaf_hashes, start, start + k))
            start += k
            m -= k
            complete = False
    if not complete:
        proof.append(_subtree_root(leaf_hashes, start, end))
    proof.reverse()
    return proof


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check a consistency proof with the algorithm of RFC 9162 §2.1.4.2.

    Any tree is consistent with the empty tree (proof must be empty), and a
    tree is consistent with itself only if the roots are equal and the proof
    is empty. Malformed input returns ``False`` rather than raising.
    """
    for value in (old_size, new_size):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return False
    if old_size > new_size:
        return False
    if len(old_root) != HASH_SIZE or len(new_root) != HASH_SIZE or not _proof_ok(proof):
        return False
    if old_size == 0:
        return old_root == EMPTY_ROOT and not proof
    if old_size == new_size:
        return old_root == new_root and not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # exact power of two: old root is a subtree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
