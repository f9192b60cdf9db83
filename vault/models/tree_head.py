"""Signed tree heads of the consent log and the Merkle subtree hashes behind them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, LargeBinary, SmallInteger
from sqlmodel import Field, SQLModel

from vault.models.types import UTCDateTime


class SignedTreeHead(SQLModel, table=True):
    """A tree head the vault signed: "the log's first ``tree_size`` events hash to ``root_hash``".

    Never updated, never deleted. ``tree_size`` is the primary key, so one
    size has one head however many processes checkpoint at once. Besides the
    signed fields it keeps ``chain_hash``, the hash chain's value after event
    ``tree_size``, so the next checkpoint can check that the log still ends
    where this head left it before hashing only what came after.
    """

    __tablename__ = "tree_head"

    tree_size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))
    kid: str = Field(max_length=64)
    signature: bytes = Field(sa_column=Column(LargeBinary(64), nullable=False))
    chain_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class AuditTreeNode(SQLModel, table=True):
    """The root of one perfect subtree of the consent log's Merkle tree.

    ``level`` 0 holds leaf hashes; the node at ``(level, position)`` covers
    leaves ``position * 2**level`` to ``(position + 1) * 2**level - 1``. Written
    once, when a checkpoint first covers the subtree, so any inclusion or
    consistency proof is a few O(log n) reads instead of rehashing the log.
    """

    __tablename__ = "audit_tree_node"

    level: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    position: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
