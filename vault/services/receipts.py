"""Consent receipts: the vault's signed statement of one subscription's latest state.

Every grant, permission change and revocation writes an audit event in the
same transaction as the change (:mod:`vault.services.subscriptions`). A
receipt describes the subscription as that latest event left it, in the
fields of a Kantara Consent Receipt v1.1 / ISO/IEC TS 27560 record that apply
to a contact permission, and binds it to the log: it carries the event's
leaf index and leaf hash with an RFC 9162 inclusion proof against a stored
signed tree head (checkpointing first when no head covers the event yet).
The vault checks that proof before signing, so it never vouches for a state
its own log does not hold.

The claim set (``schema_version`` ``prefvault-consent-receipt/1``; Kantara
field in brackets):

* ``iss``, ``sub`` (the pairwise subject) [piiPrincipalId], ``iat``, ``jti``
  [consentReceiptID]; ``record_id``: the audit event's id;
* ``consent_at`` [consentTimestamp]: when the recorded change happened;
* ``status``: ``active`` or ``revoked`` (then ``revoked_at``);
* ``controller``: the merchant's ``name``, ``contact`` email (if it gave one)
  and ``client_id`` [piiControllers: piiController, contact, email];
* ``purposes``, ``channels``, ``permissions`` (with their weekly caps, quiet
  hours and expiry) [services/purposes], ``data_categories``: the profile
  fields shared [piiCategory];
* ``collection_method``: ``consent_page`` [collectionMethod];
  ``language`` [language]; ``valid_until`` (the last expiry, or null: until
  withdrawn); ``withdrawal``: ``vault_ui`` and the URL of the person's page
  where one click revokes;
* ``log``: ``index``, ``leaf_hash``, ``event_id``, ``tag``, ``tree_head``,
  ``inclusion_proof``.

Ids are pseudonymous (the subject the merchant already holds); no personal
data, no internal person id. Signed as a compact JWS with the vault's Ed25519
key through joserfc; :func:`prefvault_sdk.verify_receipt` verifies it offline.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from joserfc import jws
from joserfc.jwk import OKPKey
from prefvault_sdk.audit.receipt import RECEIPT_ALG, RECEIPT_SCHEMA, RECEIPT_TYPE
from sqlmodel import Session, col, select

from vault.audit.merkle import leaf_hash, verify_inclusion
from vault.audit.tree_head import TreeHead
from vault.audit.verify import canonical_json, leaf_bytes
from vault.clock import Clock
from vault.crypto.keyring import SigningKey
from vault.db import Database
from vault.errors import LogIntegrityError, NotFound, ValidationFailed
from vault.models import AuditEvent, Merchant, Subscription
from vault.models.subscription import ACTIVE, REVOKED
from vault.services.audit import AuditTag, event_document
from vault.services.keys import DataKeys
from vault.services.merkle_store import MerkleStore
from vault.services.subscriptions import SubscriptionView, merchant_subscription, view
from vault.services.tree_heads import checkpoint, covering

#: the events that record a subscription's state
STATE_TAGS = (AuditTag.SUBSCRIPTION_GRANTED, AuditTag.PERMISSION_CHANGED,
              AuditTag.SUBSCRIPTION_REVOKED)
#: where the person withdraws consent, below the vault's issuer URL
WITHDRAWAL_PATH = "/subscriptions"
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


def _moment(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def receipt_for_person(
    session: Session,
    person_id: str,
    subscription_id: str,
    *,
    database: Database,
    data_keys: DataKeys,
    signing_key: SigningKey,
    issuer: str,
    clock: Clock,
    language: str = "en",
) -> str:
    """The signed receipt (compact JWS) for one of the person's own subscriptions.

    ``NotFound`` unless the subscription is the person's. Reads through
    ``session`` (a reading one is enough). When no stored tree head covers the
    latest change yet, one is checkpointed in a transaction of its own through
    ``database``, so do not call this inside an open writing transaction.
    """
    sub = session.get(Subscription, subscription_id)
    if sub is None or sub.person_id != person_id:
        raise NotFound("no such subscription")
    return _issue(session, sub, database=database, data_keys=data_keys,
                  signing_key=signing_key, issuer=issuer, clock=clock, language=language)


def receipt_for_merchant(
    session: Session,
    merchant_id: str,
    subject: str,
    *,
    database: Database,
    data_keys: DataKeys,
    signing_key: SigningKey,
    issuer: str,
    clock: Clock,
    language: str = "en",
) -> str:
    """The signed receipt for the merchant's subscription known as ``subject``.

    Another merchant's subject is the same ``NotFound`` as an unknown one.
    Otherwise as :func:`receipt_for_person`.
    """
    sub = merchant_subscription(session, merchant_id, subject)
    return _issue(session, sub, database=database, data_keys=data_keys,
                  signing_key=signing_key, issuer=issuer, clock=clock, language=language)


def _state_event(session: Session, sub: Subscription) -> AuditEvent:
    """The audit event that recorded the subscription's current state."""
    event = session.exec(
        select(AuditEvent)
        .where(AuditEvent.subject == sub.subject, AuditEvent.merchant_id == sub.merchant_id,
               col(AuditEvent.tag).in_([str(tag) for tag in STATE_TAGS]))
        .order_by(col(AuditEvent.seq).desc()).limit(1)
    ).first()
    revoked = str(AuditTag.SUBSCRIPTION_REVOKED)
    if event is None or (event.tag == revoked) != (sub.status == REVOKED):
        raise LogIntegrityError("no audit event records this subscription's current state")
    return event


