"""A person's global rules: what no merchant may do, whatever it was granted.

Rules are sealed with the person's data key like the profile. ``version``
grows with each change; a caller that read version N and saves with
``expected_version=N`` is refused if someone else saved in between, so two
open browser tabs cannot silently undo each other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time

from sqlmodel import Session

from vault.clock import Clock
from vault.crypto.envelope import DataKey
from vault.errors import Conflict, NotFound, ValidationFailed
from vault.models import GlobalRules
from vault.services.audit import AuditTag, record_event
from vault.services.keys import DataKeys
from vault.services.validation import (
    clean_channel,
    clean_clock_time,
    clean_purpose,
    reject_unknown,
)

ANY = "*"
_TABLE = "global_rules"


@dataclass(frozen=True)
class QuietHours:
    """A daily window, in the person's time zone, when nobody may reach them.

    ``start`` after ``end`` means the window runs across midnight.
    """

    start: time
    end: time

    def to_json(self) -> dict[str, str]:
        return {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M")}

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> QuietHours:
        return cls(clean_clock_time(doc.get("start"), field="quiet_hours.start"),
                   clean_clock_time(doc.get("end"), field="quiet_hours.end"))


@dataclass(frozen=True)
class RuleSet:
    """Global rules; ``blocked`` pairs may use ``*`` for any channel or purpose."""

    blocked: tuple[tuple[str, str], ...] = ()
    channels_off: tuple[str, ...] = ()
    quiet_hours: QuietHours | None = None
    version: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "blocked": [{"channel": c, "purpose": p} for c, p in self.blocked],
            "channels_off": list(self.channels_off),
            "quiet_hours": self.quiet_hours.to_json() if self.quiet_hours else None,
        }

    def blocks(self, channel: str, purpose: str) -> bool:
        """True when these rules forbid (channel, purpose) for every merchant."""
        if channel in self.channels_off:
            return True
        return any(
            (c in (channel, ANY)) and (p in (purpose, ANY)) for c, p in self.blocked
        )


def parse_rules(document: Mapping[str, object]) -> RuleSet:
    """Validate a rules document as a client sends it."""
    if not isinstance(document, Mapping):
        raise ValidationFailed("rules must be an object", field="rules")
    reject_unknown(document.keys(), ("blocked", "channels_off", "quiet_hours"))
    blocked_in = document.get("blocked", [])
    if not isinstance(blocked_in, list):
        raise ValidationFailed("blocked must be a list", field="blocked")
    blocked: list[tuple[str, str]] = []
    for item in blocked_in:
        if not isinstance(item, Mapping):
            raise ValidationFailed("each blocked rule is an object", field="blocked")
        reject_unknown(item.keys(), ("channel", "purpose"))
        channel = item.get("channel", ANY)
        purpose = item.get("purpose", ANY)
        if channel == ANY and purpose == ANY:
            raise ValidationFailed("a blocked rule names a channel or a purpose",
                                   field="blocked")
        pair = (
            ANY if channel == ANY else clean_channel(channel, field="blocked.channel"),
            ANY if purpose == ANY else clean_purpose(purpose, field="blocked.purpose"),
        )
        if pair not in blocked:
            blocked.append(pair)
    off_in = document.get("channels_off", [])
    if not isinstance(off_in, list):
        raise ValidationFailed("channels_off must be a list", field="channels_off")
    channels_off = tuple(dict.fromkeys(clean_channel(c, field="channels_off") for c in off_in))
    quiet_in = document.get("quiet_hours")
    quiet = None
    if quiet_in is not None:
        if not isinstance(quiet_in, Mapping):
            raise ValidationFailed("quiet_hours must be an object", field="quiet_hours")
        reject_unknown(quiet_in.keys(), ("start", "end"))
        start = clean_clock_time(quiet_in.get("start"), field="quiet_hours.start")
        end = clean_clock_time(quiet_in.get("end"), field="quiet_hours.end")
        if start == end:
            raise ValidationFailed("quiet hours must start and end at different times",
                                   field="quiet_hours")
        quiet = QuietHours(start, end)
    return RuleSet(blocked=tuple(blocked), channels_off=channels_off, quiet_hours=quiet)


def _seal(key: DataKey, person_id: str, rules: RuleSet) -> bytes:
    return key.encrypt(json.dumps(rules.to_json()).encode(), table=_TABLE, row_id=person_id,
                       field="record")


def open_rules(key: DataKey, row: GlobalRules) -> RuleSet:
    """Decrypt a stored rules row.

    The record was validated when it was written and is authenticated by
    AES-GCM, so it is read back without validating it again: this runs for
    every subject of a campaign.
    """
    return rules_from_record(open_rules_record(key, row.person_id, row.record), row.version)


def open_rules_record(key: DataKey, person_id: str, sealed: bytes) -> bytes:
    """The opened (JSON) record of sealed rules, not yet parsed."""
    return key.decrypt(sealed, table=_TABLE, row_id=person_id, field="record")


def rules_from_record(raw: bytes, version: int) -> RuleSet:
    """The rules in an opened record (campaigns parse each distinct record once)."""
    doc = json.loads(raw)
    quiet = doc.get("quiet_hours")
    return RuleSet(
        blocked=tuple((b["channel"], b["purpose"]) for b in doc.get("blocked", ())),
        channels_off=tuple(doc.get("channels_off", ())),
        quiet_hours=QuietHours(time.fromisoformat(quiet["start"]),
                               time.fromisoformat(quiet["end"])) if quiet else None,
        version=version,
    )


def create_default_rules(session: Session, person_id: str, key: DataKey, *, clock: Clock) -> None:
    """Rules of a new account: none. Default deny lives in the grants, not here."""
    session.add(GlobalRules(person_id=person_id, record=_seal(key, person_id, RuleSet()),
                            version=1, updated_at=clock.now()))


def get_rules(session: Session, person_id: str, *, data_keys: DataKeys) -> RuleSet:
    row = session.get(GlobalRules, person_id)
    if row is None:
        raise NotFound("no such person")
    return open_rules(data_keys.for_person(session, person_id), row)


def set_rules(
    session: Session,
    person_id: str,
    document: Mapping[str, object],
    *,
    data_keys: DataKeys,
    clock: Clock,
    expected_version: int | None = None,
) -> RuleSet:
    """Replace the person's global rules, with an audit event in the same transaction."""
    rules = parse_rules(document)
    # populate_existing: a row this session already holds must show the version just locked.
    row = session.get(GlobalRules, person_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFound("no such person")
    if expected_version is not None and row.version != expected_version:
        raise Conflict("the rules were changed elsewhere; reload and try again",
                       field="version")
    key = data_keys.for_person(session, person_id)
    before = open_rules(key, row)
    row.record = _seal(key, person_id, rules)
    row.version += 1
    now = clock.now()
    row.updated_at = now
    session.add(row)
    # Imported here: the terms record is built from these rules (and imports this module).
    from vault.services import terms

    terms.refresh(session, person_id, data_keys=data_keys, now=now)
    record_event(
        session,
        clock=clock,
        tag=AuditTag.PERSON_RULES_UPDATED,
        actor=f"person:{person_id}",
        person_ref=person_id,
        data={"before": before.to_json(), "after": rules.to_json(), "version": row.version},
    )
    return RuleSet(rules.blocked, rules.channels_off, rules.quiet_hours, row.version)
