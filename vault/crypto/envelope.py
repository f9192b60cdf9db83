"""Envelope encryption: one data key per person, wrapped by a key-encryption key.

A field is sealed with AES-256-GCM under the person's 256-bit data key with a
fresh random 96-bit nonce, and with associated data naming the table, row id
and field it belongs to. A ciphertext copied to another row, another field or
another person therefore fails to open, and every failure looks the same to
the caller (``DecryptionError``) so nothing can be learnt from which check
failed.

Sealed format: ``0x01 ‖ nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)``.

A data key is wrapped the same way under a key-encryption key (KEK) from the
key ring, with associated data naming the person and the KEK id, so a wrapped
key cannot be moved to another person either. Rotating the KEK rewraps data
keys and never touches the data they protect.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12
KEY_BYTES = 32
_AAD_PREFIX = b"prefvault/v1"


class DecryptionError(Exception):
    """A ciphertext could not be opened: wrong key, wrong place or tampered."""

    def __init__(self) -> None:
        super().__init__("ciphertext could not be decrypted")


def field_aad(table: str, row_id: str, field: str) -> bytes:
    """Associated data that pins a ciphertext to one field of one row."""
    head, tail = _aad_ends(table, field)
    if "\x00" in row_id:
        raise ValueError("AAD parts may not contain NUL")
    return head + row_id.encode() + tail


@lru_cache(maxsize=64)
def _aad_ends(table: str, field: str) -> tuple[bytes, bytes]:
    """The AAD around the row id for one table and field: a campaign opens 100,000 alike."""
    if "\x00" in table or "\x00" in field:
        raise ValueError("AAD parts may not contain NUL")
    return b"\x00".join((_AAD_PREFIX, table.encode(), b"")), b"\x00" + field.encode()


def _seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_VERSION + nonce + aead.encrypt(nonce, plaintext, aad)


_SHORTEST = 1 + NONCE_BYTES + 16
_BODY = 1 + NONCE_BYTES


def _open(aead: AESGCM, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < _SHORTEST or sealed[:1] != FORMAT_VERSION:
        raise DecryptionError()
    try:
        return aead.decrypt(sealed[1:_BODY], sealed[_BODY:], aad)
    except InvalidTag:
        raise DecryptionError() from None


class DataKey:
    """A person's data key, ready to seal and open their fields.

    The AES-GCM object is built once and reused: building it costs about three
    times as much as a small decryption.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("a data key is 32 bytes")
        self._aead = AESGCM(key)

    @staticmethod
    def generate() -> bytes:
        """Fresh random key material for a new person."""
        return AESGCM.generate_key(bit_length=256)

    def encrypt(self, plaintext: bytes, *, table: str, row_id: str, field: str) -> bytes:
        return _seal(self._aead, plaintext, field_aad(table, row_id, field))

    def decrypt(self, sealed: bytes, *, table: str, row_id: str, field: str) -> bytes:
        return _open(self._aead, sealed, field_aad(table, row_id, field))


@lru_cache(maxsize=16)
def _kek_cipher(kek: bytes) -> AESGCM:
    """One cipher object per KEK: a campaign unwraps thousands of data keys with it."""
    return AESGCM(kek)


def wrap_key(kek: bytes, kek_id: str, owner_id: str, data_key: bytes) -> bytes:
    """Seal a data key under a KEK, bound to its owner and the KEK id."""
    return _seal(_kek_cipher(kek), data_key, field_aad("data_key", owner_id, kek_id))


def unwrap_key(kek: bytes, kek_id: str, owner_id: str, wrapped: bytes) -> bytes:
    """Open a wrapped data key; ``DecryptionError`` if it is not this owner's."""
    return _open(_kek_cipher(kek), wrapped, field_aad("data_key", owner_id, kek_id))



def sealed_field_opener(kek: bytes, kek_id: str, *, table: str,
                        field: str) -> Callable[[str, bytes, str, bytes], bytes]:
    """``open(owner_id, wrapped, row_id, sealed)``: one field's plaintext, key unwrapped on the way.

    The same checks as ``unwrap_key`` then ``DataKey.decrypt``, for a
    campaign that opens one field of 100,000 rows, each sealed with another
    person's key: the KEK's cipher and the fixed parts of both AADs are
    prepared once, and no ``DataKey`` is kept.
    """
    cipher = _kek_cipher(kek)
    key_head, key_tail = _aad_ends("data_key", kek_id)
    head, tail = _aad_ends(table, field)
    version = FORMAT_VERSION[0]

    def open_field(owner_id: str, wrapped: bytes, row_id: str, sealed: bytes) -> bytes:
        if "\x00" in owner_id or "\x00" in row_id:
            raise ValueError("AAD parts may not contain NUL")
        if (len(wrapped) < _SHORTEST or wrapped[0] != version or len(sealed) < _SHORTEST
                or sealed[0] != version):
            raise DecryptionError()
        try:
            key = cipher.decrypt(wrapped[1:_BODY], wrapped[_BODY:],
                                 key_head + owner_id.encode() + key_tail)
            if len(key) != KEY_BYTES:
                raise DecryptionError()
            return AESGCM(key).decrypt(sealed[1:_BODY], sealed[_BODY:],
                                       head + row_id.encode() + tail)
        except InvalidTag:
            raise DecryptionError() from None

    return open_field