def _proven(session: Session, index: int, leaf: bytes, *, database: Database,
            signing_key: SigningKey, clock: Clock) -> tuple[TreeHead, list[bytes]]:
    """A stored head covering leaf ``index`` and the leaf's checked inclusion proof."""
    head = covering(session, index)
    if head is not None:
        proof = MerkleStore(session).inclusion_proof(index, head.tree_size)
    else:
        with database.write() as writer:
            checkpoint(writer, signing_key=signing_key, clock=clock)
        # A fresh read: the caller's session may hold a snapshot from before the checkpoint.
        with database.read() as reader:
            head = covering(reader, index)
            if head is None:
                raise LogIntegrityError(f"no signed tree head covers event {index + 1}")
            proof = MerkleStore(reader).inclusion_proof(index, head.tree_size)
    if not verify_inclusion(leaf, index, head.tree_size, proof, head.root_hash):
        raise LogIntegrityError(f"event {index + 1} is not in the log as signed; "
                                "no receipt is issued for it")
    return head, proof


def _issue(session: Session, sub: Subscription, *, database: Database, data_keys: DataKeys,
           signing_key: SigningKey, issuer: str, clock: Clock, language: str) -> str:
    if not isinstance(language, str) or not _LANGUAGE.match(language):
        raise ValidationFailed("language must be a language tag such as 'en'",
                               field="language")
    if sub.status not in (ACTIVE, REVOKED):
        raise NotFound("the person erased their account; there is no receipt to give",
                       field="subject")
    merchant = session.get(Merchant, sub.merchant_id)
    if merchant is None:
        raise NotFound("no subscription with this subject", field="subject")
    event = _state_event(session, sub)
    index = event.seq - 1
    leaf = leaf_hash(leaf_bytes(event_document(event)))
    head, proof = _proven(session, index, leaf, database=database, signing_key=signing_key,
                          clock=clock)
    terms = view(session, sub, data_keys=data_keys) if sub.status == ACTIVE else None
    claims = receipt_claims(sub=sub, merchant=merchant, terms=terms, event=event, head=head,
                            proof=proof, leaf=leaf, issuer=issuer, issued_at=clock.now(),
                            language=language)
    return sign_receipt(claims, signing_key)


def receipt_claims(*, sub: Subscription, merchant: Merchant, terms: SubscriptionView | None,
                   event: AuditEvent, head: TreeHead, proof: list[bytes], leaf: bytes,
                   issuer: str, issued_at: datetime, language: str) -> dict[str, object]:
    """The receipt's claim set (see the module docstring); ``terms`` None when revoked."""
    allowed = sorted((p for p in (terms.permissions.values() if terms else ()) if p.allowed),
                     key=lambda p: (p.channel, p.purpose))
    expiries = [p.expires_at for p in allowed]
    valid_until = (max(e for e in expiries if e is not None)
                   if allowed and all(e is not None for e in expiries) else None)
    return {
        "iss": issuer,
        "sub": sub.subject,
        "iat": int(issued_at.timestamp()),
        "jti": "rcpt_" + secrets.token_hex(16),
        "schema_version": RECEIPT_SCHEMA,
        "record_id": event.id,
        "consent_at": _moment(event.occurred_at),
        "status": sub.status,
        "revoked_at": _moment(sub.revoked_at) if sub.status == REVOKED else None,
        "controller": {"name": merchant.name, "contact": merchant.contact_email,
                       "client_id": merchant.client_id},
        "purposes": sorted({p.purpose for p in allowed}),
        "channels": sorted({p.channel for p in allowed}),
        "permissions": [{**p.to_json(), "expires_at": _moment(p.expires_at)} for p in allowed],
        "data_categories": sorted(terms.shared_fields) if terms else [],
        "collection_method": "consent_page",
        "language": language,
        "valid_until": _moment(valid_until),
        "withdrawal": {"method": "vault_ui", "url": issuer.rstrip("/") + WITHDRAWAL_PATH},
        "log": {
            "index": event.seq - 1,
            "leaf_hash": leaf.hex(),
            "event_id": event.id,
            "tag": event.tag,
            "tree_head": head.to_json(),
            "inclusion_proof": [p.hex() for p in proof],
        },
    }


def sign_receipt(claims: dict[str, object], signing_key: SigningKey) -> str:
    """``claims`` as a compact JWS signed with ``signing_key`` (Ed25519, explicitly typed)."""
    key = OKPKey.import_key(signing_key.private_jwk())
    header = {"alg": RECEIPT_ALG, "typ": RECEIPT_TYPE, "kid": signing_key.kid}
    return jws.serialize_compact(header, canonical_json(claims).encode("utf-8"), key,
                                 algorithms=[RECEIPT_ALG])
