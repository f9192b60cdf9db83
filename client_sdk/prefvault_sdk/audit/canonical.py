"""The canonical bytes of a consent-log event, and strict JSON reading for exports.

The vault's hash chain and Merkle leaves both hash the canonical JSON defined
here; the vault imports this module rather than keeping its own copy, so the
bytes it hashes and the bytes a verifier hashes can never drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .merkle import leaf_hash


class MalformedRecord(ValueError):
    """A line or row of an export that cannot be read.

    ``index`` is the leaf index it claimed, when it got far enough to say.
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


def canonical_json(value: object) -> str:
    """Sorted keys, no spaces, non-ASCII kept: the vault's canonical form."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def leaf_bytes(document: Mapping[str, Any]) -> bytes:
    """The Merkle leaf of one event: its canonical JSON, UTF-8 encoded."""
    return canonical_json(document).encode("utf-8")


def event_leaf_hash(document: Mapping[str, Any]) -> bytes:
    """The RFC 9162 leaf hash of one event document."""
    try:
        return leaf_hash(leaf_bytes(document))
    except UnicodeEncodeError as exc:
        raise MalformedRecord("leaf is not encodable as UTF-8") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers may keep different copies of a duplicated key, so what one tool
    # shows would not be what was hashed; refuse instead.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedRecord(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise MalformedRecord(f"non-standard JSON constant {name}")


def parse_object(text: str) -> dict[str, Any]:
    """A JSON object, refusing duplicate keys and NaN/Infinity (which do not round-trip)."""
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates,
                           parse_constant=_no_constants)
    except MalformedRecord:
        raise
    except (ValueError, RecursionError) as exc:
        raise MalformedRecord("not valid JSON") from exc
    if not isinstance(value, dict):
        raise MalformedRecord("not a JSON object")
    return value
