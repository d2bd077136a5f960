"""Plain SVG plots for the HTML report and the narrative: deterministic text, no dependencies.

Every piece of text that reaches the SVG goes through `html.escape`, so a score or slice name
that contains markup renders as text. Output is byte-for-byte stable for the same input (no
random ids, no timestamps), which keeps the report diffable and its tests exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

# colours used by both the HTML report and the plots (colour-blind safe pairs)
COLORS = {
    "improved": "#1a7f37",
    "regressed": "#c62828",
    "equivalent": "#1f5fbf",
    "inconclusive": "#6b6b6b",
    "pass": "#1a7f37",
    "fail": "#c62828",
    "baseline": "#5b7fa6",
    "candidate": "#e07b00",
    "axis": "#444444",
    "grid": "#e3e3e3",
    "delta": "#1a7f37",
    "margin": "#c25e00",
}
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\""


def esc(value: object) -> str:
    """Escape any value for HTML/SVG text or attribute context."""
    return escape("" if value is None else str(value), quote=True)


def fmt(value: float | None, digits: int = 3, *, signed: bool = False) -> str:
    """A number as the report prints it everywhere (so DOM text matches the JSON rounded)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    value = round(value, digits) or 0.0  # no "-0.000"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick positions covering [lo, hi] with steps of 1, 2 or 5 x 10^k."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(target - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    value = start
    while value <= hi + step * 1e-9:
        if value >= lo - step * 1e-9:
            ticks.append(round(value, 12))
        value += step
    return ticks


def _tick_label(value: float, ticks: Sequence[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = f"{step:.6f}".rstrip("0").split(".")[1]
    text = f"{value:.{len(decimals)}f}"
    return f"{0:.{len(decimals)}f}" if float(text) == 0 else text


@dataclass
class ForestItem:
    """One row of a forest plot: an estimate with its interval."""

    label: str
    estimate: float | None
    low: float | None
    high: float | None
    color: str = COLORS["inconclusive"]
    filled: bool = True
    note: str = ""          # printed in the right-hand column, e.g. "+0.120 [0.050, 0.190]"
    sublabel: str = ""      # smaller text under the label, e.g. "target · n=120"
    tooltip: str = ""


@dataclass
class RefLine:
    """A vertical reference line (zero, the minimum effect, the margin)."""

    x: float
    label: str
    color: str = COLORS["axis"]
    dash: str = ""


@dataclass
class Forest:
    items: list[ForestItem]
    refs: list[RefLine] = field(default_factory=list)
    title: str = ""
    x_label: str = "paired effect (candidate − baseline)"
    x_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class _Scale:
    """Data value -> x pixel over the plot area [x0, x1]."""

    lo: float
    hi: float
    x0: int
    x1: int

    def __call__(self, v: float) -> float:
        return self.x0 + (v - self.lo) / (self.hi - self.lo) * (self.x1 - self.x0)


def forest_svg(plot: Forest, *, width: int = 880) -> str:
    """A horizontal forest plot: one row per item, CI whiskers, reference lines labelled on top."""
    label_w, note_w, row_h = 200, 190, 34
    top = 58 if plot.title else 40
    plot_bottom = top + row_h * max(len(plot.items), 1)
    height = plot_bottom + 44
    lo, hi, ticks = _forest_range(plot)
    sx = _Scale(lo, hi, label_w, width - note_w)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot forest" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(plot.title or "forest plot")}" {FONT} '
           f'font-size="13">']
    out.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>')
    if plot.title:
        out.append(f'<text x="8" y="20" font-size="15" font-weight="600" fill="#222">{esc(plot.title)}</text>')
    out += _forest_axis(plot.x_label, sx, ticks, top, plot_bottom)
    out += _forest_refs(plot.refs, sx, top, plot_bottom)
    for i, item in enumerate(plot.items):
        out += _forest_row(item, sx, y=top + row_h * i, row_h=row_h, width=width, shaded=i % 2 == 1)
    if not plot.items:
        out.append(f'<text x="{(sx.x0 + sx.x1) / 2:.1f}" y="{top + row_h / 2 + 4}" text-anchor="middle" '
                   'fill="#666">no scores to plot</text>')
    out.append('</svg>')
    return "\n".join(out)


def _forest_range(plot: Forest) -> tuple[float, float, list[float]]:
    """The x range (given, or every estimate, bound and reference line padded by 8%) and its ticks."""
    values = [v for it in plot.items for v in (it.estimate, it.low, it.high) if _finite(v)]
    values += [r.x for r in plot.refs if _finite(r.x)]
    if plot.x_range:
        lo, hi = plot.x_range
    elif values:
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.08 or 0.05
        lo, hi = lo - pad, hi + pad
    else:
        lo, hi = -1.0, 1.0
    ticks = nice_ticks(lo, hi)
    return min(lo, ticks[0]), max(hi, ticks[-1]), ticks


def _forest_axis(x_label: str, sx: _Scale, ticks: list[float], top: int, plot_bottom: int) -> list[str]:
    out = []
    for t in ticks:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{plot_bottom}" stroke="{COLORS["grid"]}"/>')
        out.append(f'<text x="{x:.1f}" y="{plot_bottom + 16}" text-anchor="middle" fill="{COLORS["axis"]}" '
                   f'font-size="11">{esc(_tick_label(t, ticks))}</text>')
    x0, x1 = sx.x0, sx.x1
    out.append(f'<line x1="{x0}" y1="{plot_bottom}" x2="{x1}" y2="{plot_bottom}" stroke="{COLORS["axis"]}"/>')
    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{plot_bottom + 34}" text-anchor="middle" fill="{COLORS["axis"]}" '
               f'font-size="12">{esc(x_label)}</text>')
    return out


