"""``POST /decisions`` and ``POST /decisions/batch``.

Each route has its documented flask-smorest view (token check, webargs and
marshmallow, the OpenAPI document) and, in front of it, a quick path for the
common case: a merchant's valid token and a well-formed body. The quick path
checks the token first, with one driver-level query (none for a token read in
the last few seconds, see ``vault.oauth.tokens``), reads the body with plain
checks that accept only what the request schema accepts, and writes the
response the response schema would. Anything else (no token, a bad body, an
unknown field, the wrong content type) goes to the documented view, so every
refusal is exactly what it always was. Tests hold the two paths to the same
answers and the same evidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import wraps

import marshmallow as ma
from flask import Response, current_app, request
from flask.sansio.blueprints import BlueprintSetupState
from flask_smorest import Blueprint

from vault.api.auth import current_merchant, merchant_required, quick_client_id
from vault.api.docs import json_body, link, links, problems, response_value
from vault.api.schemas import (
    MAX_BATCH,
    BatchRequestSchema,
    BatchResponseSchema,
    DecisionRequestSchema,
    DecisionSchema,
)
from vault.db import Driver
from vault.extensions import Runtime, runtime
from vault.models.merchant import MERCHANT
from vault.services import contacting
from vault.services.contacting import BatchEvidence, DecisionResult
from vault.vocabulary import CHANNELS, PURPOSES
from vault.web.request_db import db_session, end_read, reads_only

blp = Blueprint("decisions", __name__, description="May I reach this person, and how?")

SECURITY = [{"oauth2": ["decisions"]}]
SCOPE = "decisions"


def _subject_link(pointer: str) -> dict[str, object]:
    """The subscription of the subject answered about (a 404 when there is none)."""
    return link("getSubscription", "The subscription of this subject",
                parameters={"path.subject": response_value(pointer)})


# The token is checked before the body is read: a caller without one learns nothing.
@blp.route("/decisions", methods=["POST"])
@reads_only
@merchant_required(SCOPE)
@json_body
@blp.arguments(DecisionRequestSchema)
@blp.response(200, DecisionSchema)
@blp.doc(security=SECURITY, operationId="askDecision")
@links(200, subscription=_subject_link("/subject"),
       contact=link("reportContact", "Report the contact this decision was asked for", body={
           name: response_value(f"/{name}")
           for name in ("subject", "channel", "purpose", "decision_id")}))
@problems(blp, 400, 401, 403, 413, 415)
def ask_decision(body: dict[str, object]) -> dict[str, object]:
    """Ask whether a person may be reached over a channel for a purpose.

    The answer explains itself (`reason`), gives the address only when the
    grant shares it (`reach`), lists the `alternatives` the person allows for
    the same purpose, and says how long it may be cached (`valid_until`).
    """
    rt = runtime()
    result, evidence = contacting.answer(
        db_session(), merchant_id=current_merchant().id, subject=str(body["subject"]),
        channel=str(body["channel"]), purpose=str(body["purpose"]),
        at=body.get("at"), data_keys=rt.data_keys, clock=rt.clock)  # type: ignore[arg-type]
    end_read()
    with rt.database.write() as session:
        contacting.keep(session, evidence)
    return asdict(result)


@blp.route("/decisions/batch", methods=["POST"])
@reads_only
@merchant_required(SCOPE)
@json_body
@blp.arguments(BatchRequestSchema)
@blp.response(200, BatchResponseSchema)
@blp.doc(security=SECURITY, operationId="askDecisionBatch")
@links(200, subscription=_subject_link("/results/0/subject"),
       decision=link("askDecision", "Ask again about one subject of the batch",
                     body={"subject": response_value("/results/0/subject")}))
@problems(blp, 400, 401, 403, 413, 415)
def ask_batch(body: dict[str, object]) -> Response:
    """Ask for up to 10,000 subjects at once (a campaign); results in input order."""
    rt = runtime()
    batch = contacting.answer_batch(
        db_session(), merchant_id=current_merchant().id,
        subjects=list(body["subjects"]),  # type: ignore[call-overload]
        channel=str(body["channel"]), purpose=str(body["purpose"]),
        at=body.get("at"), data_keys=rt.data_keys, clock=rt.clock)  # type: ignore[arg-type]
    end_read()
    with rt.database.write() as session:
        contacting.keep(session, batch)
    return _batch_response(batch)


def _decision_document(result: DecisionResult) -> dict[str, object]:
    """``DecisionSchema().dump(result)``, without marshmallow's cost on every decision."""
    return {
        "decision_id": result.decision_id, "subject": result.subject,
        "channel": result.channel, "purpose": result.purpose, "allowed": result.allowed,
        "reason": result.reason, "reach": result.reach,
        "alternatives": list(result.alternatives),
        "next_allowed_at": _iso(result.next_allowed_at),
        "valid_until": result.valid_until.isoformat(),
    }


def _batch_response(batch: BatchEvidence) -> Response:
    """The documented ``BatchResponseSchema`` body, serialised by hand: marshmallow
    would spend longer on 10,000 results than the decisions took."""
    body = '{"results":' + batch.results_json(datetime.isoformat) + "}"
    return Response(body, status=200, mimetype="application/json")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# -- the quick path ----------------------------------------------------------------------

