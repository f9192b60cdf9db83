"""Offline verification of consent-log exports: :mod:`prefvault_sdk.audit.export`, re-exported.

The canonical JSON that the hash chain and the Merkle leaves hash comes from
the same package, so the vault and every verifier hash the same bytes.
"""

from prefvault_sdk.audit.canonical import canonical_json, leaf_bytes
from prefvault_sdk.audit.export import (
    ConsistencyResult,
    VerifyResult,
    render_jsonl,
    verify_consistency_between,
    verify_export,
)
from prefvault_sdk.audit.export_csv import render_csv

__all__ = [
    "ConsistencyResult",
    "VerifyResult",
    "canonical_json",
    "leaf_bytes",
    "render_csv",
    "render_jsonl",
    "verify_consistency_between",
    "verify_export",
]
