"""RFC 9162 Merkle tree hashing and proofs: :mod:`prefvault_sdk.audit.merkle`, re-exported."""

from prefvault_sdk.audit.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    TreeBuilder,
    consistency_proof,
    consistency_ranges,
    fold,
    frontier_coordinates,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    perfect_subtrees,
    root,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "TreeBuilder",
    "consistency_proof",
    "consistency_ranges",
    "fold",
    "frontier_coordinates",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "perfect_subtrees",
    "root",
    "verify_consistency",
    "verify_inclusion",
]
