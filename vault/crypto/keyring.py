"""The key ring: every secret the vault holds, in one file outside the database.

It carries the key-encryption keys (each with an id, one of them active), the
blind-index key for looking up login emails, the key that signs session
cookies, the root from which merchants' webhook signing secrets are derived,
and the Ed25519 keys that sign tokens, receipts and audit checkpoints.
Keeping it apart from the database is what makes a stolen database copy
useless: every personal field in it is sealed under data keys that only these
KEKs unwrap.

The file is JSON, mode 0600, in a 0700 folder, written atomically (temporary
file, fsync, rename) so a crash never leaves half a key ring.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

FORMAT = "prefvault-keyring/1"


class KeyRingError(Exception):
    """The key ring is missing, unreadable or malformed."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, *, length: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise KeyRingError(f"key ring: {what} is not base64") from None
    if len(raw) != length:
        raise KeyRingError(f"key ring: {what} must be {length} bytes")
    return raw


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _new_kid(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"


@dataclass
class SigningKey:
    """An Ed25519 key that signs what the vault vouches for."""

    kid: str
    private_key: Ed25519PrivateKey
    created: str

    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def public_jwk(self) -> dict[str, str]:
        """The RFC 8037 JWK of the public half, as published in the JWKS."""
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(self.public_bytes()),
                "kid": self.kid, "alg": "Ed25519", "use": "sig"}

    def private_jwk(self) -> dict[str, str]:
        """The full JWK, for the JOSE library that signs id_tokens; never published."""
        return {**self.public_jwk(), "d": _b64url(self.private_key.private_bytes_raw())}


@dataclass
class KeyRing:
    """All of the vault's secret keys; see the module docstring."""

    keks: dict[str, bytes]
    active_kek_id: str
    blind_index_key: bytes
    session_key: bytes
    webhook_key: bytes
    signing_keys: list[SigningKey] = field(default_factory=list)
    path: Path | None = None

    # -- creation and storage -------------------------------------------------
    @classmethod
    def generate(cls) -> KeyRing:
        """A brand-new key ring with random keys and no file yet."""
        kek_id = _new_kid("kek")
        return cls(
            keks={kek_id: secrets.token_bytes(32)},
            active_kek_id=kek_id,
            blind_index_key=secrets.token_bytes(32),
            session_key=secrets.token_bytes(32),
            webhook_key=secrets.token_bytes(32),
            signing_keys=[
                SigningKey(_new_kid("sig"), Ed25519PrivateKey.generate(),
                           datetime.now(UTC).isoformat(timespec="seconds"))
            ],
        )

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        """Read a key ring file, refusing anything incomplete."""
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeyRingError(
                f"no key ring at {path}: run 'prefvault init' or set VAULT_KEYRING"
            ) from None
        except OSError as exc:
            raise KeyRingError(f"cannot read key ring at {path}: {exc.strerror}") from None
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError:
            raise KeyRingError(f"key ring at {path} is not valid JSON") from None
        ring = cls.from_document(doc)
        ring.path = path
        return ring

    @classmethod
    def from_document(cls, doc: object) -> KeyRing:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise KeyRingError(f"key ring: not a {FORMAT} document")
        try:
            keks = {
                str(kid): _unb64(value, length=32, what=f"KEK {kid}")
                for kid, value in dict(doc["keks"]).items()
            }
            active = str(doc["active_kek"])
            signing = [
                SigningKey(
                    str(item["kid"]),
                    Ed25519PrivateKey.from_private_bytes(
                        _unb64(item["private_key"], length=32, what="signing key")
                    ),
                    str(item.get("created", "")),
                )
                for item in doc.get("signing_keys", [])
            ]
            ring = cls(
                keks=keks,
                active_kek_id=active,
                blind_index_key=_unb64(doc["blind_index_key"], length=32, what="blind index key"),
                session_key=_unb64(doc["session_key"], length=32, what="session key"),
                webhook_key=_unb64(doc["webhook_key"], length=32, what="webhook key"),
                signing_keys=signing,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise KeyRingError(f"key ring: missing or malformed entry {exc}") from None
        if active not in keks:
            raise KeyRingError("key ring: the active KEK is not in the ring")
        if not signing:
            raise KeyRingError("key ring: no signing key")
        return ring

    def to_document(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "active_kek": self.active_kek_id,
            "keks": {kid: _b64(key) for kid, key in self.keks.items()},
            "blind_index_key": _b64(self.blind_index_key),
            "session_key": _b64(self.session_key),
            "webhook_key": _b64(self.webhook_key),
            "signing_keys": [
                {
                    "kid": key.kid,
                    "created": key.created,
                    "private_key": _b64(
                        key.private_key.private_bytes(
                            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
                        )
                    ),
                }
                for key in self.signing_keys
            ],
        }

    def save(self, path: Path | None = None, *, create_only: bool = False) -> None:
        """Write atomically with owner-only permissions.

        With ``create_only`` the file is linked into place only if no key ring
        is there yet (``KeyRingError`` otherwise), so two processes creating
        a ring at the same moment can never overwrite each other's keys.
        """
        target = path or self.path
        if target is None:
            raise KeyRingError("key ring has no path to save to")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".keyring-", dir=target.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.to_document(), handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            if create_only:
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    raise KeyRingError(f"a key ring already exists at {target}") from None
                finally:
                    os.unlink(tmp)
            else:
                os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.path = target

    # -- use --------------------------------------------------------------------
    @property
    def active_kek(self) -> bytes:
        return self.keks[self.active_kek_id]

    def kek(self, kek_id: str) -> bytes:
        """The KEK with this id, re-reading the file once if another process rotated."""
        key = self.keks.get(kek_id)
        if key is None and self.path is not None:
            fresh = KeyRing.load(self.path)
            self.keks.update(fresh.keks)
            key = self.keks.get(kek_id)
        if key is None:
            raise KeyRingError(f"key ring holds no KEK {kek_id!r}")
        return key

    def add_kek(self) -> str:
        """Add a new KEK and make it the active one; returns its id."""
        kek_id = _new_kid("kek")
        while kek_id in self.keks:
            kek_id = _new_kid("kek")
        self.keks[kek_id] = secrets.token_bytes(32)
        self.active_kek_id = kek_id
        return kek_id

    def retire_keks(self, in_use: set[str]) -> list[str]:
        """Drop every KEK that is neither active nor wrapping any data key."""
        retired = [kid for kid in self.keks if kid != self.active_kek_id and kid not in in_use]
        for kid in retired:
            del self.keks[kid]
        return retired

    @property
    def signing_key(self) -> SigningKey:
        """The newest signing key; older ones stay published for verification."""
        return self.signing_keys[-1]
