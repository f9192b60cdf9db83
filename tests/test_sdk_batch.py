"""``reachable``: a campaign over a generator of subjects, streamed back in input order.

The SDK must read its input lazily (a list of millions is never built), ask
in batches of at most 10,000, and hand results back as they arrive, so a
campaign's memory does not grow with its size.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest
from oauth_helpers import LiveVault
from prefvault_sdk import BatchResult, VaultError
from sdk_helpers import Customer, FlakyTransport, client_for, register_shop, revoke, subscribe

TOTAL = 25_000


def _campaign(real: list[Customer], pulled: list[int]) -> Iterator[str]:
    """Unknown subjects with the real ones spread through; counts what was read."""
    for i in range(TOTAL):
        pulled[0] += 1
        yield real[i % len(real)].subject if i % 997 == 0 else f"sub_unknown_{i:06d}"


def test_reachable_streams_25000_subjects_in_input_order(live_vault: LiveVault) -> None:
    shop = register_shop(live_vault)
    real = [subscribe(live_vault, shop, f"c{i}@example.org",
                      scope="contact:email:offers" if i != 1 else "contact:sms:offers")
            for i in range(3)]
    revoke(live_vault, real[2])
    expected_reason = {real[0].subject: "allowed", real[1].subject: "not_granted",
                       real[2].subject: "revoked"}
    pulled = [0]
    progress: list[int] = []
    transport = FlakyTransport()
    with client_for(live_vault, shop, transport=transport) as vault:
        results = vault.reachable(_campaign(real, pulled), "email", "offers",
                                  on_progress=progress.append)
        assert pulled[0] == 0  # nothing is read (or asked) before the first result is wanted

        count = 0
        allowed = 0
        for i, result in enumerate(results):
            if i == 0:
                # The first answer arrives after one batch: the rest of the input is unread.
                assert pulled[0] == 10_000 and progress == [10_000]
            assert isinstance(result, BatchResult)
            subject = real[i % 3].subject if i % 997 == 0 else f"sub_unknown_{i:06d}"
            assert result.subject == subject
            assert result.reason == expected_reason.get(subject, "unknown_subject")
            assert bool(result) is (result.reason == "allowed")
            allowed += bool(result)
            count += 1
    assert count == TOTAL and pulled[0] == TOTAL
    assert allowed == len(range(0, TOTAL, 997 * 3))
    assert progress == [10_000, 20_000, 25_000]
    assert transport.count("/api/v1/decisions/batch") == 3


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reachable_memory_stays_bounded_by_the_batch_not_the_campaign(
        live_vault: LiveVault) -> None:
    """Memory held while streaming is a batch's worth, far below all results held at once.

    The vault runs in this process, so the consumer's side is sampled: traced
    memory between results, when the server thread is idle.
    """
    shop = register_shop(live_vault)
    real = [subscribe(live_vault, shop, "c0@example.org")]
    with client_for(live_vault, shop) as vault:
        vault.may_contact(real[0].subject, "email", "offers")  # discovery and token first
        gc.collect()
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            held = 0
            count = 0
            for i, _ in enumerate(vault.reachable(_campaign(real, [0]), "email", "offers",
                                                  batch_size=2_500)):
                count += 1
                if i % 250 == 0:
                    held = max(held, tracemalloc.get_traced_memory()[0] - baseline)
            # What holding every result would take: the same answers, all kept.
            answer = json.dumps({"results": [
                {"subject": f"sub_unknown_{i:06d}", "allowed": False,
                 "reason": "unknown_subject", "next_allowed_at": None} for i in range(TOTAL)]})
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            everything = [BatchResult.from_json(item) for item in json.loads(answer)["results"]]
            all_held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert count == len(everything) == TOTAL
    assert held < all_held / 4, (held, all_held)


def _reorder(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    """Swap the first two results of every batch answer, as a buggy proxy might."""
    if not request.url.path.endswith("/decisions/batch"):
        return response
    doc = json.loads(response.content)
    doc["results"][:2] = doc["results"][1::-1]
    return httpx.Response(200, json=doc, request=request)


def _truncate(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    if not request.url.path.endswith("/decisions/batch"):
        return response
    doc = json.loads(response.content)
    return httpx.Response(200, json={"results": doc["results"][:-1]}, request=request)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_answer_that_does_not_line_up_with_the_question_is_refused(
        live_vault: LiveVault) -> None:
    """Attributing one person's answer to another would be a consent breach: refuse it."""
    shop = register_shop(live_vault)
    ada = subscribe(live_vault, shop, "ada@example.org")
    campaign = [ada.subject, "sub_unknown_1", "sub_unknown_2"]
    for rewrite, message in ((_reorder, "out of order"), (_truncate, "does not match")):
        with client_for(live_vault, shop, transport=FlakyTransport(rewrite=rewrite)) as vault:
            results = vault.reachable(campaign, "email", "offers")
            with pytest.raises(VaultError, match=message):
                next(results)
    with client_for(live_vault, shop) as vault:
        assert [r.allowed for r in vault.reachable(campaign, "email", "offers")] == [
            True, False, False]
        with pytest.raises(ValueError, match="batch_size"):
            vault.reachable(campaign, "email", "offers", batch_size=10_001)
        with pytest.raises(TypeError):
            vault.reachable(ada.subject, "email", "offers")
        assert list(vault.reachable(iter(()), "email", "offers")) == []
