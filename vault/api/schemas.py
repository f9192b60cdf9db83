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
SUBJECT = {"validate": [validate.Length(min=1, max=128), validate.Regexp(IDENTIFIER)],
           "metadata": {"description": "The pairwise subject id from the grant"}}


class StrictSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE


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
    at = ma.fields.AwareDateTime(
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
    at = ma.fields.AwareDateTime(load_default=None)


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
        validate.Length(min=1, max=64), validate.Regexp(IDENTIFIER)])
    at = ma.fields.AwareDateTime(load_default=None,
                                 metadata={"description": "When the contact happened"})


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


class PageQuerySchema(StrictSchema):
    cursor = ma.fields.String(load_default=None, validate=[
        validate.Length(min=1, max=200), validate.Regexp(IDENTIFIER)])
    limit = ma.fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class WebhookEventSchema(ma.Schema):
    """The body of every webhook; signed in the ``Vault-Signature`` header."""

    id = ma.fields.String(required=True)
    type = ma.fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    created = ma.fields.Integer(required=True, metadata={"description": "Unix time"})
    subject = ma.fields.String(required=True)
    data = ma.fields.Dict(required=True)


class AuditExportQuerySchema(StrictSchema):
    since = ma.fields.AwareDateTime(load_default=None, metadata={
        "description": "Only events that occurred at or after this instant"})
    until = ma.fields.AwareDateTime(load_default=None, metadata={
        "description": "Only events that occurred before this instant"})
    merchant = ma.fields.String(load_default=None, validate=[
        validate.Length(min=1, max=200), validate.Regexp(IDENTIFIER)],
        metadata={"description": "Only events about this merchant (its client_id)"})
    format = ma.fields.String(load_default="jsonl", validate=validate.OneOf(["jsonl"]),
                              metadata={"description": "Export format; only JSON Lines"})
