"""Plain-language words for the vocabulary, as a person reads them."""

from __future__ import annotations

CHANNEL_LABELS = {
    "email": "e-mail",
    "sms": "text message (SMS)",
    "phone": "phone call",
    "post": "letter by post",
    "push": "app notification",
}

PURPOSE_LABELS = {
    "order_updates": "about your orders (confirmation, delivery)",
    "service": "for service (help, a failed checkout)",
    "abandoned_cart": "about a shopping cart you left",
    "offers": "with offers and newsletters",
    "personalised_offers": "with offers based on what you did or who you are",
    "surveys": "with surveys",
    "partner_offers": "on behalf of partners (third parties)",
}

FIELD_LABELS = {
    "name": "your name",
    "email": "your e-mail address",
    "phone": "your phone number",
    "address": "your postal address",
    "language": "your language",
    "interests": "your interests (what you told about your tastes and motives)",
}


def contact_label(channel: str, purpose: str) -> str:
    return f"Reach you by {CHANNEL_LABELS[channel]} {PURPOSE_LABELS[purpose]}"


def field_label(field: str) -> str:
    return f"See {FIELD_LABELS[field]}"
