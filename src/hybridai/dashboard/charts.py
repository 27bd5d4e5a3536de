"""Charts as inline SVG, drawn on the server: no chart library, no script, no CDN."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from markupsafe import Markup

WIDTH = 560
HEIGHT = 140
PAD = 28


def buckets(times: Iterable[float], now: float, span_s: float, count: int) -> list[int]:
    """How many of ``times`` fall in each of ``count`` equal slices of the last ``span_s``."""
    width = span_s / count
    counts = [0] * count
    for ts in times:
        age = now - ts
        if 0 <= age < span_s:
            counts[count - 1 - int(age // width)] += 1
    return counts


def bars(values: Sequence[float], title: str, left: str, right: str, unit: str = "") -> Markup:
    """A bar chart of ``values`` left (oldest) to right (newest), labelled by its ends."""
    top = max(values, default=0) or 1
    inner_w = WIDTH - 2 * PAD
    inner_h = HEIGHT - 2 * PAD
    step = inner_w / max(len(values), 1)
    rects = []
    for i, value in enumerate(values):
        h = inner_h * value / top
        x = PAD + i * step
        y = PAD + inner_h - h
        label = f"{value:g}{unit}"
        rects.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}">'
            f"<title>{escape(label)}</title></rect>"
        )
    base = PAD + inner_h
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">'
        f'<text class="title" x="{PAD}" y="16">{escape(title)}</text>'
        f'<text class="axis" x="{WIDTH - PAD}" y="16" text-anchor="end">max '
        f"{escape(f'{top:g}{unit}')}</text>"
        f'<line x1="{PAD}" y1="{base}" x2="{WIDTH - PAD}" y2="{base}" class="base"/>'
        + "".join(rects)
        + f'<text class="axis" x="{PAD}" y="{HEIGHT - 8}">{escape(left)}</text>'
        f'<text class="axis" x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end">'
        f"{escape(right)}</text></svg>"
    )


def share(parts: Sequence[tuple[str, float]], title: str) -> Markup:
    """One horizontal bar split by ``parts`` (label, amount): e.g. edge vs cloud answers."""
    total = sum(amount for _, amount in parts) or 1
    inner_w = WIDTH - 2 * PAD
    x = float(PAD)
    segments = []
    legend = []
    for i, (label, amount) in enumerate(parts):
        w = inner_w * amount / total
        pct = 100 * amount / total
        segments.append(
            f'<rect class="s{i}" x="{x:.1f}" y="30" width="{w:.1f}" height="22">'
            f"<title>{escape(label)}: {pct:.0f}%</title></rect>"
        )
        legend.append(
            f'<text class="axis" x="{PAD + i * 180}" y="72">'
            f'<tspan class="k{i}">&#9632;</tspan> {escape(label)} {pct:.0f}% '
            f"({amount:g})</text>"
        )
        x += w
    return Markup(
        f'<svg class="chart share" viewBox="0 0 {WIDTH} 84" role="img" '
        f'aria-label="{escape(title)}">'
        f'<text class="title" x="{PAD}" y="16">{escape(title)}</text>'
        + "".join(segments)
        + "".join(legend)
        + "</svg>"
    )
