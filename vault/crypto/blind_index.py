"""Blind indexes: find a row by a secret value without storing the value.

The login email is looked up through HMAC-SHA256 under a key of its own from
the key ring. Unlike a salted hash, the same address always gives the same
index (so it can be a unique column), and unlike a plain hash, nobody without
the key can test guesses against a copy of the database.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata


def normalise_email(email: str) -> str:
    """The canonical form under which an address is indexed: NFKC, trimmed, lower case."""
    return unicodedata.normalize("NFKC", email).strip().lower()


def email_index(key: bytes, email: str) -> bytes:
    """The 32-byte blind index of a login email."""
    return hmac.new(key, b"email\x00" + normalise_email(email).encode("utf-8"),
                    hashlib.sha256).digest()
