"""An in-memory cache of decisions, for shops that ask the same question often.

An answer is served from the cache only while both hold:

- ``clock() < decision.valid_until`` — the vault's own statement of how long
  the answer stands (never past the next quiet-hours edge or expiry);
- it was stored less than ``max_age`` seconds ago (monotonic time) — a guard
  against a merchant clock running behind the vault's, which would otherwise
  stretch ``valid_until``.

A person may change their mind at any moment, so a webhook about a subject
(``client.handle_event``) drops every cached answer for that subject. Only
answers about "now" are cached; questions about a given moment (``at=``) are
always asked. The cache is bounded (least recently used answers go first) and
safe to share between threads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from ._models import Decision

_Key = tuple[str, str, str]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DecisionCache:
    """Bounded, thread-safe cache of ``Decision`` answers; see the module docstring."""

    def __init__(self, *, max_entries: int = 10_000, max_age: float = 300.0,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        self.max_entries = max_entries
        self.max_age = max_age
        self._clock = clock
        self._entries: OrderedDict[_Key, tuple[Decision, float]] = OrderedDict()
        self._by_subject: dict[str, set[_Key]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return f"DecisionCache(entries={len(self)}, max_entries={self.max_entries})"

    def get(self, subject: str, channel: str, purpose: str) -> Decision | None:
        """The cached answer if it still stands, else None (and the stale one is dropped)."""
        key = (subject, str(channel), str(purpose))
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            decision, stored = entry
            if (time.monotonic() - stored >= self.max_age
                    or self._clock() >= decision.valid_until):
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return decision

    def put(self, decision: Decision) -> None:
        """Keep an answer from the vault (the SDK's fail-closed answers are never kept)."""
        if decision.decision_id is None:
            return
        key = (decision.subject, decision.channel, decision.purpose)
        with self._lock:
            self._entries[key] = (decision, time.monotonic())
            self._entries.move_to_end(key)
            self._by_subject.setdefault(decision.subject, set()).add(key)
            while len(self._entries) > self.max_entries:
                oldest = next(iter(self._entries))
                self._drop(oldest)

    def forget(self, subject: str) -> int:
        """Drop every answer about ``subject``; returns how many there were."""
        with self._lock:
            keys = self._by_subject.pop(subject, set())
            for key in keys:
                self._entries.pop(key, None)
            return len(keys)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._entries.clear()
            self._by_subject.clear()

    def _drop(self, key: _Key) -> None:
        self._entries.pop(key, None)
        keys = self._by_subject.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_subject[key[0]]


__all__ = ["DecisionCache"]
