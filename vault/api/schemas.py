"""Marshmallow schemas of the API: the contract the OpenAPI document is generated from.

Input schemas are strict: unknown fields are refused, strings are bounded,
channels and purposes must be words of the vocabulary.
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from vault.services.decisions import REASONS
from vault.services.outbox import EVENT_TYPES
from vault.vocabulary import CHANNELS, PROFILE_FIELDS, PURPOSES

MAX_BATCH = 10_000
#: Identifiers are plain ASCII tokens: anything else cannot be one of ours, and text
#: with NUL or lone surrogates must never reach the database driver.
IDENTIFIER = r"^[A-Za-z0-9._~-]+$"


class Token(validate.Regexp):
    """``Regexp`` that must match the whole value.

    marshmallow's ``Regexp`` uses ``re.match``, where ``$`` also matches just
    before a final newline, so ``"sub_x\\n"`` would pass as an identifier.
    """

    def __call__(self, value):  # type: ignore[no-untyped-def]
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


SUBJECT = {"validate": [validate.Length(min=1, max=128), Token(IDENTIFIER)],
           "metadata": {"description": "The pairwise subject id from the grant"}}


class Moment(ma.fields.AwareDateTime):
    """An aware ISO 8601 date and time, in printable ASCII only.

    Python's ``datetime.fromisoformat`` stops reading at a NUL, so without
    this check ``"2026-11-23T10:00:00+00:00\\x00junk"`` would be accepted.
    """

    def _deserialize(self, value, attr, data, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(value, str) and not (value.isascii() and value.isprintable()):
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE)
        return super()._deserialize(value, attr, data, **kwargs)


class StrictSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class QuerySchema(StrictSchema):
    """A query string: a parameter given twice is refused rather than guessed at."""

    @ma.pre_load
    def _refuse_repeated(self, data: object, **_kwargs: object) -> object:
        getlist = getattr(getattr(data, "data", None), "getlist", None)
        if getlist is not None:
            repeated = {name: ["Give this parameter once."] for name in self.fields
                        if len(getlist(name)) > 1}
            if repeated:
                raise ma.ValidationError(repeated)
        return data


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details."""

    type = ma.fields.String(metadata={"description": "Stable URI naming the problem"})
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    field = ma.fields.String(metadata={"description": "The offending input field, if any"})
    errors = ma.fields.Dict(metadata={"description": "Validation messages per field"})


def _channel() -> ma.fields.String:
    return ma.fields.String(required=True, validate=validate.OneOf(CHANNELS))


def _purpose() -> ma.fields.String:
    return ma.fields.String(required=True, validate=validate.OneOf(PURPOSES))


class DecisionRequestSchema(StrictSchema):
    subject = ma.fields.String(required=True, **SUBJECT)
    channel = _channel()
    purpose = _purpose()
    at = Moment(
        load_default=None, metadata={"description": "The moment asked about; default now"})


class DecisionSchema(ma.Schema):
    decision_id = ma.fields.String(required=True)
    subject = ma.fields.String(required=True)
    channel = ma.fields.String(required=True, validate=validate.OneOf(CHANNELS))
    purpose = ma.fields.String(required=True, validate=validate.OneOf(PURPOSES))
    allowed = ma.fields.Boolean(required=True)
    reason = ma.fields.String(required=True, validate=validate.OneOf(REASONS))
    reach = ma.fields.String(allow_none=True, required=True, metadata={
        "description": "The address for this channel, only when the grant shares it"})
    alternatives = ma.fields.List(ma.fields.String(validate=validate.OneOf(CHANNELS)),
                                  required=True)
    next_allowed_at = ma.fields.AwareDateTime(allow_none=True, required=True)
    valid_until = ma.fields.AwareDateTime(required=True)


class BatchRequestSchema(StrictSchema):
    channel = _channel()
    purpose = _purpose()
    subjects = ma.fields.List(ma.fields.String(**SUBJECT), required=True,
                              validate=validate.Length(min=1, max=MAX_BATCH))
    at = Moment(load_default=None)


class BatchResultSchema(ma.Schema):
    subject = ma.fields.String(required=True)
    allowed = ma.fields.Boolean(required=True)
    reason = ma.fields.String(required=True, validate=validate.OneOf(REASONS))
    next_allowed_at = ma.fields.AwareDateTime(allow_none=True, required=True)


class BatchResponseSchema(ma.Schema):
    results = ma.fields.List(ma.fields.Nested(BatchResultSchema), required=True)


class ContactRequestSchema(StrictSchema):
    subject = ma.fields.String(required=True, **SUBJECT)
    channel = _channel()
    purpose = _purpose()
    decision_id = ma.fields.String(load_default=None, validate=[
        validate.Length(min=1, max=64), Token(IDENTIFIER)], metadata={
            "description": "The decision the contact relied on: one this merchant was given "
                           "for the same subject, channel and purpose (400 otherwise)"})
    at = Moment(load_default=None, metadata={"description": "When the contact happened"})


class ContactSchema(ma.Schema):
    contact_id = ma.fields.String(required=True)
    subject = ma.fields.String(required=True)
    channel = ma.fields.String(required=True)
    purpose = ma.fields.String(required=True)
    occurred_at = ma.fields.AwareDateTime(required=True)
    allowed = ma.fields.Boolean(required=True, metadata={
        "description": "Whether the contact was allowed then; false records a violation"})
    reason = ma.fields.String(required=True, validate=validate.OneOf(REASONS))
    violation = ma.fields.Boolean(required=True)


class QuietHoursSchema(ma.Schema):
    start = ma.fields.String(required=True, metadata={"example": "21:00"})
    end = ma.fields.String(required=True, metadata={"example": "09:00"})


