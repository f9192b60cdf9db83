"""Strict checks of values coming from outside, shared by every entry point.

Each function returns the cleaned value or raises ``ValidationFailed`` naming
the field, so the API can answer problem+json and the UI can show the message
at the right input, and nothing is written on bad input.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email

from vault.errors import ValidationFailed
from vault.vocabulary import CHANNELS, LANGUAGES, PURPOSES

_PHONE = re.compile(r"^\+?[0-9][0-9 ().\-]{5,24}$")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_TIME_ZONES = frozenset(available_timezones())


def clean_text(value: object, *, field: str, max_length: int, multiline: bool = False) -> str:
    """Trimmed text without control characters (newlines only where allowed)."""
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be text", field=field)
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        raise ValidationFailed(f"{field} may not be empty", field=field)
    if len(text) > max_length:
        raise ValidationFailed(f"{field} may be at most {max_length} characters", field=field)
    for char in text:
        if char in "\n\r\t" and multiline:
            continue
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise ValidationFailed(f"{field} contains a control character", field=field)
    return text


def clean_email(value: object, *, field: str = "email") -> str:
    """A syntactically valid address, normalised (no DNS lookup)."""
    text = clean_text(value, field=field, max_length=320)
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError:
        raise ValidationFailed(f"{field} is not a valid email address", field=field) from None


def clean_phone(value: object, *, field: str = "phone") -> str:
    text = clean_text(value, field=field, max_length=32)
    if not _PHONE.fullmatch(text) or sum(c.isdigit() for c in text) < 6:
        raise ValidationFailed(f"{field} is not a valid phone number", field=field)
    return text


def clean_language(value: object, *, field: str = "language") -> str:
    if value not in LANGUAGES:
        raise ValidationFailed(f"{field} must be one of {', '.join(LANGUAGES)}", field=field)
    return str(value)


def clean_time_zone(value: object, *, field: str = "time_zone") -> str:
    if not isinstance(value, str) or value not in _TIME_ZONES:
        raise ValidationFailed(f"{field} must be an IANA time zone such as Europe/Amsterdam",
                               field=field)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(f"{field} is not a known time zone", field=field) from None
    return value


def clean_channel(value: object, *, field: str = "channel") -> str:
    if value not in CHANNELS:
        raise ValidationFailed(f"{field} must be one of {', '.join(CHANNELS)}", field=field)
    return str(value)


def clean_purpose(value: object, *, field: str = "purpose") -> str:
    if value not in PURPOSES:
        raise ValidationFailed(f"{field} must be one of {', '.join(PURPOSES)}", field=field)
    return str(value)


def clean_channel_order(value: object, *, field: str = "channel_order") -> tuple[str, ...]:
    """The person's preferred channels first; the rest follow in the usual order."""
    if not isinstance(value, list | tuple):
        raise ValidationFailed(f"{field} must be a list of channels", field=field)
    chosen = [clean_channel(item, field=field) for item in value]
    if len(set(chosen)) != len(chosen):
        raise ValidationFailed(f"{field} names a channel twice", field=field)
    return tuple(chosen) + tuple(c for c in CHANNELS if c not in chosen)


def clean_clock_time(value: object, *, field: str) -> time:
    """A wall-clock time written ``HH:MM``."""
    match = _HHMM.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValidationFailed(f"{field} must be a time written HH:MM", field=field)
    return time(int(match.group(1)), int(match.group(2)))


def clean_password(value: object, *, field: str = "password") -> str:
    """At least 12 characters, at most 1024: long passphrases welcome, no composition rules."""
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be text", field=field)
    if len(value) < 12:
        raise ValidationFailed(f"{field} must be at least 12 characters", field=field)
    if len(value) > 1024:
        raise ValidationFailed(f"{field} may be at most 1024 characters", field=field)
    return value


def reject_unknown(keys: Iterable[str], allowed: Iterable[str]) -> None:
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        raise ValidationFailed(f"unknown field {unknown[0]}", field=unknown[0])
