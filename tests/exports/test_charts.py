from __future__ import annotations

import io
import xml.etree.ElementTree as ET

from PIL import Image

from app import charts

SVG = "{http://www.w3.org/2000/svg}"


def _points() -> list[charts.Point]:
    return [
        charts.Point("1", "<script>alert(1)</script> & co", 4.5, 4.0, 12),
        charts.Point("2", "Сотрудничество", 2.0, 1.5, 3),
        charts.Point("3", "Same spot", 2.0, 1.5, 1),
    ]


def test_matrix_is_valid_accessible_svg_with_escaped_text() -> None:
    svg = charts.to_svg(charts.impact_feasibility(_points(), title='Impact "&" <feasibility>'))
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label") == 'Impact "&" <feasibility>'
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == 'Impact "&" <feasibility>'
    texts = [t.text for t in root.iter(f"{SVG}text")]
    for quadrant in ("Quick wins", "Major projects", "Fill-ins", "Thankless tasks"):
        assert quadrant in texts
    assert "2, 3" in texts  # two findings at one spot share a dot
    tips = [t.text or "" for c in root.iter(f"{SVG}circle") for t in c.iter(f"{SVG}title")]
    assert any("<script>alert(1)</script> & co" in tip for tip in tips)
    assert "<script>" not in svg


def test_vote_bars_are_valid_svg() -> None:
    svg = charts.to_svg(charts.vote_bars([("1. <b>First</b>", 10), ("2. Second", 0)]))
    root = ET.fromstring(svg)
    assert [t.text for t in root.iter(f"{SVG}text")][:2] == ["1. <b>First</b>", "10"]
    assert len(list(root.iter(f"{SVG}rect"))) == 2


def test_png_has_the_chart_size() -> None:
    chart = charts.impact_feasibility(_points())
    image = Image.open(io.BytesIO(charts.to_png(chart, scale=2)))
    assert image.format == "PNG"
    assert image.size == (chart.width * 2, chart.height * 2)


def test_quadrants_split_at_three() -> None:
    assert charts.quadrant(3, 3) == "Quick wins"
    assert charts.quadrant(4, 1) == "Major projects"
    assert charts.quadrant(1, 5) == "Fill-ins"
    assert charts.quadrant(2.9, 2.9) == "Thankless tasks"
