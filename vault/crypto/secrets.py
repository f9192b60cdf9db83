"""Random client secrets and their storage form.

Client secrets are 256 random bits, so a single SHA-256 is enough to keep
them useless to a database thief (there is nothing to guess), and it keeps
the token endpoint fast. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_PREFIX = "sha256$"


def new_secret() -> str:
    """A fresh URL-safe secret with 256 bits of entropy."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return _PREFIX + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(stored: str, presented: str) -> bool:
    """Constant-time check of a presented secret against its stored hash."""
    if not stored.startswith(_PREFIX) or not isinstance(presented, str):
        return False
    return hmac.compare_digest(stored, hash_secret(presented))
