"""Contact permissions of a subscription: the sealed channel x purpose grid.

Nothing is allowed unless it is in the grid with ``allowed: true`` (default
deny). The grid is sealed with the person's data key as one record per
subscription (see ``vault.models.ContactPermission``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime

from vault.crypto.envelope import DataKey
from vault.models import ContactPermission
from vault.services.rules import QuietHours

_TABLE = "contact_permission"


@dataclass(frozen=True)
class Permission:
    """One (channel, purpose) the person allows a merchant, with its limits."""

    channel: str
    purpose: str
    allowed: bool = True
    max_per_week: int | None = None
    quiet_hours: QuietHours | None = None
    expires_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.purpose}"

    def to_json(self) -> dict[str, object]:
        return {
            "channel": self.channel,
            "purpose": self.purpose,
            "allowed": self.allowed,
            "max_per_week": self.max_per_week,
            "quiet_hours": self.quiet_hours.to_json() if self.quiet_hours else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> Permission:
        quiet = doc.get("quiet_hours")
        expires = doc.get("expires_at")
        return cls(
            channel=str(doc["channel"]),
            purpose=str(doc["purpose"]),
            allowed=bool(doc.get("allowed", False)),
            max_per_week=int(doc["max_per_week"]) if doc.get("max_per_week") is not None
            else None,  # type: ignore[arg-type]
            quiet_hours=QuietHours.from_json(quiet) if isinstance(quiet, dict) else None,
            expires_at=datetime.fromisoformat(str(expires)) if expires else None,
        )


PermissionGrid = dict[tuple[str, str], Permission]


def grid_from_pairs(pairs: tuple[tuple[str, str], ...], previous: PermissionGrid) -> PermissionGrid:
    """A grid allowing exactly ``pairs``, keeping the limits the person set before."""
    grid: PermissionGrid = {}
    for channel, purpose in pairs:
        before = previous.get((channel, purpose))
        grid[(channel, purpose)] = (
            replace(before, allowed=True) if before else Permission(channel, purpose)
        )
    return grid


def seal_grid(key: DataKey, subscription_id: str, grid: PermissionGrid) -> bytes:
    doc = {"permissions": [p.to_json() for p in grid.values()]}
    return key.encrypt(json.dumps(doc).encode(), table=_TABLE, row_id=subscription_id,
                       field="record")


def open_grid(key: DataKey, row: ContactPermission) -> PermissionGrid:
    return grid_from_record(open_grid_record(key, row.subscription_id, row.record))


def open_grid_record(key: DataKey, subscription_id: str, sealed: bytes) -> bytes:
    """The opened (JSON) record of a sealed grid, not yet parsed."""
    return key.decrypt(sealed, table=_TABLE, row_id=subscription_id, field="record")


def grid_from_record(raw: bytes) -> PermissionGrid:
    """The grid in an opened record (campaigns parse each distinct record once)."""
    permissions = [Permission.from_json(item) for item in json.loads(raw)["permissions"]]
    return {(p.channel, p.purpose): p for p in permissions}
