"""Consent receipts: verify one offline, with nothing but the vault's JWKS.

A receipt is the vault's signed statement of one subscription's state at the
moment a consent change was recorded: a compact JWS (RFC 7515) whose header
is ``{"alg": "Ed25519", "typ": "consent-receipt+jwt", "kid": ...}`` and whose
payload is a JSON claim set with the fields of a Kantara Consent Receipt v1.1
/ ISO/IEC TS 27560 record that apply to a contact permission (controller,
purposes, channels, data categories, collection method, validity, how to
withdraw, status). Besides, it carries the leaf index of the consent-log event
that recorded that state and an RFC 9162 inclusion proof of that leaf against
a signed tree head of the log, so the receipt also proves the state is in the
log every auditor sees.

``alg`` is ``Ed25519``, RFC 9864's fully specified name for EdDSA over
Ed25519: the vault's JWKS publishes its keys with that ``alg``, and JOSE
libraries refuse a key for an algorithm other than its own. ``EdDSA`` (RFC
8037) is accepted too. The ``typ`` keeps a receipt and an id_token (signed
with the same key) from passing for each other.

This module verifies only: it needs ``cryptography`` for Ed25519, and no
JOSE library, so it installs with the SDK alone. The vault signs with a JOSE
library and imports the names of the format from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature

from .._errors import SignatureVerificationError, VaultError
from .._models import Permission, parse_datetime
from .canonical import MalformedRecord, parse_object
from .merkle import HASH_SIZE, verify_inclusion
from .tree_head import TreeHead, TreeHeadError, b64url_decode, public_keys, verify_tree_head

#: the JWS ``typ`` of a receipt (RFC 8725 §3.11 explicit typing)
RECEIPT_TYPE = "consent-receipt+jwt"
#: the JWS ``alg`` the vault signs receipts with
RECEIPT_ALG = "Ed25519"
#: ``schema_version`` of the claim set this module reads
RECEIPT_SCHEMA = "prefvault-consent-receipt/1"
STATUSES = ("active", "revoked")
_ALGS = frozenset({"Ed25519", "EdDSA"})

__all__ = [
    "RECEIPT_ALG",
    "RECEIPT_SCHEMA",
    "RECEIPT_TYPE",
    "Receipt",
    "verify_receipt",
]


def _refuse(reason: str) -> SignatureVerificationError:
    return SignatureVerificationError(f"consent receipt refused: {reason}")


@dataclass(frozen=True, slots=True)
class Receipt:
    """A verified consent receipt: the compact JWS and its decoded claims.

    ``permissions`` are the (channel, purpose) terms the person allowed, with
    their limits; ``purposes``, ``channels`` and ``data_categories`` (the
    profile fields shared) summarise them. A revoked subscription's receipt
    has none of them and a ``revoked_at``. ``log_index`` is the consent-log
    leaf that recorded this state, proven by ``inclusion_proof`` against
    ``tree_head`` (both already checked). ``claims`` is the payload as sent.
    """

    jws: str = field(repr=False)
    receipt_id: str
    record_id: str
    schema_version: str
    issuer: str
    subject: str
    issued_at: datetime
    consent_at: datetime
    status: str
    controller: str
    controller_contact: str | None
    controller_id: str
    purposes: tuple[str, ...]
    channels: tuple[str, ...]
    permissions: tuple[Permission, ...]
    data_categories: tuple[str, ...]
    collection_method: str
    language: str
    valid_until: datetime | None
    revoked_at: datetime | None
    withdrawal_method: str
    withdrawal_url: str
    log_index: int
    event_id: str
    leaf_hash: bytes = field(repr=False)
    tree_head: TreeHead = field(repr=False)
    inclusion_proof: tuple[bytes, ...] = field(repr=False)
    claims: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def active(self) -> bool:
        """True while the subscription this receipt describes stood granted."""
        return self.status == "active"


# -- reading the claims -----------------------------------------------------------------


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _refuse(f"{what} is not an object")
    return value


def _text(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise _refuse(f"{key!r} is not a non-empty string")
    return value


def _opt_text(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _refuse(f"{key!r} is not a string")
    return value


def _count(doc: Mapping[str, Any], key: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _refuse(f"{key!r} is not a non-negative integer")
    return value


def _words(doc: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = doc.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _refuse(f"{key!r} is not a list of strings")
    return tuple(value)


def _moment(doc: Mapping[str, Any], key: str, *, optional: bool = False) -> datetime | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    try:
        return parse_datetime(value, key)
    except VaultError:
        raise _refuse(f"{key!r} is not a timestamp") from None


def _hash(value: object, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * HASH_SIZE:
        raise _refuse(f"{what} is not 64 hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise _refuse(f"{what} is not 64 hex digits") from None


def _segment(text: str, what: str) -> bytes:
    try:
        return b64url_decode(text)
    except TreeHeadError:
        raise _refuse(f"the {what} is not base64url") from None


def _json_segment(text: str, what: str) -> dict[str, Any]:
    try:
        return parse_object(_segment(text, what).decode("utf-8"))
    except (MalformedRecord, UnicodeDecodeError):
        raise _refuse(f"the {what} is not a JSON object") from None


def _signed(jws: object, jwks: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of a compact JWS whose header and Ed25519 signature check out."""
    if not isinstance(jws, str) or not jws.isascii() or jws.count(".") != 2:
        raise _refuse("not a compact JWS (three base64url parts)")
    header_b64, payload_b64, signature_b64 = jws.strip().split(".")
    header = _json_segment(header_b64, "header")
    if header.get("alg") not in _ALGS:
        raise _refuse(f"algorithm {header.get('alg')!r} is not Ed25519")
    if header.get("typ") != RECEIPT_TYPE:
        raise _refuse(f"typ {header.get('typ')!r} is not {RECEIPT_TYPE!r}")
    if "crit" in header or "b64" in header:
        raise _refuse("the header has critical extensions this verifier does not know")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _refuse("the header names no key (kid)")
    signature = _segment(signature_b64, "signature")
    message = f"{header_b64}.{payload_b64}".encode("ascii")
    keys = public_keys(jwks, kid)
    if not keys:
        raise _refuse(f"no Ed25519 key {kid!r} in the JWKS")
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return _json_segment(payload_b64, "payload")
    raise _refuse("the signature does not verify")