#: what the request schemas take as a subject (``SUBJECT``: 1 to 128 characters of
#: ``IDENTIFIER``), as one pattern; a test holds the two together
_SUBJECT = r"[A-Za-z0-9._~-]{1,128}"
_ONE_SUBJECT = re.compile(_SUBJECT)
_SUBJECT_LINES = re.compile(f"{_SUBJECT}(?:\n{_SUBJECT})*")
_AT_FIELD = DecisionRequestSchema().fields["at"]
_BATCH_AT_FIELD = BatchRequestSchema().fields["at"]
_DECISION_KEYS = frozenset(DecisionRequestSchema().fields)
_BATCH_KEYS = frozenset(BatchRequestSchema().fields)


def _subjects(value: object) -> list[str] | None:
    """The subjects of a batch when the schema takes each as it is, else None.

    One pattern match over all of them, newline-separated (a subject holds
    no newline), instead of marshmallow's two validators per subject.
    """
    if type(value) is not list or not 1 <= len(value) <= MAX_BATCH:
        return None
    if not all(type(item) is str for item in value):
        return None
    return value if _SUBJECT_LINES.fullmatch("\n".join(value)) else None


def _moment(body: Mapping[str, object], field: ma.fields.Field) -> tuple[bool, datetime | None]:
    """(True, at) when ``at`` is absent, null or a time the schema takes; (False, None) else."""
    value = body.get("at")
    if value is None:
        return True, None
    try:
        return True, field.deserialize(value)
    except ma.ValidationError:
        return False, None


@dataclass(frozen=True, slots=True)
class _QuickCall:
    """What the quick path needs of a request it may answer."""

    rt: Runtime
    db: Driver
    merchant_id: str
    body: dict[str, object]


@contextmanager
def _quick_call(keys: frozenset[str]) -> Iterator[_QuickCall | None]:
    """A merchant's valid token and a JSON object with only ``keys``, or None.

    Open for the whole answer: the database driver it holds reads the terms
    and keeps the evidence.
    """
    if not request.is_json:
        yield None
        return
    rt = runtime()
    with rt.database.driver() as db:
        merchant_id = quick_client_id(db, kind=MERCHANT, scope=SCOPE, now=rt.clock.now())
        body = request.get_json(silent=True) if merchant_id is not None else None
        if merchant_id is None or type(body) is not dict or not body.keys() <= keys:
            yield None
        else:
            yield _QuickCall(rt, db, merchant_id, body)


def _quick_decision() -> Response | None:
    """``ask_decision`` for a merchant's token and a well-formed body; None otherwise."""
    with _quick_call(_DECISION_KEYS) as call:
        if call is None:
            return None
        body, rt, db = call.body, call.rt, call.db
        subject, channel, purpose = body.get("subject"), body.get("channel"), body.get("purpose")
        parsed, at = _moment(body, _AT_FIELD)
        if (not parsed or type(subject) is not str or not _ONE_SUBJECT.fullmatch(subject)
                or channel not in CHANNELS or purpose not in PURPOSES):
            return None
        result, evidence = contacting.answer(
            db, merchant_id=call.merchant_id, subject=subject,
            channel=channel, purpose=purpose,  # type: ignore[arg-type]
            at=at, data_keys=rt.data_keys, clock=rt.clock)
        with db.writing() as writer:
            contacting.keep(writer, evidence)
    return current_app.json.response(_decision_document(result))


def _quick_batch() -> Response | None:
    """``ask_batch`` for a merchant's token and a well-formed body; None otherwise."""
    with _quick_call(_BATCH_KEYS) as call:
        if call is None:
            return None
        body, rt, db = call.body, call.rt, call.db
        channel, purpose = body.get("channel"), body.get("purpose")
        subjects = _subjects(body.get("subjects"))
        parsed, at = _moment(body, _BATCH_AT_FIELD)
        if not parsed or subjects is None or channel not in CHANNELS or purpose not in PURPOSES:
            return None
        batch = contacting.answer_batch(
            db, merchant_id=call.merchant_id, subjects=subjects,
            channel=channel, purpose=purpose,  # type: ignore[arg-type]
            at=at, data_keys=rt.data_keys, clock=rt.clock)
        with db.writing() as writer:
            contacting.keep(writer, batch)
    return _batch_response(batch)


def _quick(quick: Callable[[], Response | None],
           documented: Callable[..., object]) -> Callable[..., object]:
    @wraps(documented)
    def view(*args: object, **kwargs: object) -> object:
        response = quick()
        return documented(*args, **kwargs) if response is None else response

    return view


def _install_quick_paths(state: BlueprintSetupState) -> None:
    """Put each quick path in front of its documented view (which the OpenAPI
    document is generated from, untouched)."""
    views = state.app.view_functions
    for endpoint, quick in (("ask_decision", _quick_decision), ("ask_batch", _quick_batch)):
        name = f"{state.name}.{endpoint}"
        views[name] = _quick(quick, views[name])


blp.record_once(_install_quick_paths)
