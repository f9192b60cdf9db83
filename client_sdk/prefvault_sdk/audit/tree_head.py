"""Signed tree heads: the vault's signed statement "my log has N events and this root".

A tree head is what auditors keep and compare. It is signed with one of the
vault's Ed25519 signing keys and checked against the public keys of the
vault's JWKS, so a verifier needs nothing from the server but that document.

The signed bytes are a fixed, versioned text serialisation rather than JSON,
so two implementations can never disagree on key order or number formatting,
and a signature made for another purpose (a token, a receipt) can never be
mistaken for a tree-head signature: the domain-separating first line differs.

Only verification lives here (this package must install without the vault);
the vault signs with the same :func:`signed_bytes`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .merkle import HASH_SIZE

SIGNING_CONTEXT = b"prefvault-tree-head/v1\n"
# RFC 9864 names the algorithm "Ed25519"; RFC 8037 JWKS say "EdDSA" for the same curve.
_ACCEPTED_ALGS = frozenset({"Ed25519", "EdDSA"})
_FIELDS = ("tree_size", "root_hash", "timestamp", "signature", "kid")


class TreeHeadError(ValueError):
    """A tree head document that is not well formed."""


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2), as JOSE and the tree heads write bytes."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: object) -> bytes:
    """The inverse of :func:`b64url_encode`; refuses padding and foreign characters."""
    if not isinstance(text, str) or "=" in text:
        raise TreeHeadError("expected unpadded base64url")
    if not text.isascii() or any(not (c.isalnum() or c in "-_") for c in text):
        raise TreeHeadError("invalid base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TreeHeadError("invalid base64url") from exc


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def signed_bytes(tree_size: int, root_hash: bytes, timestamp: int) -> bytes:
    """The exact bytes an Ed25519 signature over a tree head covers (v1)."""
    return SIGNING_CONTEXT + f"{tree_size}\n{root_hash.hex()}\n{timestamp}\n".encode("ascii")


@dataclass(frozen=True)
class TreeHead:
    """A signed statement of the log's size and Merkle root at ``timestamp`` (unix ms)."""

    tree_size: int
    root_hash: bytes
    timestamp: int
    signature: bytes
    kid: str

    def __post_init__(self) -> None:
        if not _is_count(self.tree_size):
            raise TreeHeadError("tree_size must be a non-negative integer")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise TreeHeadError("root_hash must be 32 bytes")
        if not _is_count(self.timestamp):
            raise TreeHeadError("timestamp must be a non-negative integer (unix ms)")
        if not isinstance(self.signature, bytes) or len(self.signature) != 64:
            raise TreeHeadError("signature must be 64 bytes (Ed25519)")
        if not isinstance(self.kid, str) or not self.kid:
            raise TreeHeadError("kid must be a non-empty string")

    def signed_bytes(self) -> bytes:
        """What :attr:`signature` signs; see :func:`signed_bytes`."""
        return signed_bytes(self.tree_size, self.root_hash, self.timestamp)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: root in hex, signature in unpadded base64url."""
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": self.timestamp,
            "signature": b64url_encode(self.signature),
            "kid": self.kid,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> TreeHead:
        """Parse :meth:`to_json` output (a dict or its JSON text).

        Extra keys are ignored so the head can sit inside a larger record
        (the export's first line). Raises :class:`TreeHeadError` when malformed.
        """
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise TreeHeadError("tree head is not valid JSON") from exc
        if not isinstance(data, Mapping):
            raise TreeHeadError("tree head must be a JSON object")
        missing = [name for name in _FIELDS if name not in data]
        if missing:
            raise TreeHeadError(f"tree head lacks {', '.join(missing)}")
        root_hex = data["root_hash"]
        if not isinstance(root_hex, str) or len(root_hex) != 2 * HASH_SIZE:
            raise TreeHeadError("root_hash must be 64 hex digits")
        try:
            root_hash = bytes.fromhex(root_hex)
        except ValueError as exc:
            raise TreeHeadError("root_hash must be 64 hex digits") from exc
        return cls(
            tree_size=data["tree_size"],
            root_hash=root_hash,
            timestamp=data["timestamp"],
            signature=b64url_decode(data["signature"]),
            kid=data["kid"],
        )


def public_keys(jwks: Mapping[str, Any], kid: str) -> list[Ed25519PublicKey]:
    """The usable Ed25519 signing keys named ``kid`` in a JWKS; malformed entries are skipped."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        return []
    found: list[Ed25519PublicKey] = []
    for jwk in keys:
        if not isinstance(jwk, Mapping) or jwk.get("kid") != kid:
            continue
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        if "alg" in jwk and jwk["alg"] not in _ACCEPTED_ALGS:
            continue
        if "use" in jwk and jwk["use"] != "sig":
            continue
        try:
            raw = b64url_decode(jwk.get("x"))
            found.append(Ed25519PublicKey.from_public_bytes(raw))
        except (TreeHeadError, ValueError):
            continue
    return found


def verify_tree_head(head: TreeHead, jwks: Mapping[str, Any]) -> bool:
    """True if ``head`` carries a valid signature by the JWKS key named ``head.kid``."""
    message = head.signed_bytes()
    for key in public_keys(jwks, head.kid):
        try:
            key.verify(head.signature, message)
        except InvalidSignature:
            continue
        return True
    return False
