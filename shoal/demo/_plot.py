"""The Rosenbrock search as a standalone HTML page: Bokeh if installed, else hand-written SVG.

The notebook streams points into a live Bokeh figure; a terminal tour cannot, so it draws the
whole search once at the end: every evaluated point over the log-scaled function, and the path
of successive best points.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

Point = tuple[float, float]
LIMIT = 5.0  # the notebook's plot range: [-5, 5] on both axes


def log_rosenbrock(x: float, y: float) -> float:
    """The notebook's background: log of (1 - x)^2 + 2 (y - x^2)^2."""
    return math.log((1 - x) ** 2 + 2 * (y - x**2) ** 2 + 1e-12)


def write_search_plot(path: Path, evaluated: Sequence[Point], bests: Sequence[Point]) -> Path:
    """Write the search plot to `path` (an .html file) and return it.

    Uses Bokeh with inlined resources (the page works offline) when Bokeh is installed,
    otherwise an inline SVG drawing of the same picture.
    """
    try:
        import bokeh  # noqa: F401
    except ImportError:
        path.write_text(_svg_page(evaluated, bests), encoding="utf-8")
    else:
        _bokeh_page(path, evaluated, bests)
    return path


def _bokeh_page(path: Path, evaluated: Sequence[Point], bests: Sequence[Point]) -> None:
    import numpy as np
    from bokeh.plotting import figure, save
    from bokeh.resources import INLINE

    n = 300
    grid = np.linspace(-LIMIT, LIMIT, n)
    xx, yy = np.meshgrid(grid, grid)
    d = np.log((1 - xx) ** 2 + 2 * (yy - xx**2) ** 2 + 1e-12).astype(np.float32)

    p = figure(
        x_range=(-LIMIT, LIMIT),
        y_range=(-LIMIT, LIMIT),
        title=f"Rosenbrock search: {len(evaluated)} evaluations, {len(bests)} improvements",
    )
    p.image(image=[d], x=-LIMIT, y=-LIMIT, dw=2 * LIMIT, dh=2 * LIMIT, palette="Spectral11")
    if evaluated:
        xs, ys = zip(*evaluated, strict=True)
        p.scatter(list(xs), list(ys), size=4, color="grey", alpha=0.6, legend_label="evaluated")
    if bests:
        bx, by = zip(*bests, strict=True)
        p.line(list(bx), list(by), color="black", line_width=2)
        p.scatter(list(bx), list(by), size=7, color="black", legend_label="new best")
        p.scatter([bx[-1]], [by[-1]], size=14, marker="star", color="white", line_color="black")
    p.legend.location = "bottom_right"
    save(p, filename=str(path), resources=INLINE, title="shoal demo: Rosenbrock search")


def _svg_page(evaluated: Sequence[Point], bests: Sequence[Point]) -> str:
    size, cells = 500, 50
    scale = size / (2 * LIMIT)

    def px(x: float, y: float) -> tuple[float, float]:
        return (x + LIMIT) * scale, (LIMIT - y) * scale

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}">']
    step = 2 * LIMIT / cells
    values = [
        [log_rosenbrock(-LIMIT + (i + 0.5) * step, -LIMIT + (j + 0.5) * step) for i in range(cells)]
        for j in range(cells)
    ]
    low = min(min(row) for row in values)
    high = max(max(row) for row in values)
    cell = size / cells
    for j, row in enumerate(values):
        for i, v in enumerate(row):
            shade = int(255 * (v - low) / (high - low))
            parts.append(
                f'<rect x="{i * cell:.1f}" y="{size - (j + 1) * cell:.1f}" width="{cell:.1f}" '
                f'height="{cell:.1f}" fill="rgb({shade},{shade},255)"/>'
            )
    for x, y in evaluated:
        cx, cy = px(x, y)
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2" fill="grey"/>')
    if bests:
        path = " ".join("{:.1f},{:.1f}".format(*px(x, y)) for x, y in bests)
        parts.append(f'<polyline points="{path}" fill="none" stroke="black" stroke-width="2"/>')
    parts.append("</svg>")
    title = html.escape(f"Rosenbrock search: {len(evaluated)} evaluations")
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h3>{title}</h3>{''.join(parts)}</body></html>\n"
    )
