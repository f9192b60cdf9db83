"""Process logging: one line per record, pseudonymous ids only.

Code logs ids (``person=…``, ``merchant=…``), never profile values; the test
suite checks the log output of a whole account lifecycle for planted values.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_prefvault", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._prefvault = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("vault").setLevel(level)
