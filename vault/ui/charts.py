"""Small charts drawn on the server as SVG: no script, no chart library, no external font.

A chart is a pure function of plain numbers and already-translated words, so
it can be tested without an app. The SVG scales with its ``viewBox`` (the
page's CSS gives it ``width: 100%``), carries its text alternative in
``<title>`` and ``<desc>`` (``role="img"``), and colours bars with
presentation attributes, which a strict CSP allows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

#: the drawing area, in viewBox units; about one unit per CSS pixel on a phone
WIDTH = 320
HEIGHT = 180
_LEFT, _RIGHT, _TOP, _BOTTOM = 26, 10, 30, 22

BAR_FILL = "#0b5fa5"
OVER_FILL = "#a4161a"
CAP_STROKE = "#1b1f24"
TEXT_FILL = "#1b1f24"
GRID_STROKE = "#767676"

_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Bar:
    """One week (or any period): its label, its count, and whether it broke a limit.

    ``over`` marks a bar as over a limit even when its value is under the
    cap line (a limit on one kind of contact can be broken while the total
    stays low); a value above the cap line is always over.
    """

    label: str
    value: int
    over: bool = False


def is_over(bar: Bar, cap: int | None) -> bool:
    return bar.over or (cap is not None and bar.value > cap)


def _scale_top(values: Sequence[int], cap: int | None) -> int:
    """The value at the top of the plot: the largest of the bars and the cap, rounded up."""
    top = max([*values, cap or 0, 1])
    if top <= 5:
        return top
    step = 2 if top <= 10 else 5 if top <= 50 else 10 ** (len(str(top)) - 1)
    return -(-top // step) * step


def _number(value: float) -> str:
    """A coordinate with at most one decimal, without a trailing ``.0``."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def weekly_chart(
    bars: Sequence[Bar],
    *,
    cap: int | None,
    chart_id: str,
    title: str,
    description: str,
    cap_label: str | None = None,
) -> Markup:
    """A bar chart of ``bars`` with an optional dashed ``cap`` line; bars over it in red.

    ``title`` and ``description`` are the chart's text alternative (read
    instead of the picture); ``cap_label`` is printed beside the cap line.
    Every bar's value is printed above it, so no reading depends on colour.
    """
    base = _SAFE_ID.sub("-", chart_id) or "chart"
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM
    bottom = _TOP + plot_h
    top_value = _scale_top([b.value for b in bars], cap)

    def y_of(value: float) -> float:
        return bottom - plot_h * value / top_value

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" class="chart" role="img" '
        f'aria-labelledby="{base}-title {base}-desc" font-family="system-ui, sans-serif">',
        f'<title id="{base}-title">{escape(title)}</title>',
        f'<desc id="{base}-desc">{escape(description)}</desc>',
        # the axis: zero and the top value
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{WIDTH - _RIGHT}" y2="{bottom}" '
        f'stroke="{GRID_STROKE}" stroke-width="1"/>',
        f'<text x="{_LEFT - 4}" y="{bottom}" font-size="10" text-anchor="end" '
        f'fill="{TEXT_FILL}">0</text>',
        f'<text x="{_LEFT - 4}" y="{_number(y_of(top_value) + 4)}" font-size="10" '
        f'text-anchor="end" fill="{TEXT_FILL}">{top_value}</text>',
    ]
    count = len(bars)
    slot = plot_w / count if count else plot_w
    # Labels of every week fit up to six bars; beyond that every other one,
    # counted from the newest, so the current week is always named.
    label_every = 1 if count <= 6 else 2
    for index, bar in enumerate(bars):
        over = is_over(bar, cap)
        x = _LEFT + index * slot + slot * 0.15
        width = slot * 0.7
        y = y_of(bar.value)
        centre = _number(x + width / 2)
        parts.append(
            f'<rect class="bar{" bar-over" if over else ""}" x="{_number(x)}" '
            f'y="{_number(y)}" width="{_number(width)}" height="{_number(bottom - y)}" '
            f'fill="{OVER_FILL if over else BAR_FILL}"/>')
        weight = ' font-weight="700"' if over else ""
        parts.append(
            f'<text x="{centre}" y="{_number(y - 3)}" font-size="11" text-anchor="middle" '
            f'fill="{OVER_FILL if over else TEXT_FILL}"{weight}>{bar.value}</text>')
        if (count - 1 - index) % label_every == 0:
            parts.append(
                f'<text x="{centre}" y="{bottom + 15}" font-size="11" text-anchor="middle" '
                f'fill="{TEXT_FILL}">{escape(bar.label)}</text>')
    if cap is not None:
        cap_y = _number(y_of(cap))
        parts.append(
            f'<line class="cap" x1="{_LEFT}" y1="{cap_y}" x2="{WIDTH - _RIGHT}" y2="{cap_y}" '
            f'stroke="{CAP_STROKE}" stroke-width="1.5" stroke-dasharray="5 3"/>')
        if cap_label:
            # the legend sits above the plot, where no bar or value can cover it
            parts.append(
                f'<line x1="{_LEFT}" y1="9" x2="{_LEFT + 18}" y2="9" stroke="{CAP_STROKE}" '
                f'stroke-width="1.5" stroke-dasharray="5 3"/>')
            parts.append(
                f'<text x="{_LEFT + 22}" y="13" font-size="11" fill="{TEXT_FILL}">'
                f'{escape(cap_label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 -- every text above is escaped
