"""``prefvault_sdk.webhooks.verify``: only authentic, fresh deliveries become events.

Signatures are made both by the SDK's ``construct_test_header`` and by the
vault's own signer, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime

import pytest
from prefvault_sdk import Event, SignatureVerificationError, VaultError, webhooks

from vault.services.webhooks import signature_header

SECRET = "whsec_" + "ab" * 32
T = 1_795_000_000  # a Unix time in 2026
BODY = json.dumps({"id": "evt_1", "type": "subscription.revoked", "created": T,
                   "subject": "sub_ada", "data": {"status": "revoked"}},
                  separators=(",", ":"), sort_keys=True).encode()


def test_a_delivery_signed_by_the_vault_verifies_into_a_typed_event() -> None:
    header = signature_header(SECRET, T, BODY)  # exactly what the vault sends
    event = webhooks.verify(BODY, header, SECRET, now=T + 10)
    assert isinstance(event, Event)
    assert (event.id, event.type, event.subject) == ("evt_1", "subscription.revoked", "sub_ada")
    assert event.created == datetime.fromtimestamp(T, UTC) and event.data == {
        "status": "revoked"}
    with pytest.raises(AttributeError):
        event.subject = "sub_other"  # type: ignore[misc]
    # The same, from the SDK's helper, from a str body and with the clock as a datetime.
    assert webhooks.construct_test_header(BODY, SECRET, timestamp=T) == header
    assert webhooks.verify(BODY.decode(), header, SECRET,
                           now=datetime.fromtimestamp(T, UTC)) == event
    fresh = webhooks.construct_test_header(BODY, SECRET)
    assert webhooks.verify(BODY, fresh, SECRET).id == "evt_1"  # default: now


@pytest.mark.parametrize(("body", "secret", "reason"), [
    (BODY.replace(b"revoked", b"granted", 1), SECRET, "does not match"),
    (BODY + b" ", SECRET, "does not match"),
    (BODY, "whsec_" + "cd" * 32, "does not match"),
])
def test_a_tampered_body_or_another_secret_is_refused(body: bytes, secret: str,
                                                      reason: str) -> None:
    with pytest.raises(SignatureVerificationError, match=reason):
        webhooks.verify(body, signature_header(SECRET, T, BODY), secret, now=T)


def test_stale_and_future_timestamps_are_refused_beyond_the_tolerance() -> None:
    header = signature_header(SECRET, T, BODY)
    assert webhooks.verify(BODY, header, SECRET, now=T + 300).id == "evt_1"
    assert webhooks.verify(BODY, header, SECRET, now=T - 300).id == "evt_1"
    with pytest.raises(SignatureVerificationError, match="too old"):
        webhooks.verify(BODY, header, SECRET, now=T + 301)
    with pytest.raises(SignatureVerificationError, match="future"):
        webhooks.verify(BODY, header, SECRET, now=T - 301)
    with pytest.raises(SignatureVerificationError, match="too old"):
        webhooks.verify(BODY, header, SECRET, tolerance=5, now=T + 6)
    # A replay with a fresh timestamp but the old signature does not verify either.
    replayed = header.replace(f"t={T}", f"t={T + 3600}")
    with pytest.raises(SignatureVerificationError, match="does not match"):
        webhooks.verify(BODY, replayed, SECRET, now=T + 3600)


GOOD = signature_header(SECRET, T, BODY).split("v1=")[1]


@pytest.mark.parametrize("header", [
    None,
    "",
    "   ",
    "garbage",
    f"v1={GOOD}",
    f"t={T}",
    f"t={T},v1=",
    f"t=,v1={GOOD}",
    f"t={T}x,v1={GOOD}",
    f"t=-{T},v1={GOOD}",
    f"t=\uff11\uff12\uff13,v1={GOOD}",  # full-width digits
    f"t={T},t={T},v1={GOOD}",
    f"t={T};v1={GOOD}",
    f"t={T},v1={GOOD}," + "x" * 5000,
    f"t={T},v0={GOOD}",
])
def test_malformed_headers_are_refused(header: str | None) -> None:
    with pytest.raises(SignatureVerificationError):
        webhooks.verify(BODY, header, SECRET, now=T)


def test_rotation_any_v1_may_match_and_other_schemes_are_ignored() -> None:
    other = signature_header("whsec_" + "cd" * 32, T, BODY).split("v1=")[1]
    header = f"t={T}, v1={other}, v1={GOOD.upper()}, v9=future-scheme"
    assert webhooks.verify(BODY, header, SECRET, now=T).id == "evt_1"


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", spy)
    with pytest.raises(SignatureVerificationError):
        webhooks.verify(BODY, f"t={T},v1={'0' * 64}", SECRET, now=T)
    assert calls and calls[0][1] == b"0" * 64


def test_misuse_is_a_programming_error_and_an_authentic_non_event_is_not_an_event() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        webhooks.verify(BODY, signature_header(SECRET, T, BODY), "client-secret", now=T)
    with pytest.raises(ValueError, match="whsec_"):
        webhooks.construct_test_header(BODY, "not-a-webhook-secret")
    with pytest.raises(ValueError, match="tolerance"):
        webhooks.verify(BODY, signature_header(SECRET, T, BODY), SECRET, tolerance=-1, now=T)
    with pytest.raises(TypeError):
        webhooks.verify({"id": 1}, "t=1,v1=00", SECRET)  # type: ignore[arg-type]
    for body in (b"not json", b"[1, 2]", b'{"id": "evt", "type": "x"}'):
        with pytest.raises(VaultError, match="malformed") as error:
            webhooks.verify(body, signature_header(SECRET, T, body), SECRET, now=T)
        assert not isinstance(error.value, SignatureVerificationError)
