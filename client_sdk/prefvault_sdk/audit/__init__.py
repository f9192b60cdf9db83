"""Offline verification of what the vault signs: consent-log exports, tree heads, receipts.

Pure functions over the files a vault hands out and its public JWKS, with no
server, database or web framework; the vault itself imports this package, so
the code that builds the log and the code that checks it are the same.

    from prefvault_sdk.audit import verify_export

    with open("log.jsonl", newline="") as export:      # or the CSV export
        result = verify_export(export, jwks)
    assert result.ok, (result.first_bad_index, result.reason)

Modules: :mod:`.merkle` (RFC 9162 hashes and proofs), :mod:`.tree_head`
(signed tree heads), :mod:`.export` and :mod:`.export_csv` (the export formats),
:mod:`.receipt` (consent receipts), :mod:`.canonical` (the bytes that are hashed).
"""

from .canonical import canonical_json, leaf_bytes
from .export import (
    ConsistencyResult,
    VerifyResult,
    verify_consistency_between,
    verify_export,
)
from .merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from .receipt import Receipt, verify_receipt
from .tree_head import TreeHead, TreeHeadError, verify_tree_head

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "ConsistencyResult",
    "Receipt",
    "TreeBuilder",
    "TreeHead",
    "TreeHeadError",
    "VerifyResult",
    "canonical_json",
    "consistency_proof",
    "inclusion_proof",
    "leaf_bytes",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_consistency_between",
    "verify_export",
    "verify_inclusion",
    "verify_receipt",
    "verify_tree_head",
]
