"""The Activity page: the person's timeline, the merchant filter and the weekly charts.

A second person with their own shops and contacts is always present: nothing
of theirs may show on the first person's page, whatever the filter asks for.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from api_helpers import (
    ApiMerchant,
    Subscribed,
    Vault,
    register_merchant,
    revoke,
    set_global_rules,
    set_permission,
    subscribe,
)
from flask import Flask
from flask.testing import FlaskClient
from ui_helpers import Browser, logged_in

from vault.clock import FixedClock
from vault.extensions import Runtime
from vault.services import activity
from vault.services.contacting import ContactReport, report_contact
from vault.ui.charts import BAR_FILL, OVER_FILL, Bar, weekly_chart

SVG = "{http://www.w3.org/2000/svg}"
_SVG_BLOCK = re.compile(r"<svg\b.*?</svg>", re.S)


@pytest.fixture
def vault(app: Flask, client: FlaskClient, runtime: Runtime, clock: FixedClock) -> Vault:
    return Vault(app, client, runtime, clock)


def report(vault: Vault, merchant: ApiMerchant, sub: Subscribed, channel: str = "email",
           purpose: str = "offers", at: datetime | None = None) -> ContactReport:
    """The merchant reports a contact it made (judged by the vault at that moment)."""
    rt = vault.runtime
    with rt.database.write() as session:
        return report_contact(session, merchant_id=merchant.id, subject=sub.subject,
                              channel=channel, purpose=purpose, decision_id=None, at=at,
                              data_keys=rt.data_keys, clock=rt.clock)


def entries(html: str) -> list[str]:
    """The timeline entries of a page, as plain text."""
    found = re.findall(
        r'<li class="timeline-entry[^"]*">(.*?)</li>\s*(?=<li class="timeline|</ol>)', html, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", item).split()) for item in found]


def parse_svg(text: str) -> ET.Element:
    """Parse an SVG the vault drew itself (so the standard parser is safe here)."""
    return ET.fromstring(text)  # noqa: S314


def svgs(html: str) -> list[ET.Element]:
    return [parse_svg(block) for block in _SVG_BLOCK.findall(html)]


@pytest.fixture
def two_people(vault: Vault) -> tuple[Browser, Subscribed, ApiMerchant, Subscribed, ApiMerchant]:
    """Anna (logged in) with Book Shop; Bram with Book Shop and Secret Garden, and contacts."""
    rt = vault.runtime
    book = register_merchant(rt, "Book Shop")
    garden = register_merchant(rt, "Secret Garden")
    anna = logged_in(vault)
    anna_sub = subscribe(rt, book, scope="contact:email:offers profile:email",
                         person_id=anna.person_id)
    bram_book = subscribe(rt, book, scope="contact:phone:service")
    bram_garden = subscribe(rt, garden, scope="contact:sms:surveys",
                            person_id=bram_book.person_id)
    report(vault, book, bram_book, "phone", "service")
    report(vault, garden, bram_garden, "sms", "surveys")
    report(vault, book, bram_book, "post", "partner_offers")  # Bram's violation
    return anna, anna_sub, book, bram_book, garden


# -- the timeline ---------------------------------------------------------------------------


def test_the_timeline_tells_the_persons_own_story_newest_first(vault: Vault, two_people) -> None:  # type: ignore[no-untyped-def]
    anna, anna_sub, book, _bram, _garden = two_people
    vault.clock.advance(timedelta(minutes=2))
    set_permission(vault.runtime, anna_sub, "email", "offers", max_per_week=2)
    vault.clock.advance(timedelta(minutes=2))
    report(vault, book, anna_sub)
    vault.clock.advance(timedelta(minutes=2))
    set_global_rules(vault.runtime, anna.person_id,
                     {"channels_off": ["phone"], "quiet_hours": {"start": "21:00", "end": "09:00"}})
    vault.clock.advance(timedelta(minutes=2))
    revoke(vault.runtime, anna_sub)

    response = anna.get("/activity")

    assert response.status_code == 200
    lines = entries(response.text)
    assert len(lines) == 6, lines
    assert "You revoked Book Shop" in lines[0]
    assert "You changed your rules for every shop" in lines[1]
    assert "Switched off for every shop: phone call" in lines[1]
    assert "Quiet hours: from 21:00 to 09:00" in lines[1]
    assert "Book Shop contacted you by e-mail with offers and newsletters" in lines[2]
    assert "Allowed at that moment" in lines[2]
    assert "You changed how Book Shop may reach you" in lines[3]
    assert "At most 2 times a week" in lines[3]
    assert "You connected Book Shop" in lines[4]
    assert "See your e-mail address" in lines[4]
    assert "You opened your vault" in lines[5]
    assert '<time datetime="' in response.text


def test_another_persons_shops_and_contacts_never_appear(vault: Vault, two_people) -> None:  # type: ignore[no-untyped-def]
    anna, _anna_sub, _book, bram, _garden = two_people

    html = anna.get("/activity").text

    assert "Secret Garden" not in html
    assert "phone call" not in html and "text message" not in html
    assert "letter by post" not in html
    assert bram.subject not in html and bram.subscription_id not in html
    assert "Not allowed at that moment" not in html
    assert len(entries(html)) == 2  # Anna's sign-up and her grant to Book Shop


def test_a_contact_that_was_not_allowed_is_flagged_with_the_reason(vault: Vault,
                                                                   two_people) -> None:  # type: ignore[no-untyped-def]
    anna, anna_sub, book, _bram, _garden = two_people
    vault.clock.advance(timedelta(minutes=5))
    report(vault, book, anna_sub, "sms", "offers")  # never granted

    html = anna.get("/activity").text

    (newest, *_rest) = entries(html)
    assert "Book Shop contacted you by text message (SMS) with offers and newsletters" in newest
    assert "Not allowed at that moment" in newest
    assert "You had not allowed this." in newest
    assert html.count('class="timeline-entry timeline-contact timeline-violation"') == 1


def test_a_contact_over_the_weekly_limit_is_flagged(vault: Vault, two_people) -> None:  # type: ignore[no-untyped-def]
    anna, anna_sub, book, _bram, _garden = two_people
    set_permission(vault.runtime, anna_sub, "email", "offers", max_per_week=1)
    report(vault, book, anna_sub)
    report(vault, book, anna_sub)

    lines = entries(anna.get("/activity").text)

    flagged = [line for line in lines if "Not allowed at that moment" in line]
    assert len(flagged) == 1
    assert "more often than the weekly limit you set" in flagged[0]


def test_the_merchant_filter_shows_one_shop_by_subscription_or_merchant_id(
        vault: Vault, two_people) -> None:  # type: ignore[no-untyped-def]
    anna, anna_sub, book, _bram, _garden = two_people
    other = register_merchant(vault.runtime, "Tea House")
    tea = subscribe(vault.runtime, other, scope="contact:email:order_updates",
                    person_id=anna.person_id)
    report(vault, other, tea, "email", "order_updates")
    report(vault, book, anna_sub)

    everything = entries(anna.get("/activity").text)
    by_subscription = anna.get(f"/activity?merchant={anna_sub.subscription_id}")
    by_merchant = anna.get(f"/activity?merchant={book.id}")

    assert len(everything) == 5
    assert by_subscription.status_code == by_merchant.status_code == 200
    assert entries(by_subscription.text) == entries(by_merchant.text)
    lines = entries(by_subscription.text)
    assert len(lines) == 2 and all("Book Shop" in line for line in lines)
    assert "Tea House" not in " ".join(lines)
    assert f'<option value="{anna_sub.subscription_id}" selected>' in by_subscription.text
    assert "What happened with Book Shop" in by_subscription.text
    # the select offers the person's own shops only
    assert 'name="merchant"' in by_subscription.text and "Secret Garden" not in everything


@pytest.mark.parametrize("which", ["bram_subscription", "bram_merchant", "garbage"])
def test_the_filter_cannot_reach_another_persons_data(vault: Vault, two_people,  # type: ignore[no-untyped-def]
                                                      which: str) -> None:
    anna, _anna_sub, _book, bram, garden = two_people
    value = {"bram_subscription": bram.subscription_id, "bram_merchant": garden.id,
             "garbage": "<script>x</script>"}[which]

    response = anna.get("/activity", query_string={"merchant": value},
                        headers={"Accept": "text/html"})

    assert response.status_code == 404
    assert "Secret Garden" not in response.text
    assert "<script>x" not in response.text


def test_the_activity_page_needs_a_login(vault: Vault) -> None:
    response = vault.client.get("/activity")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_a_silly_page_number_is_not_found(vault: Vault) -> None:
    anna = logged_in(vault)
    assert anna.get("/activity?page=0", headers={"Accept": "text/html"}).status_code == 404
    assert anna.get("/activity?page=x", headers={"Accept": "text/html"}).status_code == 404
    assert anna.get("/activity?page=1").status_code == 200


def test_the_timeline_is_paginated(runtime: Runtime, vault: Vault) -> None:
    book = register_merchant(runtime, "Book Shop")
    sub = subscribe(runtime, book, scope="contact:email:offers")
    for _ in range(4):
        vault.clock.advance(timedelta(minutes=1))
        report(vault, book, sub)
    with runtime.database.read() as session:
        first = activity.timeline(session, sub.person_id, per_page=4)
        second = activity.timeline(session, sub.person_id, page=2, per_page=4)
    # four contacts, the grant and the sign-up
    assert [e.kind for e in first.entries] == ["contact"] * 4
    assert first.has_more and not second.has_more
    assert [e.kind for e in second.entries] == ["change", "change"]
    occurred = [e.occurred_at for e in first.entries + second.entries]
    assert occurred == sorted(occurred, reverse=True)


def test_the_page_links_to_older_entries(vault: Vault) -> None:
    rt = vault.runtime
    book = register_merchant(rt, "Book Shop")
    anna = logged_in(vault)
    sub = subscribe(rt, book, scope="contact:email:offers", person_id=anna.person_id)
    vault.clock.advance(timedelta(minutes=1))
    for _ in range(activity.PER_PAGE):
        report(vault, book, sub)

    first = anna.get("/activity").text
    second = anna.get("/activity?page=2").text

    assert len(entries(first)) == activity.PER_PAGE
    assert 'href="/activity?page=2"' in first
    assert len(entries(second)) == 2
    assert "You opened your vault" in entries(second)[-1]
    assert 'href="/activity"' in second  # back to the newest


# -- weekly counts and the chart on the page ------------------------------------------------


def test_weekly_counts_use_calendar_weeks_in_the_persons_time_zone(runtime: Runtime,
                                                                   vault: Vault) -> None:
    book = register_merchant(runtime, "Book Shop")
    sub = subscribe(runtime, book, scope="contact:email:offers")
    # Sunday 22 November 23:30 UTC is already Monday 00:30 in Amsterdam.
    report(vault, book, sub, at=datetime(2026, 11, 22, 23, 30, tzinfo=UTC))
    report(vault, book, sub, at=datetime(2026, 11, 22, 22, 30, tzinfo=UTC))
    report(vault, book, sub, at=datetime(2026, 11, 2, 12, 0, tzinfo=UTC))
    with runtime.database.read() as session:
        amsterdam = activity.weekly_contacts(session, sub.person_id, now=vault.clock.now(),
                                             time_zone="Europe/Amsterdam",
                                             data_keys=runtime.data_keys)
        utc = activity.weekly_contacts(session, sub.person_id, now=vault.clock.now(),
                                       time_zone="UTC", data_keys=runtime.data_keys)
    (weeks,) = amsterdam
    assert len(weeks.weeks) == activity.CHART_WEEKS
    assert weeks.weeks[-1].start.isoformat() == "2026-11-23"
    assert [w.contacts for w in weeks.weeks][-4:] == [1, 0, 1, 1]
    assert [w.contacts for w in utc[0].weeks][-4:] == [1, 0, 2, 0]
    assert weeks.cap is None and weeks.total == 3


def test_a_week_over_the_cap_is_counted_against_the_limit(runtime: Runtime,
                                                          vault: Vault) -> None:
    book = register_merchant(runtime, "Book Shop")
    sub = subscribe(runtime, book, scope="contact:email:offers contact:sms:offers")
    set_permission(runtime, sub, "email", "offers", max_per_week=1)
    set_permission(runtime, sub, "sms", "offers", max_per_week=3)
    for _ in range(2):
        report(vault, book, sub, "email", "offers")
    with runtime.database.read() as session:
        (weeks,) = activity.weekly_contacts(session, sub.person_id, now=vault.clock.now(),
                                            time_zone="Europe/Amsterdam",
                                            data_keys=runtime.data_keys)
    assert weeks.cap == 4  # the two limits together
    assert weeks.caps == {("email", "offers"): 1, ("sms", "offers"): 3}
    # two e-mails break the e-mail limit even though the total stays under four
    assert weeks.weeks[-1].contacts == 2 and weeks.weeks[-1].over_cap
    assert weeks.weeks[-1].violations == 1
    assert weeks.weeks_over == 1


def test_the_page_draws_one_chart_per_shop_with_the_cap_line(vault: Vault, two_people) -> None:  # type: ignore[no-untyped-def]
    anna, anna_sub, book, _bram, _garden = two_people
    set_permission(vault.runtime, anna_sub, "email", "offers", max_per_week=2)
    for week in (3, 1):
        vault.clock.set(datetime(2026, 11, 23, 10, tzinfo=UTC) - timedelta(weeks=week))
        for _ in range(3):
            report(vault, book, anna_sub)
    vault.clock.set(datetime(2026, 11, 23, 10, tzinfo=UTC))
    report(vault, book, anna_sub)

    html = anna.get("/activity").text

    (chart,) = svgs(html)
    bars = chart.findall(f"{SVG}rect")
    assert len(bars) == activity.CHART_WEEKS
    assert [b.get("class") for b in bars].count("bar bar-over") == 2
    assert [b.get("fill") for b in bars].count(OVER_FILL) == 2
    assert chart.findall(f"{SVG}line[@class='cap']")
    assert chart.get("role") == "img"
    assert "Contacts per week from Book Shop" in (chart.findtext(f"{SVG}title") or "")
    assert "2 weeks over a limit you set" in (chart.findtext(f"{SVG}desc") or "")
    assert "Your limit: at most 2 a week." in html
    assert html.count('class="activity-over"') == 2  # the table beside the chart
    assert "Secret Garden" not in html


def test_a_person_without_shops_sees_no_chart(vault: Vault) -> None:
    anna = logged_in(vault)
    html = anna.get("/activity").text
    assert "<svg" not in html
    assert "No shop is subscribed to you yet" in html
    assert 'name="merchant"' not in html


def test_the_activity_page_is_in_dutch(vault: Vault, two_people) -> None:  # type: ignore[no-untyped-def]
    _anna, _sub, book, _bram, _garden = two_people
    piet = logged_in(vault, profile={"language": "nl"})
    sub = subscribe(vault.runtime, book, scope="contact:email:offers", person_id=piet.person_id)
    set_permission(vault.runtime, sub, "email", "offers", max_per_week=1)
    report(vault, book, sub)
    report(vault, book, sub, "sms", "surveys")

    response = piet.get("/activity")

    html = response.text
    assert '<html lang="nl">' in html
    assert "<h1>Activiteit</h1>" in html
    assert "Contacten per week" in html
    assert "Niet toegestaan op dat moment" in html
    assert "Je had dit niet toegestaan." in html
    assert "Je hebt je kluis geopend." in html
    assert "Book Shop heeft je benaderd per e-mail" in html
    (chart,) = svgs(html)
    assert "Contacten per week van Book Shop" in (chart.findtext(f"{SVG}title") or "")
    for english in ("Contacts per week", "Not allowed at that moment", "You opened"):
        assert english not in html


# -- the chart as a pure function -----------------------------------------------------------


def _chart(bars: list[Bar], cap: int | None, **words: str) -> ET.Element:
    svg = weekly_chart(bars, cap=cap, chart_id="c1", title=words.get("title", "Per week"),
                       description=words.get("description", "Numbers"),
                       cap_label=words.get("cap_label"))
    return parse_svg(str(svg))


def test_the_chart_draws_one_bar_per_week_with_its_value() -> None:
    values = [0, 1, 4, 2, 0, 0, 3, 1]
    chart = _chart([Bar(f"w{i}", v) for i, v in enumerate(values)], None)

    rects = chart.findall(f"{SVG}rect")
    assert len(rects) == len(values)
    heights = [float(r.get("height") or "0") for r in rects]
    assert heights[values.index(4)] == max(heights) and heights[0] == 0
    assert heights[1] * 2 == pytest.approx(heights[3], abs=0.2)
    texts = [t.text for t in chart.findall(f"{SVG}text")]
    for value in values:
        assert str(value) in texts
    assert not chart.findall(f"{SVG}line[@class='cap']")
    assert all(r.get("fill") == BAR_FILL for r in rects)


def test_the_cap_is_a_line_and_weeks_over_it_are_highlighted() -> None:
    chart = _chart([Bar("a", 1), Bar("b", 3), Bar("c", 2), Bar("d", 5)], 2,
                   cap_label="limit: 2 a week")

    (cap,) = chart.findall(f"{SVG}line[@class='cap']")
    rects = chart.findall(f"{SVG}rect")
    assert [r.get("class") for r in rects] == ["bar", "bar bar-over", "bar", "bar bar-over"]
    assert [r.get("fill") for r in rects] == [BAR_FILL, OVER_FILL, BAR_FILL, OVER_FILL]
    # the line sits at the height of a bar of value 2
    bar_c = rects[2]
    assert float(cap.get("y1") or 0) == pytest.approx(float(bar_c.get("y") or 0), abs=0.2)
    assert cap.get("y1") == cap.get("y2")
    assert "limit: 2 a week" in [t.text for t in chart.findall(f"{SVG}text")]


def test_a_bar_can_be_over_a_limit_below_the_cap_line() -> None:
    chart = _chart([Bar("a", 1, over=True), Bar("b", 1)], 4)
    assert [r.get("class") for r in chart.findall(f"{SVG}rect")] == ["bar bar-over", "bar"]


def test_the_chart_has_a_text_alternative_and_scales() -> None:
    chart = _chart([Bar("17 Nov", 2)], 3, title="Contacts from Shop & Co",
                   description="One week: 2 contacts.")

    assert chart.tag == f"{SVG}svg"
    assert chart.get("role") == "img"
    assert chart.get("aria-labelledby") == "c1-title c1-desc"
    assert chart.find(f"{SVG}title").get("id") == "c1-title"  # type: ignore[union-attr]
    assert chart.findtext(f"{SVG}title") == "Contacts from Shop & Co"
    assert chart.findtext(f"{SVG}desc") == "One week: 2 contacts."
    assert chart.get("viewBox") == "0 0 320 180"
    assert chart.get("width") == "100%" and chart.get("height") is None
    assert "style" not in str(weekly_chart([Bar("a", 1)], cap=None, chart_id="x", title="t",
                                           description="d"))


def test_the_chart_escapes_every_word() -> None:
    svg = str(weekly_chart([Bar("<b>&", 1)], cap=1, chart_id='"><script>', title="<script>",
                           description="a & b", cap_label="</svg>"))
    chart = parse_svg(svg)  # still one well-formed SVG
    assert "<script>" not in svg and "</svg>" not in svg[:-6]
    assert chart.findtext(f"{SVG}title") == "<script>"
    assert chart.get("aria-labelledby") == "---script--title ---script--desc"


def test_an_empty_chart_is_still_valid() -> None:
    chart = _chart([], None)
    assert chart.findall(f"{SVG}rect") == []
    assert chart.findtext(f"{SVG}title") == "Per week"


def test_many_weeks_label_every_other_week_ending_with_the_newest() -> None:
    chart = _chart([Bar(f"w{i}", 1) for i in range(10)], None)
    labels = [t.text for t in chart.findall(f"{SVG}text") if (t.text or "").startswith("w")]
    assert labels == ["w1", "w3", "w5", "w7", "w9"]


def test_an_unknown_person_has_no_activity(runtime: Runtime) -> None:
    with runtime.database.read() as session:
        assert activity.timeline(session, "nobody").entries == []
        assert activity.weekly_contacts(session, "nobody", now=datetime.now(UTC),
                                        time_zone="UTC", data_keys=runtime.data_keys) == []
