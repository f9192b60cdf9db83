"""Plain-language words for the vocabulary, as a person reads them, in their language.

Lazy strings: each is translated when a page renders, in that page's language.
"""

from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

CHANNEL_LABELS = {
    "email": _l("e-mail"),
    "sms": _l("text message (SMS)"),
    "phone": _l("phone call"),
    "post": _l("letter by post"),
    "push": _l("app notification"),
}

PURPOSE_LABELS = {
    "order_updates": _l("about your orders (confirmation, delivery)"),
    "service": _l("for service (help, a failed checkout)"),
    "abandoned_cart": _l("about a shopping cart you left"),
    "offers": _l("with offers and newsletters"),
    "personalised_offers": _l("with offers based on what you did or who you are"),
    "surveys": _l("with surveys"),
    "partner_offers": _l("on behalf of partners (third parties)"),
}

FIELD_LABELS = {
    "name": _l("your name"),
    "email": _l("your e-mail address"),
    "phone": _l("your phone number"),
    "address": _l("your postal address"),
    "language": _l("your language"),
    "interests": _l("your interests (what you told about your tastes and motives)"),
}


def contact_label(channel: str, purpose: str) -> str:
    return _("Reach you by %(channel)s %(purpose)s", channel=CHANNEL_LABELS[channel],
             purpose=PURPOSE_LABELS[purpose])


def field_label(field: str) -> str:
    return _("See %(field)s", field=FIELD_LABELS[field])
