"""The request's database session.

The request owns the transaction: views ask for the session, services flush,
and the view commits once, so a change and its audit event land together.
Requests that may write (anything but GET/HEAD) use the writing engine,
which on SQLite takes the write lock up front.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from flask import Flask, g, request
from sqlmodel import Session

from vault.extensions import runtime

_KEY = "_vault_db_session"
_READ_ONLY = "_vault_read_only_request"
F = TypeVar("F", bound=Callable[..., object])


def reads_only(view: F) -> F:
    """Mark a POST view that reads through the request session and writes elsewhere.

    Decisions are questions: they read terms and append evidence in a short
    write transaction of their own, so they must not hold the database's write
    lock (SQLite) for the whole request.
    """

    @wraps(view)
    def wrapper(*args: object, **kwargs: object) -> object:
        setattr(g, _READ_ONLY, True)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def db_session() -> Session:
    session: Session | None = g.get(_KEY)
    if session is None:
        database = runtime().database
        reading = request.method in ("GET", "HEAD") or g.get(_READ_ONLY, False)
        engine = database.read_engine if reading else database.write_engine
        session = Session(engine, expire_on_commit=False)
        setattr(g, _KEY, session)
    return session


def end_read() -> None:
    """End the request session's read snapshot before writing elsewhere.

    On SQLite an open snapshot keeps the WAL from being checkpointed, which
    makes every later commit pay for a failed checkpoint.
    """
    session: Session | None = g.get(_KEY)
    if session is not None:
        session.rollback()


def commit() -> None:
    session: Session | None = g.get(_KEY)
    if session is not None:
        session.commit()


def init_request_db(app: Flask) -> None:
    @app.teardown_appcontext
    def _close(_error: BaseException | None) -> None:
        session: Session | None = g.pop(_KEY, None)
        if session is not None:
            session.rollback()
            session.close()
