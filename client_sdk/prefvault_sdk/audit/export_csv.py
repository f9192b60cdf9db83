"""The CSV form of a consent-log export: one spreadsheet row per event, still verifiable.

JSON Lines is the export's reference form; the CSV carries exactly the same
records so that an auditor can open it in a spreadsheet and still verify it
offline. Columns (RFC 4180, UTF-8 with a byte-order mark so spreadsheets pick
the right encoding, ``\\r\\n`` line ends)::

    kind, index, seq, occurred_at, tag, actor, person_ref, merchant_id, subject,
    data, leaf_hash, proof, json

* The first data row has ``kind = tree_head`` and, in ``json``, the signed
  tree head record exactly as the first line of the JSON Lines export.
* Every other row has ``kind = event``: ``index`` is the leaf index, ``json``
  the event's canonical JSON (the Merkle leaf itself), ``leaf_hash`` its
  RFC 9162 leaf hash in hex, ``proof`` the inclusion proof as space-separated
  hex hashes (filtered exports only). The columns from ``seq`` to ``data`` repeat
  the leaf's fields for reading; the verifier checks they say what the leaf
  says, so what a reader sees in the spreadsheet is what was verified.

A cell that a spreadsheet would run as a formula (starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return) is written with a leading ``'``, as is
one that starts with ``'`` itself, so the escaping can be undone exactly.
Verify the file as downloaded: saving it from a spreadsheet may reformat cells.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any

from .canonical import MalformedRecord, canonical_json, event_leaf_hash, parse_object

CSV_COLUMNS = ("kind", "index", "seq", "occurred_at", "tag", "actor", "person_ref",
               "merchant_id", "subject", "data", "leaf_hash", "proof", "json")
#: the leaf fields repeated in their own columns, for people reading the sheet
READABLE = ("seq", "occurred_at", "tag", "actor", "person_ref", "merchant_id", "subject", "data")
BOM = "\ufeff"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
_COLUMN = {name: i for i, name in enumerate(CSV_COLUMNS)}


def _escape(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def _unescape(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return canonical_json(value)


def _line(cells: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([_escape(c) for c in cells])
    return buffer.getvalue()


def is_csv_header(line: str) -> bool:
    """Whether the first line of an export is this module's header row."""
    return line.lstrip(BOM).startswith(CSV_COLUMNS[0] + ",")


def render_csv(records: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The CSV lines (each ending in ``\\r\\n``) for export records, head record first."""
    yield BOM + _line(CSV_COLUMNS)
    for record in records:
        row = [""] * len(CSV_COLUMNS)
        row[_COLUMN["kind"]] = str(record["kind"])
        if record["kind"] == "tree_head":
            row[_COLUMN["json"]] = canonical_json(dict(record))
        else:
            leaf = record["leaf"]
            row[_COLUMN["index"]] = str(record["index"])
            for name in READABLE:
                row[_COLUMN[name]] = _cell(leaf.get(name))
            row[_COLUMN["leaf_hash"]] = event_leaf_hash(leaf).hex()
            row[_COLUMN["proof"]] = " ".join(record.get("proof") or ())
            row[_COLUMN["json"]] = canonical_json(leaf)
        yield _line(row)


def _index(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise MalformedRecord("index must be a non-negative integer")
    return int(text)


def _event(row: list[str], filtered: bool) -> dict[str, Any]:
    index = _index(row[_COLUMN["index"]])
    try:
        leaf = parse_object(row[_COLUMN["json"]])
        for name in READABLE:
            if row[_COLUMN[name]] != _cell(leaf.get(name)):
                raise MalformedRecord(f"column {name!r} does not match the leaf")
        if row[_COLUMN["leaf_hash"]] != event_leaf_hash(leaf).hex():
            raise MalformedRecord("column 'leaf_hash' does not match the leaf")
    except MalformedRecord as exc:
        raise MalformedRecord(str(exc), index) from exc
    record: dict[str, Any] = {"kind": "event", "index": index, "leaf": leaf}
    proof = row[_COLUMN["proof"]]
    if filtered:
        record["proof"] = proof.split(" ") if proof else []
    elif proof:
        raise MalformedRecord("unexpected fields ['proof'] in a full export", index)
    return record


def read_csv(first: str, lines: Iterable[str], *,
             first_line_no: int = 1) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for each row of a CSV export, head record first.

    ``first`` is the header line (already read to recognise the format).
    Raises :class:`MalformedRecord` at the first row that cannot be read.
    """
    reader = csv.reader(chain([first.lstrip(BOM)], lines), strict=True)
    filtered = False
    seen_head = False
    try:
        header = next(reader)
        if tuple(header) != CSV_COLUMNS:
            raise MalformedRecord(f"the CSV header is not {','.join(CSV_COLUMNS)}")
        for raw in reader:
            line_no = first_line_no + reader.line_num - 1
            if not raw or raw == [""]:
                continue
            row = [_unescape(cell) for cell in raw]
            if len(row) != len(CSV_COLUMNS):
                raise MalformedRecord(f"line {line_no}: {len(row)} columns, "
                                      f"expected {len(CSV_COLUMNS)}")
            kind = row[_COLUMN["kind"]]
            if not seen_head:
                if kind != "tree_head":
                    raise MalformedRecord("first row is not a tree_head")
                record = parse_object(row[_COLUMN["json"]])
                filtered = record.get("filtered") is True
                seen_head = True
                yield line_no, record
            elif kind != "event":
                raise MalformedRecord(f"line {line_no}: not an event row")
            else:
                try:
                    yield line_no, _event(row, filtered)
                except MalformedRecord as exc:
                    raise MalformedRecord(f"line {line_no}: {exc}", exc.index) from exc
    except csv.Error as exc:
        raise MalformedRecord(f"not valid CSV: {exc}") from exc
