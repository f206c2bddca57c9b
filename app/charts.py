"""Server-drawn charts: the impact x feasibility matrix (one point per
cluster) and horizontal vote bars. Each chart is laid out once as a short list
of shapes in pixel coordinates; ``to_svg`` writes them as standalone,
accessible SVG (a ``<title>``, ``role="img"``, ``aria-label``, every piece of
text escaped) for the web page and the PDF, and ``to_png`` rasterises the same
shapes with Pillow for the DOCX, which cannot show SVG. No JavaScript, no
chart library.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_FAMILY = "DejaVu Sans, Verdana, Arial, sans-serif"
FONT_FILES = {
    False: "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    True: "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
}
INK = "#1f2933"
MUTED = "#52606d"
ACCENT = "#1c5d99"
GRID = "#cbd2d9"


@dataclass
class Shape:
    kind: str  # rect | line | circle | text
    x: float
    y: float
    w: float = 0.0  # rect width, line x2, circle radius
    h: float = 0.0  # rect height, line y2
    fill: str = "none"
    stroke: str = "none"
    text: str = ""
    size: float = 12.0
    anchor: str = "start"  # start | middle | end
    bold: bool = False
    rotate: bool = False  # text turned 90 degrees anticlockwise
    dash: bool = False
    tip: str = ""  # a tooltip for a point (<title> in SVG)


@dataclass
class Chart:
    title: str
    description: str
    width: int
    height: int
    shapes: list[Shape] = field(default_factory=list)


@dataclass
class Point:
    label: str  # short, drawn beside the dot (a rank number)
    name: str  # full name, in the tooltip and the description
    impact: float
    feasibility: float
    dots: int = 0


QUADRANTS = (
    ("Major projects", "start", "top"),
    ("Quick wins", "end", "top"),
    ("Thankless tasks", "start", "bottom"),
    ("Fill-ins", "end", "bottom"),
)


def quadrant(impact: float, feasibility: float) -> str:
    """The quadrant a point falls in; the midpoint 3 counts as high."""
    return QUADRANTS[(0 if impact >= 3 else 2) + (1 if feasibility >= 3 else 0)][0]


def impact_feasibility(points: list[Point], *, title: str = "Impact and feasibility") -> Chart:
    """Feasibility runs left to right, impact bottom to top, both 1-5 with the
    quadrants split at 3. Points at the same spot share one dot whose label
    lists every rank, so no number hides another."""
    w, h, left, right, top, bottom = 640, 500, 72, 24, 24, 64
    pw, ph = w - left - right, h - top - bottom
    chart = Chart(title, _describe(points), w, h)
    add = chart.shapes.append

    def px(v: float) -> float:
        return left + (v - 1) / 4 * pw

    def py(v: float) -> float:
        return top + (5 - v) / 4 * ph

    tints = ("#fdf3e7", "#e8f4ea", "#f2f2f2", "#eef2f7")
    for i, (name, anchor, vert) in enumerate(QUADRANTS):
        qx = left if anchor == "start" else left + pw / 2
        qy = top if vert == "top" else top + ph / 2
        add(Shape("rect", qx, qy, pw / 2, ph / 2, fill=tints[i]))
        tx = qx + 8 if anchor == "start" else qx + pw / 2 - 8
        ty = qy + 18 if vert == "top" else qy + ph / 2 - 8
        add(Shape("text", tx, ty, text=name, size=13, anchor=anchor, bold=True, fill=MUTED))
    for v in range(1, 6):
        add(Shape("line", px(v), top, px(v), top + ph, stroke=GRID, dash=v != 3))
        add(Shape("line", left, py(v), left + pw, py(v), stroke=GRID, dash=v != 3))
        add(Shape("text", px(v), top + ph + 18, text=str(v), size=12, anchor="middle", fill=INK))
        add(Shape("text", left - 10, py(v) + 4, text=str(v), size=12, anchor="end", fill=INK))
    add(Shape("rect", left, top, pw, ph, stroke=INK))
    add(
        Shape(
            "text",
            left + pw / 2,
            h - 14,
            text="Feasibility (1 = very hard, 5 = easy)",
            size=13,
            anchor="middle",
            fill=INK,
        )
    )
    add(
        Shape(
            "text",
            22,
            top + ph / 2,
            text="Impact (1 = low, 5 = high)",
            size=13,
            anchor="middle",
            fill=INK,
            rotate=True,
        )
    )
    spots: dict[tuple[float, float], list[Point]] = {}
    for p in points:
        spots.setdefault((round(p.feasibility, 1), round(p.impact, 1)), []).append(p)
    most = max((p.dots for p in points), default=0) or 1
    for (fx, iy), group in spots.items():
        cx, cy = px(fx), py(iy)
        r = 6 + 8 * math.sqrt(max(p.dots for p in group) / most)
        tip = "; ".join(f"{p.label}. {p.name}" for p in group)
        add(Shape("circle", cx, cy, r, fill=ACCENT, stroke="#ffffff", tip=tip))
        label = ", ".join(p.label for p in group)
        to_left = cx > left + pw - 60
        lx = cx - r - 3 if to_left else cx + r + 3
        add(
            Shape(
                "text",
                lx,
                cy - r + 2,
                text=label,
                size=12,
                bold=True,
                fill=INK,
                anchor="end" if to_left else "start",
            )
        )
    return chart


def vote_bars(rows: list[tuple[str, int]], *, title: str = "Dots per cluster") -> Chart:
    """One horizontal bar per (label, dots) row, longest first as given."""
    w, row_h, label_w, top = 640, 26, 270, 8
    h = top * 2 + row_h * max(len(rows), 1)
    desc = "; ".join(f"{label}: {dots} dots" for label, dots in rows) or "No votes."
    chart = Chart(title, desc, w, h)
    most = max((d for _, d in rows), default=0) or 1
    bar_w = w - label_w - 56
    for i, (label, dots) in enumerate(rows):
        y = top + i * row_h
        chart.shapes.append(
            Shape("text", label_w - 8, y + 17, text=_clip(label, 38), size=12, anchor="end")
        )
        length = max(bar_w * dots / most, 1.5)
        chart.shapes.append(Shape("rect", label_w, y + 5, length, row_h - 10, fill=ACCENT))
        chart.shapes.append(
            Shape("text", label_w + length + 6, y + 17, text=str(dots), size=12, bold=True)
        )
    return chart


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _describe(points: list[Point]) -> str:
    if not points:
        return "No ratings."
    return "; ".join(
        f"{p.label}. {p.name}: impact {p.impact:.1f}, feasibility {p.feasibility:.1f}"
        for p in points
    )


def to_svg(chart: Chart) -> str:
    e = _esc
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {chart.width} {chart.height}" '
        f'width="{chart.width}" height="{chart.height}" role="img" '
        f'aria-label="{e(chart.title)}" font-family="{FONT_FAMILY}">',
        f"<title>{e(chart.title)}</title>",
        f"<desc>{e(chart.description)}</desc>",
    ]
    for s in chart.shapes:
        out.append(_svg_shape(s))
    out.append("</svg>")
    return "\n".join(out)


def _esc(text: str) -> str:
    # Characters XML 1.0 forbids would make the whole SVG unreadable.
    clean = "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)
    return escape(clean, quote=True)


def _svg_shape(s: Shape) -> str:
    paint = f'fill="{s.fill}" stroke="{s.stroke}"'
    if s.kind == "rect":
        return f'<rect x="{s.x:.1f}" y="{s.y:.1f}" width="{s.w:.1f}" height="{s.h:.1f}" {paint}/>'
    if s.kind == "line":
        dash = ' stroke-dasharray="3 4"' if s.dash else ""
        return (
            f'<line x1="{s.x:.1f}" y1="{s.y:.1f}" x2="{s.w:.1f}" y2="{s.h:.1f}" '
            f'stroke="{s.stroke}"{dash}/>'
        )
    if s.kind == "circle":
        tip = f"<title>{_esc(s.tip)}</title>" if s.tip else ""
        return (
            f'<circle cx="{s.x:.1f}" cy="{s.y:.1f}" r="{s.w:.1f}" {paint} '
            f'stroke-width="1.5" fill-opacity="0.85">{tip}</circle>'
        )
    weight = ' font-weight="bold"' if s.bold else ""
    turn = f' transform="rotate(-90 {s.x:.1f} {s.y:.1f})"' if s.rotate else ""
    fill = s.fill if s.fill != "none" else INK
    return (
        f'<text x="{s.x:.1f}" y="{s.y:.1f}" font-size="{s.size:g}" text-anchor="{s.anchor}" '
        f'fill="{fill}"{weight}{turn}>{_esc(s.text)}</text>'
    )


def to_png(chart: Chart, *, scale: int = 2) -> bytes:
    """The same shapes drawn with Pillow (a WeasyPrint dependency), at
    ``scale`` times the SVG size so the image stays sharp in print."""
    img = Image.new("RGB", (chart.width * scale, chart.height * scale), "#ffffff")
    draw = ImageDraw.Draw(img)
    k = scale
    for s in chart.shapes:
        if s.kind == "rect":
            box = (s.x * k, s.y * k, (s.x + s.w) * k, (s.y + s.h) * k)
            fill = None if s.fill == "none" else s.fill
            outline = None if s.stroke == "none" else s.stroke
            draw.rectangle(box, fill=fill, outline=outline, width=k if outline else 0)
        elif s.kind == "line":
            _png_line(draw, s, k)
        elif s.kind == "circle":
            box = ((s.x - s.w) * k, (s.y - s.w) * k, (s.x + s.w) * k, (s.y + s.w) * k)
            draw.ellipse(box, fill=s.fill, outline=s.stroke, width=k)
        else:
            _png_text(img, draw, s, k)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _png_line(draw: ImageDraw.ImageDraw, s: Shape, k: int) -> None:
    x1, y1, x2, y2 = s.x * k, s.y * k, s.w * k, s.h * k
    if not s.dash:
        draw.line((x1, y1, x2, y2), fill=s.stroke, width=k)
        return
    length = math.hypot(x2 - x1, y2 - y1) or 1.0
    dx, dy = (x2 - x1) / length, (y2 - y1) / length
    pos, on, off = 0.0, 3.0 * k, 4.0 * k
    while pos < length:
        end = min(pos + on, length)
        draw.line((x1 + dx * pos, y1 + dy * pos, x1 + dx * end, y1 + dy * end), fill=s.stroke)
        pos = end + off


def _font(size: float, bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = FONT_FILES[bold]
    if Path(path).exists():
        return ImageFont.truetype(path, round(size))
    return ImageFont.load_default(size=round(size))


def _png_text(img: Image.Image, draw: ImageDraw.ImageDraw, s: Shape, k: int) -> None:
    font = _font(s.size * k, s.bold)
    fill = s.fill if s.fill != "none" else INK
    # SVG anchors text at its baseline; Pillow's "ls"/"ms"/"rs" anchors match.
    anchor = {"start": "ls", "middle": "ms", "end": "rs"}[s.anchor]
    if not s.rotate:
        draw.text((s.x * k, s.y * k), s.text, font=font, fill=fill, anchor=anchor)
        return
    left, top_, right, bottom = draw.textbbox((0, 0), s.text, font=font, anchor="ls")
    tile = Image.new("RGBA", (int(right - left) + 4, int(bottom - top_) + 4), (255, 255, 255, 0))
    ImageDraw.Draw(tile).text((2 - left, 2 - top_), s.text, font=font, fill=fill, anchor="ls")
    turned = tile.rotate(90, expand=True)
    img.paste(turned, (int(s.x * k - turned.width / 2), int(s.y * k - turned.height / 2)), turned)
