"""Cryptography of the vault: the key ring, envelope encryption, blind indexes, passwords.

Nothing here touches the database or Flask; services combine these pieces with
storage. See ``envelope`` for the ciphertext format and what it binds.
"""

from vault.crypto.envelope import DataKey, DecryptionError, field_aad
from vault.crypto.keyring import KeyRing, KeyRingError

__all__ = ["DataKey", "DecryptionError", "KeyRing", "KeyRingError", "field_aad"]
