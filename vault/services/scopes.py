"""OAuth scopes of the vault and what they mean.

Person-granted scopes: ``contact:{channel}:{purpose}``, ``profile:{field}`` and
``openid``. Merchant scopes (client credentials): ``decisions``,
``contacts:write``, ``subscriptions:read``. Auditor scope: ``audit:read``.
"""

from __future__ import annotations

from dataclasses import dataclass

from vault.vocabulary import CHANNELS, PROFILE_FIELDS, PURPOSES

OPENID = "openid"
MERCHANT_SCOPES = ("decisions", "contacts:write", "subscriptions:read")
AUDITOR_SCOPES = ("audit:read",)


def contact_scope(channel: str, purpose: str) -> str:
    return f"contact:{channel}:{purpose}"


def profile_scope(field: str) -> str:
    return f"profile:{field}"


CONTACT_SCOPES = tuple(contact_scope(c, p) for c in CHANNELS for p in PURPOSES)
PROFILE_SCOPES = tuple(profile_scope(f) for f in PROFILE_FIELDS)
PERSON_SCOPES = (OPENID, *CONTACT_SCOPES, *PROFILE_SCOPES)
ALL_SCOPES = (*PERSON_SCOPES, *MERCHANT_SCOPES, *AUDITOR_SCOPES)


@dataclass(frozen=True)
class PersonGrant:
    """What a person grants (or a merchant asks for) in one authorization."""

    contact: tuple[tuple[str, str], ...] = ()
    profile: tuple[str, ...] = ()
    openid: bool = False

    @classmethod
    def parse(cls, scope: str | None) -> PersonGrant:
        """Parse a scope string; ``ValueError`` names the first scope that is not a person scope."""
        contact: list[tuple[str, str]] = []
        profile: list[str] = []
        openid = False
        for item in dict.fromkeys((scope or "").split()):
            if item == OPENID:
                openid = True
            elif item in CONTACT_SCOPES:
                _, channel, purpose = item.split(":")
                contact.append((channel, purpose))
            elif item in PROFILE_SCOPES:
                profile.append(item.split(":", 1)[1])
            else:
                raise ValueError(item)
        return cls(tuple(contact), tuple(profile), openid)

    def narrowed_to(self, ticked: set[str]) -> PersonGrant:
        """Only the scopes the person ticked (never more than were asked)."""
        return PersonGrant(
            tuple(p for p in self.contact if contact_scope(*p) in ticked),
            tuple(f for f in self.profile if profile_scope(f) in ticked),
            self.openid,
        )

    @property
    def scope(self) -> str:
        items = [OPENID] if self.openid else []
        items += [contact_scope(c, p) for c, p in self.contact]
        items += [profile_scope(f) for f in self.profile]
        return " ".join(items)

    @property
    def is_empty(self) -> bool:
        return not self.contact and not self.profile
