"""People's data keys: create, find, rotate their wrapping, destroy.

A data key only exists in memory unwrapped. The small cache here is keyed by
the wrapped bytes read from the database, so it can never serve a key whose
row has been deleted (erased) or rewrapped: it is safe to lose and safe to
keep across requests.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from threading import Lock

from sqlalchemy import ColumnElement, ScalarSelect, update
from sqlmodel import Session, select

from vault.clock import Clock
from vault.crypto.envelope import DataKey, unwrap_key, wrap_key
from vault.crypto.keyring import KeyRing
from vault.db import Database
from vault.errors import NotFound
from vault.models import PersonKey, Subscription
from vault.services.audit import AuditTag, record_event


class DataKeys:
    """Creates and opens people's data keys with the key ring's KEKs."""

    def __init__(self, keyring: KeyRing, *, cache_size: int = 10_000) -> None:
        self.keyring = keyring
        self._cache: OrderedDict[tuple[str, bytes], DataKey] = OrderedDict()
        self._cache_size = cache_size
        self._lock = Lock()

    def create(self, session: Session, person_id: str, *, clock: Clock) -> DataKey:
        """Make and store a fresh data key for a new person."""
        raw = DataKey.generate()
        kek_id, kek = self._active_kek()
        session.add(
            PersonKey(
                person_id=person_id,
                kek_id=kek_id,
                wrapped=wrap_key(kek, kek_id, person_id, raw),
                created_at=clock.now(),
            )
        )
        return DataKey(raw)

    def _active_kek(self) -> tuple[str, bytes]:
        """The active KEK as the key ring file names it now.

        A long-running process holds its ring in memory while an operator
        rotates (and then retires) KEKs from another process; a data key
        wrapped under the stale active KEK would be lost once that KEK is
        retired. So the file, when there is one, decides.
        """
        ring = self.keyring
        if ring.path is not None:
            fresh = KeyRing.load(ring.path)
            if fresh.active_kek_id != ring.active_kek_id:
                ring.keks[fresh.active_kek_id] = fresh.active_kek
                ring.active_kek_id = fresh.active_kek_id
        return ring.active_kek_id, ring.active_kek

    def open(self, person_id: str, kek_id: str, wrapped: bytes) -> DataKey:
        """Unwrap a data key read from storage (cached by its wrapped bytes)."""
        cache_key = (person_id, wrapped)
        with self._lock:
            key = self._cache.get(cache_key)
            if key is not None:
                self._cache.move_to_end(cache_key)
                return key
        key = DataKey(unwrap_key(self.keyring.kek(kek_id), kek_id, person_id, wrapped))
        with self._lock:
            self._cache[cache_key] = key
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return key

    def for_person(self, session: Session, person_id: str) -> DataKey:
        """The person's data key; ``NotFound`` when it was never made or was shredded."""
        row = session.get(PersonKey, person_id)
        if row is None:
            raise NotFound("no data key for this person")
        return self.open(person_id, row.kek_id, row.wrapped)

    def shred(self, session: Session, person_id: str) -> None:
        """Destroy the person's data key: crypto-shredding."""
        row = session.get(PersonKey, person_id)
        if row is not None:
            session.delete(row)
        with self._lock:
            for cache_key in [k for k in self._cache if k[0] == person_id]:
                del self._cache[cache_key]


_SUBSCRIPTIONS = Subscription.__table__  # type: ignore[attr-defined]
_PERSON_KEYS = PersonKey.__table__  # type: ignore[attr-defined]


def _copy_wrapped_keys(session: Session, which: ColumnElement[bool]) -> None:
    """Set the wrapped-key copy of ``which`` subscriptions to their person's key row.

    Only subscriptions that hold a copy (active ones, see ``vault.services.terms``).
    """
    def of_person(column: str) -> ScalarSelect[object]:
        return select(_PERSON_KEYS.c[column]).where(
            _PERSON_KEYS.c.person_id == _SUBSCRIPTIONS.c.person_id).scalar_subquery()

    session.execute(update(_SUBSCRIPTIONS)
                    .where(_SUBSCRIPTIONS.c.wrapped_key.is_not(None), which)
                    .values(wrapped_key=of_person("wrapped"), key_kek_id=of_person("kek_id")))


