"""Pictures for the pages, drawn on the server as SVG from the figures the API already serves: no plotting
library, no JavaScript, nothing inline a Content-Security-Policy would block (classes, not style attributes).

- ``parity_chart``: one row per output of a parity report, on a log scale: a bar from the smallest mean to
  the largest max abs difference over the input sets, a dot per input set, and a tick at the tolerance.
- ``formats_chart``: size and latency per format of one model, as bars.
Every label comes from a model (output names, formats), so every one is escaped.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from markupsafe import Markup, escape

_WIDTH = 640
_LABEL_W = 150
_ROW_H = 26
_MAX_ROWS = 24


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _svg(height: int, body: Iterable[str], label: str) -> Markup:
    return Markup(f'<svg class="chart" viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}" '
                  f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
                  + "".join(body) + "</svg>")


def _text(x: float, y: float, text: Any, cls: str = "", anchor: str = "start") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" text-anchor="{anchor}">'
            f'{escape(str(text))}</text>')


def _short(name: str, limit: int = 22) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def parity_chart(parity: dict[str, Any]) -> Markup | None:
    """Error bars per output of one parity report (None when it has no comparable figures)."""
    checks = [c for c in parity.get("checks") or [] if _num(c.get("max_abs_diff")) is not None]
    if not checks:
        return None
    outputs = list(dict.fromkeys(c["output"] for c in checks))[:_MAX_ROWS]
    values = [v for c in checks for v in (_num(c.get("max_abs_diff")), _num(c.get("mean_abs_diff")),
                                          _num(c.get("atol"))) if v]
    low = math.floor(math.log10(min(values))) if values else -8
    high = math.ceil(math.log10(max(values))) if values else 0
    low, high = max(low, -12), max(high, low + 2)
    plot_w = _WIDTH - _LABEL_W - 20

    def x_of(value: float | None) -> float:
        if not value or value <= 0:
            return _LABEL_W
        return _LABEL_W + (min(max(math.log10(value), low), high) - low) / (high - low) * plot_w

    top, body = 8, []
    height = top + len(outputs) * _ROW_H + 34
    axis_y = top + len(outputs) * _ROW_H + 4
    for decade in range(low, high + 1):
        x = x_of(10.0 ** decade)
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}" class="grid"/>')
        body.append(_text(x, axis_y + 16, f"1e{decade}", "axis", "middle"))
    for i, name in enumerate(outputs):
        mine = [c for c in checks if c["output"] == name]
        y = top + i * _ROW_H + _ROW_H / 2
        ok = all(c.get("passed") for c in mine)
        cls = "pass" if ok else "fail"
        maxes = [_num(c.get("max_abs_diff")) or 0.0 for c in mine]
        means = [_num(c.get("mean_abs_diff")) or 0.0 for c in mine]
        tol = max((_num(c.get("atol")) or 0.0 for c in mine), default=0.0)
        x0, x1 = x_of(min(means)), x_of(max(maxes))
        body.append(f'<g class="{cls}"><title>{escape(name)}: max abs diff {max(maxes):.3g}, '
                    f'tolerance {tol:.3g}, {len(mine)} input set(s)</title>')
        body.append(_text(_LABEL_W - 8, y + 4, _short(name), "label", "end"))
        body.append(f'<line x1="{x0:.1f}" y1="{y:.1f}" x2="{max(x1, x0 + 1):.1f}" y2="{y:.1f}" class="bar"/>')
        for c, v in zip(mine, maxes):
            body.append(f'<circle cx="{x_of(v):.1f}" cy="{y:.1f}" r="4" class="dot">'
                        f'<title>{escape(c.get("input_set", ""))}: {v:.3g}</title></circle>')
        if tol > 0:
            xt = x_of(tol)
            body.append(f'<line x1="{xt:.1f}" y1="{y - 9:.1f}" x2="{xt:.1f}" y2="{y + 9:.1f}" class="tol"/>')
        body.append("</g>")
    body.append(_text(_WIDTH - 4, height - 2, "max abs difference (log); | = tolerance", "axis", "end"))
    return _svg(height, body, "parity: absolute difference per output")


def formats_chart(rows: list[dict[str, Any]]) -> Markup | None:
    """Size (MB) and, where measured, latency (ms) per format that has an artifact."""
    present = [r for r in rows if r.get("artifact")]
    if not present:
        return None
    panels = [("size, MB", [(r["format"], r["artifact"]["size"] / 1e6, r["state"]) for r in present])]
    timed = [(r["format"], r["latency_ms"], r["state"]) for r in present if _num(r.get("latency_ms")) is not None]
    panels.append(("latency, ms", timed))
    body, y = [], 4
    plot_w = _WIDTH - _LABEL_W - 80
    for title, bars in panels:
        body.append(_text(4, y + 14, title, "heading"))
        y += 22
        if not bars:
            body.append(_text(_LABEL_W, y + 12, "not measured yet", "axis"))
            y += 26
            continue
        top = max(v for _, v, _ in bars) or 1.0
        for fmt, value, state in bars:
            w = max(value / top * plot_w, 1.0)
            cls = "pass" if state == "verified" else "fail"
            body.append(f'<g class="{cls}"><title>{escape(fmt)}: {value:.3g}</title>')
            body.append(_text(_LABEL_W - 8, y + 13, fmt, "label", "end"))
            body.append(f'<rect x="{_LABEL_W}" y="{y + 3}" width="{w:.1f}" height="14" rx="2" class="fill"/>')
            body.append(_text(_LABEL_W + w + 6, y + 14, f"{value:.3g}", "value"))
            body.append("</g>")
            y += 22
        y += 8
    return _svg(y, body, "size and latency per format")