def _forest_refs(refs: list[RefLine], sx: _Scale, top: int, plot_bottom: int) -> list[str]:
    """Reference lines; a label goes left of its line when another line is close on the right."""
    out = []
    refs = sorted((r for r in refs if _finite(r.x)), key=lambda r: r.x)
    xs = [sx(r.x) for r in refs]
    for k, ref in enumerate(refs):
        x = xs[k]
        dash = f' stroke-dasharray="{ref.dash}"' if ref.dash else ""
        out.append(f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" y2="{plot_bottom}" stroke="{ref.color}" '
                   f'stroke-width="1.5"{dash}/>')
        close_right = k + 1 < len(xs) and xs[k + 1] - x < 90
        close_left = k > 0 and x - xs[k - 1] < 90
        anchor, dx = ("end", -3) if close_right else ("start", 3)
        y = top - 12 - (12 if close_right and close_left else 0)
        out.append(f'<text x="{x + dx:.1f}" y="{y}" text-anchor="{anchor}" fill="{ref.color}" font-size="11">'
                   f'{esc(ref.label)}</text>')
    return out


def _forest_row(item: ForestItem, sx: _Scale, *, y: int, row_h: int, width: int, shaded: bool) -> list[str]:
    """One item: label and sublabel, the CI whisker clipped to the range, the estimate, the note."""
    cy = y + row_h / 2
    out = []
    if shaded:
        out.append(f'<rect x="0" y="{y}" width="{width}" height="{row_h}" fill="#f6f8fa" fill-opacity="0.6"/>')
    out.append('<g>')
    if item.tooltip:
        out.append(f'<title>{esc(item.tooltip)}</title>')
    label_y = cy + (-2 if item.sublabel else 4)
    out.append(f'<text x="8" y="{label_y:.1f}" fill="#222" font-weight="600">{esc(_clip(item.label, 26))}</text>')
    if item.sublabel:
        out.append(f'<text x="8" y="{cy + 12:.1f}" fill="#666" font-size="11">{esc(_clip(item.sublabel, 34))}</text>')
    if _finite(item.low) and _finite(item.high):
        xa, xb = sx(max(item.low, sx.lo)), sx(min(item.high, sx.hi))
        out.append(f'<line x1="{xa:.1f}" y1="{cy:.1f}" x2="{xb:.1f}" y2="{cy:.1f}" stroke="{item.color}" '
                   f'stroke-width="2.5"/>')
        for xe in (xa, xb):
            out.append(f'<line x1="{xe:.1f}" y1="{cy - 6:.1f}" x2="{xe:.1f}" y2="{cy + 6:.1f}" '
                       f'stroke="{item.color}" stroke-width="2"/>')
    if _finite(item.estimate):
        fill = item.color if item.filled else "#ffffff"
        out.append(f'<rect x="{sx(item.estimate) - 5:.1f}" y="{cy - 5:.1f}" width="10" height="10" '
                   f'fill="{fill}" stroke="{item.color}" stroke-width="2"/>')
    if item.note:
        out.append(f'<text x="{sx.x1 + 12}" y="{cy + 4:.1f}" fill="#222" font-size="12">{esc(item.note)}</text>')
    out.append('</g>')
    return out