class PermissionSchema(ma.Schema):
    channel = ma.fields.String(required=True)
    purpose = ma.fields.String(required=True)
    allowed = ma.fields.Boolean(required=True)
    max_per_week = ma.fields.Integer(allow_none=True, required=True)
    quiet_hours = ma.fields.Nested(QuietHoursSchema, allow_none=True, required=True)
    expires_at = ma.fields.AwareDateTime(allow_none=True, required=True)


class SubscriptionSchema(ma.Schema):
    subject = ma.fields.String(required=True)
    status = ma.fields.String(required=True,
                              validate=validate.OneOf(["active", "revoked", "erased"]))
    created_at = ma.fields.AwareDateTime(required=True)
    updated_at = ma.fields.AwareDateTime(required=True)
    permissions = ma.fields.List(ma.fields.Nested(PermissionSchema), required=True)
    shared_fields = ma.fields.List(ma.fields.String(validate=validate.OneOf(PROFILE_FIELDS)),
                                   required=True)


class SubscriptionPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SubscriptionSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)


class PageQuerySchema(QuerySchema):
    cursor = ma.fields.String(load_default=None, validate=[
        validate.Length(min=1, max=200), Token(IDENTIFIER)])
    limit = ma.fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class WebhookEventSchema(ma.Schema):
    """The body of every webhook; signed in the ``Vault-Signature`` header."""

    id = ma.fields.String(required=True)
    type = ma.fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    created = ma.fields.Integer(required=True, metadata={"description": "Unix time"})
    subject = ma.fields.String(required=True)
    data = ma.fields.Dict(required=True)


class AuditExportQuerySchema(QuerySchema):
    since = Moment(load_default=None, metadata={
        "description": "Only events that occurred at or after this instant"})
    until = Moment(load_default=None, metadata={
        "description": "Only events that occurred before this instant"})
    merchant = ma.fields.String(load_default=None, validate=[
        validate.Length(min=1, max=200), Token(IDENTIFIER)],
        metadata={"description": "Only events about this merchant (its client_id)"})
    format = ma.fields.String(load_default="jsonl", validate=validate.OneOf(["jsonl", "csv"]),
                              metadata={"description": (
                                  "`jsonl` (JSON Lines, the reference form) or `csv` (one "
                                  "spreadsheet row per event, verifiable the same way)")})


# -- the consent log's signed tree heads, proofs and receipts ---------------------------------

#: the largest leaf index or tree size a query may name (a 63-bit column holds it)
MAX_LOG_SIZE = 2**62


class TreeHeadSchema(ma.Schema):
    """A signed tree head: the log's first `tree_size` events hash to `root_hash`."""

    tree_size = ma.fields.Integer(required=True, metadata={"description": "Events covered"})
    root_hash = ma.fields.String(required=True, metadata={
        "description": "RFC 9162 Merkle root, 64 hex digits"})
    timestamp = ma.fields.Integer(required=True, metadata={
        "description": "When it was signed, Unix time in milliseconds"})
    signature = ma.fields.String(required=True, metadata={
        "description": ("Ed25519 signature (unpadded base64url) over "
                        "`prefvault-tree-head/v1\\n<tree_size>\\n<root_hash>\\n<timestamp>\\n`")})
    kid = ma.fields.String(required=True, metadata={
        "description": "The signing key in /.well-known/jwks.json"})


class ConsistencyQuerySchema(QuerySchema):
    first = ma.fields.Integer(required=True, validate=validate.Range(min=0, max=MAX_LOG_SIZE),
                              metadata={"description": "Size of the older stored head"})
    second = ma.fields.Integer(required=True, validate=validate.Range(min=0, max=MAX_LOG_SIZE),
                               metadata={"description": "Size of the newer stored head"})


class ConsistencyProofSchema(ma.Schema):
    first = ma.fields.Nested(TreeHeadSchema, required=True)
    second = ma.fields.Nested(TreeHeadSchema, required=True)
    proof = ma.fields.List(ma.fields.String(), required=True, metadata={
        "description": "RFC 9162 consistency proof, hex hashes"})


class InclusionQuerySchema(QuerySchema):
    index = ma.fields.Integer(required=True, validate=validate.Range(min=0, max=MAX_LOG_SIZE),
                              metadata={"description": "Leaf index (the event's seq - 1)"})
    tree_size = ma.fields.Integer(load_default=None,
                                  validate=validate.Range(min=1, max=MAX_LOG_SIZE), metadata={
                                      "description": "A stored head's size; default the newest"})


class InclusionProofSchema(ma.Schema):
    index = ma.fields.Integer(required=True)
    tree_size = ma.fields.Integer(required=True)
    leaf = ma.fields.Dict(required=True, metadata={
        "description": "The event as stored; its canonical JSON is the Merkle leaf"})
    leaf_hash = ma.fields.String(required=True, metadata={
        "description": "The leaf hash in the stored tree, 64 hex digits"})
    proof = ma.fields.List(ma.fields.String(), required=True, metadata={
        "description": "RFC 9162 inclusion proof, hex hashes, leaf side first"})
    tree_head = ma.fields.Nested(TreeHeadSchema, required=True)


class ReceiptSchema(ma.Schema):
    """A consent receipt: a compact JWS, verifiable offline with the vault's JWKS."""

    subject = ma.fields.String(required=True)
    receipt = ma.fields.String(required=True, metadata={"description": (
        "Compact JWS (alg Ed25519, typ consent-receipt+jwt) of the subscription's latest "
        "state, with the consent-log leaf that recorded it and its inclusion proof")})
