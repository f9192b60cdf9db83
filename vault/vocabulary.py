"""The shared words of the vault: channels, purposes and profile fields.

DESIGN.md fixes these names; the database, API, SDK, UI and docs all use them,
so they live in one place and everything else imports them from here.
"""

from enum import StrEnum


class Channel(StrEnum):
    """How a merchant may reach a person."""

    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    POST = "post"
    PUSH = "push"


class Purpose(StrEnum):
    """Why a merchant wants to reach a person."""

    ORDER_UPDATES = "order_updates"
    SERVICE = "service"
    ABANDONED_CART = "abandoned_cart"
    OFFERS = "offers"
    PERSONALISED_OFFERS = "personalised_offers"
    SURVEYS = "surveys"
    PARTNER_OFFERS = "partner_offers"


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
