"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing and proofs.

The consent log is published as an append-only Merkle tree so that anyone
holding a signed tree head can check, without trusting the vault, that an
event is in the log (inclusion proof) and that a later log only extends an
earlier one (consistency proof). Everything here is a pure function over
32-byte SHA-256 hashes: no database, no web framework, so the same code runs
inside the vault (which imports it from this package) and in an auditor's or a
merchant's offline verifier.

Proofs are described twice: as the leaf *ranges* whose subtree hashes make
them up (:func:`inclusion_ranges`, :func:`consistency_ranges`), and as hashes
computed from a list of leaf hashes. The ranges let the vault answer a proof
from stored subtree hashes in O(log n) reads instead of rehashing the log.

Leaves and interior nodes are hashed with distinct one-byte prefixes
(0x00 and 0x01) so that a leaf can never be passed off as an interior node
(second-preimage resistance, RFC 9162 §2.1.1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

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


NodeCallback = Callable[[int, int, bytes], None]


class TreeBuilder:
    """Incremental MTH over a stream of leaf hashes in O(log n) memory.

    A tree of ``n`` leaves is the concatenation of perfect subtrees whose
    sizes are the binary digits of ``n``, largest first. The builder keeps
    exactly one hash per set bit (``_stack``, left to right; the "frontier");
    appending a leaf merges equal-sized neighbours like a binary counter
    carry. The root folds the stack from the right, which reproduces RFC
    9162's split at the largest power of two. This lets a verifier hash a
    million-event export without holding it in memory, and lets the vault
    resume from a stored frontier so the next tree head hashes only new leaves.

    ``on_node(level, position, hash)`` (optional) is told of every perfect
    subtree as it completes: each leaf (level 0) and each merge.
    """

    __slots__ = ("_heights", "_on_node", "_size", "_stack")

    def __init__(self, on_node: NodeCallback | None = None) -> None:
        self._stack: list[bytes] = []
        self._heights: list[int] = []
        self._size = 0
        self._on_node = on_node

    @classmethod
    def resume(cls, size: int, frontier: Sequence[bytes],
               on_node: NodeCallback | None = None) -> TreeBuilder:
        """A builder positioned after ``size`` leaves, from that tree's frontier.

        ``frontier`` holds the roots of the perfect subtrees at
        :func:`frontier_coordinates` ``(size)``, left to right.
        """
        coordinates = frontier_coordinates(size)
        if len(frontier) != len(coordinates):
            raise ValueError(f"a tree of size {size} has a frontier of {len(coordinates)} "
                             f"hashes, not {len(frontier)}")
        if not _proof_ok(frontier):
            raise ValueError("frontier hashes must be 32 bytes")
        builder = cls(on_node)
        builder._stack = list(frontier)
        builder._heights = [level for level, _ in coordinates]
        builder._size = size
        return builder

    @property
    def size(self) -> int:
        """How many leaves have been appended."""
        return self._size

    def frontier(self) -> list[bytes]:
        """The roots of the perfect subtrees making up the tree so far, left to right."""
        return list(self._stack)

    def append(self, leaf_hash_: bytes) -> None:
        """Add the hash of the next leaf (already ``leaf_hash``-ed)."""
        if len(leaf_hash_) != HASH_SIZE:
            raise ValueError("leaf hash must be 32 bytes")
        position = self._size
        value = leaf_hash_
        if self._on_node is not None:
            self._on_node(0, position, value)
        height = 0
        while self._heights and self._heights[-1] == height:
            value = node_hash(self._stack.pop(), value)
            self._heights.pop()
            height += 1
            if self._on_node is not None:
                self._on_node(height, position >> height, value)
        self._stack.append(value)
        self._heights.append(height)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes in order."""
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """MTH of everything appended so far; the builder stays usable."""
        return fold(self._stack)


def fold(subtree_roots: Sequence[bytes]) -> bytes:
    """The root over adjacent perfect subtrees, left to right, largest first.

    This is how RFC 9162 joins the pieces of a tree whose size is not a power
    of two: ``node_hash(a, node_hash(b, c))`` for pieces ``a, b, c``.
    """
    if not subtree_roots:
        return EMPTY_ROOT
    value = subtree_roots[-1]
    for left in reversed(subtree_roots[:-1]):
        value = node_hash(left, value)
    return value


def frontier_coordinates(size: int) -> list[tuple[int, int]]:
    """``(level, position)`` of the perfect subtrees a tree of ``size`` leaves ends in.

    One per set bit of ``size``, largest (leftmost) first; the subtree at
    ``(level, position)`` covers leaves ``position * 2**level`` onwards.
    """
    _check_size("size", size)
    return perfect_subtrees(0, size)


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """The aligned perfect subtrees ``(level, position)`` that RFC 9162 splits
    ``[start, end)`` into, left to right; :func:`fold` of their hashes is its root.

    ``start`` must be a multiple of the smallest power of two not below the
    width, which every subtree the RFC's recursion visits is.
    """
    _check_size("start", start)
    _check_size("end", end)
    if end < start:
        raise ValueError(f"empty range [{start}, {end})")
    width = end - start
    if width and start % (1 << (width - 1).bit_length()):
        raise ValueError(f"[{start}, {end}) is not a subtree of the log")
    pieces: list[tuple[int, int]] = []
    while start < end:
        width = end - start
        level = width.bit_length() - 1
        if width == 1 << level:
            pieces.append((level, start >> level))
            break
        k = 1 << level  # the largest power of two below width: RFC 9162's split
        pieces.append((level, start >> level))
        start += k
    return pieces


def inclusion_ranges(index: int, tree_size: int) -> list[tuple[int, int]]:
    """The leaf ranges ``[start, end)`` whose roots form ``PATH(index, D[tree_size])``.

    In proof order (leaf-side sibling first), per RFC 9162 §2.1.3.1.
    """
    _check_size("index", index)
    _check_size("tree_size", tree_size)
    if index >= tree_size:
        raise ValueError(f"index {index} is outside a tree of size {tree_size}")
    ranges: list[tuple[int, int]] = []
    start, end, m = 0, tree_size, index
    # Walk down from the root, recording the sibling at each level; the
    # recursion in the RFC appends on the way back up, so reverse at the end.
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
    ranges.reverse()
    return ranges


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """``PATH(index, D[n])`` (RFC 9162 §2.1.3.1), leaf-side sibling first.

    The audit path is the list of sibling subtree hashes needed to recompute
    the root from one leaf, so a client can check one event without seeing
    the others.
    """
    _check_size("index", index)
    return [_subtree_root(leaf_hashes, start, end)
            for start, end in inclusion_ranges(index, len(leaf_hashes))]


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


def consistency_ranges(old_size: int, tree_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots form ``PROOF(old_size, D[tree_size])`` (RFC 9162 §2.1.4.1).

    Empty when ``old_size`` is 0 or equals ``tree_size``, by convention.
    """
    _check_size("old_size", old_size)
    _check_size("tree_size", tree_size)
    if old_size > tree_size:
        raise ValueError(f"old_size {old_size} is larger than the tree ({tree_size})")
    if old_size in (0, tree_size):
        return []
    ranges: list[tuple[int, int]] = []
    start, end, m = 0, tree_size, old_size
    complete = True  # the "b" flag of SUBPROOF: is D[start:start+m] a whole old subtree
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            complete = False
    if not complete:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """``PROOF(old_size, D[n])`` (RFC 9162 §2.1.4.1).

    The proof lets someone holding the root of the first ``old_size`` leaves
    confirm that the current tree contains them unchanged. By convention the
    proof is empty when ``old_size`` is 0 or equals the tree size.
    """
    return [_subtree_root(leaf_hashes, start, end)
            for start, end in consistency_ranges(old_size, len(leaf_hashes))]


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