@dataclass(frozen=True)
class RotationReport:
    """What a KEK rotation did."""

    kek_id: str
    resumed: bool
    rewrapped: int
    remaining: int


def rotate_keks(
    database: Database,
    keyring: KeyRing,
    *,
    clock: Clock,
    batch_size: int = 500,
    on_batch: Callable[[int], None] | None = None,
) -> RotationReport:
    """Wrap every data key under a new KEK, leaving the data untouched.

    The copy of each wrapped key beside a subscription's terms (see
    ``vault.services.terms``) is rewrapped with it, in the same batch.

    The new KEK is saved to the key ring file before any data key is
    rewrapped, and each batch commits on its own, so a rotation stopped at
    any point is finished by running it again: it then resumes with the KEK
    it had already added instead of adding another. Old KEKs stay in the
    ring (see ``retire_keks``) so anything not yet rewrapped still opens.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    with database.read() as session:
        unfinished = session.exec(
            select(PersonKey.person_id).where(PersonKey.kek_id != keyring.active_kek_id).limit(1)
        ).first()
    resumed = unfinished is not None
    if not resumed:
        keyring.add_kek()
        keyring.save()
    new_id = keyring.active_kek_id
    new_kek = keyring.active_kek
    done = 0
    finished = False
    while not finished:
        with database.write() as session:
            rows = session.exec(
                select(PersonKey)
                .where(PersonKey.kek_id != new_id)
                .order_by(PersonKey.person_id)
                .limit(batch_size)
                .with_for_update()
            ).all()
            for row in rows:
                raw = unwrap_key(keyring.kek(row.kek_id), row.kek_id, row.person_id, row.wrapped)
                row.wrapped = wrap_key(new_kek, new_id, row.person_id, raw)
                row.kek_id = new_id
                row.rewrapped_at = clock.now()
                session.add(row)
            session.flush()
            if rows:
                _copy_wrapped_keys(session, _SUBSCRIPTIONS.c.person_id.in_(
                    [row.person_id for row in rows]))
            # The batch that rewraps the last data key records the rotation with it: a
            # rotation stopped after that commit is complete, and in the log. (Recorded
            # later, a stop in between left it unrecorded for good: with nothing left
            # to resume, the next run starts a new KEK instead.)
            finished = session.exec(
                select(PersonKey.person_id).where(PersonKey.kek_id != new_id).limit(1)
            ).first() is None
            if finished:
                # A grant racing the rotation may have copied a key wrapped under the
                # old KEK after its person's batch: bring any such copy up to date.
                _copy_wrapped_keys(session, _SUBSCRIPTIONS.c.key_kek_id != new_id)
                record_event(session, clock=clock, tag=AuditTag.KEK_ROTATED, actor="operator",
                             data={"kek_id": new_id, "rewrapped": done + len(rows),
                                   "resumed": resumed})
        done += len(rows)
        if rows and on_batch is not None:
            on_batch(done)
    return RotationReport(kek_id=new_id, resumed=resumed, rewrapped=done, remaining=0)


def retire_keks(database: Database, keyring: KeyRing) -> list[str]:
    """Remove from the ring every KEK no data key is wrapped with any more.

    After this, a database copy taken before the last rotation can no longer
    be opened, which is how erasure reaches old backups. A KEK that a
    subscription's copy of a wrapped key still uses is in use too.
    """
    with database.read() as session:
        in_use = set(session.exec(select(PersonKey.kek_id).distinct()).all())
        in_use |= {kek_id for kek_id in session.exec(select(Subscription.key_kek_id).distinct())
                   if kek_id is not None}
    retired = keyring.retire_keks(in_use)
    if retired:
        keyring.save()
    return retired