def histogram_svg(title: str, baseline: Sequence[float], candidate: Sequence[float], *,
                  bins: int = 10, width: int = 360, height: int = 200) -> str:
    """Two overlaid step-free bar series over [0, 1] (or the data range): row counts per bin."""
    values = [v for v in (*baseline, *candidate) if _finite(v)]
    lo, hi = 0.0, 1.0
    if values and (min(values) < 0 or max(values) > 1):
        lo, hi = min(values), max(values)
        if hi == lo:
            hi = lo + 1
    counts_b = _bin(baseline, lo, hi, bins)
    counts_c = _bin(candidate, lo, hi, bins)
    peak = max([*counts_b, *counts_c, 1])
    left, right, top, bottom = 36, 10, 46, 34
    pw, ph = width - left - right, height - top - bottom
    bw = pw / bins
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot hist" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)} distribution" {FONT} font-size="11">']
    out.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>')
    out.append(f'<text x="6" y="16" font-size="13" font-weight="600" fill="#222">{esc(_clip(title, 40))}</text>')
    mb, mc = _mean(baseline), _mean(candidate)
    out.append(f'<rect x="{left}" y="24" width="10" height="10" fill="{COLORS["baseline"]}"/>'
               f'<text x="{left + 14}" y="33" fill="#333">baseline: mean {fmt(mb)}</text>')
    out.append(f'<rect x="{left + 150}" y="24" width="10" height="10" fill="{COLORS["candidate"]}"/>'
               f'<text x="{left + 164}" y="33" fill="#333">candidate: mean {fmt(mc)}</text>')
    out.append(f'<text x="{width - 8}" y="16" text-anchor="end" fill="#666">n={len(baseline)} rows</text>')
    for frac in (0.5, 1.0):
        y = top + ph - ph * frac
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="{COLORS["grid"]}"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#666">{round(peak * frac)}</text>')
    for i in range(bins):
        for j, (counts, color) in enumerate(((counts_b, COLORS["baseline"]), (counts_c, COLORS["candidate"]))):
            h = ph * counts[i] / peak
            x = left + i * bw + 2 + j * (bw - 4) / 2
            if counts[i]:
                out.append(f'<rect x="{x:.1f}" y="{top + ph - h:.1f}" width="{(bw - 4) / 2:.1f}" height="{h:.1f}" '
                           f'fill="{color}"><title>{esc(("baseline", "candidate")[j])}: {counts[i]} rows in '
                           f'[{fmt(lo + i * (hi - lo) / bins, 2)}, {fmt(lo + (i + 1) * (hi - lo) / bins, 2)}]'
                           f'</title></rect>')
    out.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="{COLORS["axis"]}"/>')
    for k in range(0, bins + 1, max(1, bins // 5)):
        x = left + k * bw
        out.append(f'<text x="{x:.1f}" y="{top + ph + 14}" text-anchor="middle" fill="#666">'
                   f'{fmt(lo + k * (hi - lo) / bins, 1)}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle" fill="#444">'
               'per-row score (mean over trials)</text>')
    out.append('</svg>')
    return "\n".join(out)


def _bin(values: Sequence[float], lo: float, hi: float, bins: int) -> list[int]:
    counts = [0] * bins
    for v in values:
        if not _finite(v):
            continue
        k = int((v - lo) / (hi - lo) * bins)
        counts[min(max(k, 0), bins - 1)] += 1
    return counts


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if _finite(v)]
    return sum(finite) / len(finite) if finite else None


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
