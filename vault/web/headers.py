"""Security headers shared by every response."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


def content_security_policy(form_targets: Iterable[str] = ()) -> str:
    """The vault's CSP: its own assets only, never framed.

    ``form_targets`` are extra origins a form on the page may end up at. The
    consent page needs its merchant's redirect origin there, because browsers
    apply ``form-action`` to the redirect that follows the form's POST.
    """
    targets = " ".join(["'self'", *dict.fromkeys(form_targets)])
    return ("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
            f"object-src 'none'; form-action {targets}")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
