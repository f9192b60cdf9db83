"""PKCE (RFC 7636) and the random values of an authorization request.

The vault accepts only the ``S256`` method: the verifier stays with the
merchant, only its SHA-256 travels through the person's browser, so a code
stolen from a redirect is useless without it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets


def new_code_verifier() -> str:
    """A fresh verifier: 64 random bytes as 86 URL-safe characters (RFC 7636 allows 43-128)."""
    return secrets.token_urlsafe(64)


def s256_challenge(verifier: str) -> str:
    """``BASE64URL(SHA256(verifier))`` without padding, as RFC 7636 §4.2 defines it."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    """An unguessable ``state``: binds the callback to the session that started the flow."""
    return secrets.token_urlsafe(24)


def new_nonce() -> str:
    """An unguessable OpenID Connect ``nonce``: binds the id_token to this request."""
    return secrets.token_urlsafe(16)


__all__ = ["new_code_verifier", "new_nonce", "new_state", "s256_challenge"]
