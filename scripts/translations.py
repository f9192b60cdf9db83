#!/usr/bin/env python3
"""Keep the Dutch catalogue in step with the code and the templates.

    python scripts/translations.py update   # extract, merge into nl, compile the .mo
    python scripts/translations.py fold     # the same, then remove the merged fragments
    python scripts/translations.py check    # exit 1 if a message lacks Dutch or the .mo is stale

English is the source language: every message in the code and templates is
its own English text. ``update`` extracts them (babel.cfg says where),
merges the Dutch catalogue ``vault/translations/nl/LC_MESSAGES/messages.po``
(plus any ``_*.po`` fragments beside it, whose translations win; ``fold``
removes them once merged), and compiles ``messages.mo``, which is
committed so an installed vault needs no build step.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "vault" / "translations" / "nl" / "LC_MESSAGES" / "messages.po"
COMPILED = CATALOGUE.with_suffix(".mo")
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None}


def extract() -> Catalog:
    method_map, options_map = parse_mapping_cfg(io.StringIO((ROOT / "babel.cfg").read_text()))
    template = Catalog(project="Preference Vault", version="1", fuzzy=False)
    for filename, lineno, message, comments, context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=KEYWORDS, strip_comment_tags=True):
        template.add(message, None, [(filename, lineno)], auto_comments=comments,
                     context=context)
    return template


def _read(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale="nl")


def merged(template: Catalog) -> Catalog:
    catalogue = _read(CATALOGUE) if CATALOGUE.exists() else Catalog(locale="nl")
    for fragment in sorted(CATALOGUE.parent.glob("_*.po")):
        for message in _read(fragment):
            if message.id and message.string:
                known = catalogue.get(message.id)
                if known is None:
                    catalogue.add(message.id, message.string)
                else:
                    known.string = message.string
                    known.flags.discard("fuzzy")
    catalogue.update(template, no_fuzzy_matching=True)
    catalogue.obsolete.clear()
    catalogue.project, catalogue.version = "Preference Vault", "1"
    return catalogue


def compiled(catalogue: Catalog) -> bytes:
    buffer = io.BytesIO()
    write_mo(buffer, catalogue)
    return buffer.getvalue()


def _po_bytes(catalogue: Catalog) -> bytes:
    buffer = io.BytesIO()
    write_po(buffer, catalogue, width=100, omit_header=False, sort_output=True,
             include_lineno=False)
    return buffer.getvalue()


def missing(catalogue: Catalog) -> list[str]:
    return [str(m.id) for m in catalogue
            if m.id and (not m.string or m.fuzzy
                         or (isinstance(m.string, tuple) and not all(m.string)))]


def update(fold: bool = False) -> int:
    catalogue = merged(extract())
    CATALOGUE.parent.mkdir(parents=True, exist_ok=True)
    CATALOGUE.write_bytes(_po_bytes(catalogue))
    COMPILED.write_bytes(compiled(_read(CATALOGUE)))
    for fragment in CATALOGUE.parent.glob("_*.po") if fold else ():
        fragment.unlink()
    gaps = missing(catalogue)
    for text in gaps:
        print(f"no Dutch yet: {text!r}")
    print(f"{len(catalogue)} messages, {len(gaps)} without Dutch")
    return 0


def check() -> int:
    template = extract()
    catalogue = _read(CATALOGUE)
    problems = [f"not in the catalogue: {m.id!r}" for m in template
                if m.id and not catalogue.get(m.id)]
    problems += [f"no Dutch: {text!r}" for text in missing(catalogue)
                 if template.get(text) is not None]
    if not COMPILED.exists() or COMPILED.read_bytes() != compiled(catalogue):
        problems.append("messages.mo is not compiled from messages.po (run update)")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("update", "fold", "check"):
        print("usage: translations.py update|fold|check", file=sys.stderr)
        sys.exit(2)
    sys.exit(check() if command == "check" else update(fold=command == "fold"))
