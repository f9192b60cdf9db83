"""Signing tree heads; their format and verification are :mod:`prefvault_sdk.audit.tree_head`.

A tree head is the vault's signed statement "my log has N events and this
root". The bytes signed (:func:`signed_bytes`) are defined once, beside the
verifier, so what the vault signs and what an auditor checks cannot differ.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prefvault_sdk.audit.merkle import HASH_SIZE
from prefvault_sdk.audit.tree_head import (
    TreeHead,
    TreeHeadError,
    b64url_encode,
    signed_bytes,
    verify_tree_head,
)

__all__ = [
    "TreeHead",
    "TreeHeadError",
    "public_jwk",
    "sign_tree_head",
    "signed_bytes",
    "verify_tree_head",
]


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def sign_tree_head(
    size: int, root: bytes, timestamp: int, private_key: Ed25519PrivateKey, kid: str
) -> TreeHead:
    """Sign ``(size, root, timestamp)`` with the vault key named ``kid``."""
    if not _is_count(size) or not _is_count(timestamp):
        raise TreeHeadError("size and timestamp must be non-negative integers")
    if not isinstance(root, bytes) or len(root) != HASH_SIZE:
        raise TreeHeadError("root must be 32 bytes")
    signature = private_key.sign(signed_bytes(size, root, timestamp))
    return TreeHead(size, root, timestamp, signature, kid)


def public_jwk(private_key: Ed25519PrivateKey, kid: str) -> dict[str, str]:
    """The RFC 8037 public JWK for ``private_key``, as the vault's JWKS publishes it."""
    raw = private_key.public_key().public_bytes_raw()
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw), "kid": kid,
            "alg": "Ed25519", "use": "sig"}
