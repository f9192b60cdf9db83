"""The request's database session.

The request owns the transaction: views ask for the session, services flush,
and the view commits once, so a change and its audit event land together.
Requests that may write (anything but GET/HEAD) use the writing engine,
which on SQLite takes the write lock up front.
"""

from __future__ import annotations

from flask import Flask, g, request
from sqlmodel import Session

from vault.extensions import runtime

_KEY = "_vault_db_session"


def db_session() -> Session:
    session: Session | None = g.get(_KEY)
    if session is None:
        database = runtime().database
        engine = database.read_engine if request.method in ("GET", "HEAD") else \
            database.write_engine
        session = Session(engine, expire_on_commit=False)
        setattr(g, _KEY, session)
    return session


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
