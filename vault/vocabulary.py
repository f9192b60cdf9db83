"""The shared words of the vault: channels, purposes and profile fields.

DESIGN.md fixes these names; the database, API, SDK, UI and docs all use them.
Channels and purposes are defined once, in the merchant SDK the vault depends
on (shops meet them there), so the two can never disagree; the vault imports
every word from here.
"""

from enum import StrEnum

from prefvault_sdk import Channel, Purpose

__all__ = ["CHANNELS", "LANGUAGES", "PROFILE_FIELDS", "PURPOSES", "Channel", "ProfileField",
           "Purpose"]


class ProfileField(StrEnum):
    """What a person may choose to share with a merchant."""

    NAME = "name"
    EMAIL = "email"
    PHONE = "phone"
    ADDRESS = "address"
    LANGUAGE = "language"
    INTERESTS = "interests"


CHANNELS: tuple[str, ...] = tuple(c.value for c in Channel)
PURPOSES: tuple[str, ...] = tuple(p.value for p in Purpose)
PROFILE_FIELDS: tuple[str, ...] = tuple(f.value for f in ProfileField)
LANGUAGES: tuple[str, ...] = ("nl", "en")