def _permissions(claims: Mapping[str, Any]) -> tuple[Permission, ...]:
    raw = claims.get("permissions")
    if not isinstance(raw, list):
        raise _refuse("'permissions' is not a list")
    try:
        return tuple(Permission.from_json(item) for item in raw)
    except VaultError as exc:
        raise _refuse(f"a permission is malformed ({exc.message})") from None


def _log(claims: Mapping[str, Any], jwks: Mapping[str, Any],
         ) -> tuple[int, str, bytes, TreeHead, tuple[bytes, ...]]:
    log = _object(claims.get("log"), "'log'")
    index = _count(log, "index")
    leaf = _hash(log.get("leaf_hash"), "'log.leaf_hash'")
    raw_proof = log.get("inclusion_proof")
    if not isinstance(raw_proof, list):
        raise _refuse("'log.inclusion_proof' is not a list")
    proof = tuple(_hash(p, "an inclusion proof entry") for p in raw_proof)
    try:
        head = TreeHead.from_json(_object(log.get("tree_head"), "'log.tree_head'"))
    except TreeHeadError as exc:
        raise _refuse(f"the tree head is malformed ({exc})") from None
    if not verify_tree_head(head, jwks):
        raise _refuse("the tree head's signature does not verify")
    if not verify_inclusion(leaf, index, head.tree_size, proof, head.root_hash):
        raise _refuse(f"leaf {index} is not proven to be in the signed log")
    return index, _text(log, "event_id"), leaf, head, proof


def verify_receipt(jws: str, jwks: Mapping[str, Any], *, issuer: str | None = None,
                   subject: str | None = None) -> Receipt:
    """Verify a consent receipt offline and return it decoded.

    ``jwks`` is the vault's JWKS (``/.well-known/jwks.json`` or
    ``prefvault keys jwks``). Checks the JWS signature, the claim set, the
    signed tree head and the inclusion proof of the log leaf; with ``issuer``
    or ``subject`` also that the receipt is the vault's and about that
    subject. Raises :class:`~prefvault_sdk.SignatureVerificationError` for
    anything that does not check out.
    """
    claims = _signed(jws, jwks)
    if claims.get("schema_version") != RECEIPT_SCHEMA:
        raise _refuse(f"schema_version {claims.get('schema_version')!r} is not "
                      f"{RECEIPT_SCHEMA!r}")
    if issuer is not None and claims.get("iss") != issuer:
        raise _refuse(f"issued by {claims.get('iss')!r}, not {issuer!r}")
    if subject is not None and claims.get("sub") != subject:
        raise _refuse("it is about another subject")
    status = _text(claims, "status")
    if status not in STATUSES:
        raise _refuse(f"status {status!r} is not one of {', '.join(STATUSES)}")
    controller = _object(claims.get("controller"), "'controller'")
    withdrawal = _object(claims.get("withdrawal"), "'withdrawal'")
    index, event_id, leaf, head, proof = _log(claims, jwks)
    issued_at = claims.get("iat")
    if not isinstance(issued_at, int) or isinstance(issued_at, bool) or issued_at < 0:
        raise _refuse("'iat' is not a Unix time")
    return Receipt(
        jws=jws.strip(),
        receipt_id=_text(claims, "jti"),
        record_id=_text(claims, "record_id"),
        schema_version=RECEIPT_SCHEMA,
        issuer=_text(claims, "iss"),
        subject=_text(claims, "sub"),
        issued_at=datetime.fromtimestamp(issued_at, UTC),
        consent_at=_moment(claims, "consent_at"),  # type: ignore[arg-type]
        status=status,
        controller=_text(controller, "name"),
        controller_contact=_opt_text(controller, "contact"),
        controller_id=_text(controller, "client_id"),
        purposes=_words(claims, "purposes"),
        channels=_words(claims, "channels"),
        permissions=_permissions(claims),
        data_categories=_words(claims, "data_categories"),
        collection_method=_text(claims, "collection_method"),
        language=_text(claims, "language"),
        valid_until=_moment(claims, "valid_until", optional=True),
        revoked_at=_moment(claims, "revoked_at", optional=True),
        withdrawal_method=_text(withdrawal, "method"),
        withdrawal_url=_text(withdrawal, "url"),
        log_index=index,
        event_id=event_id,
        leaf_hash=leaf,
        tree_head=head,
        inclusion_proof=proof,
        claims=dict(claims),
    )
