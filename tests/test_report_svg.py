"""The report's SVG plotting layer (crowdselect_hf.report.svg): ticks, the PNG writer, escaping
and the placement of marks, checked against independent decoders (Pillow, ElementTree)."""

from __future__ import annotations

import base64
import io
import math
from xml.etree import ElementTree

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crowdselect_hf.report.svg import Figure, LegendEntry, linear_ticks, log_ticks, png_bytes

SVG = "{http://www.w3.org/2000/svg}"


def _parse(fig: Figure):
    uri = fig.uri()
    assert uri.startswith("data:image/svg+xml;base64,")
    return ElementTree.fromstring(base64.b64decode(uri.split(",", 1)[1], validate=True))


@pytest.mark.unit
@settings(max_examples=300, deadline=None)
@given(st.floats(-1e6, 1e6, allow_nan=False), st.floats(1e-6, 1e6, allow_nan=False))
def test_linear_ticks_are_round_evenly_spaced_and_inside(lo, span):
    hi = lo + span
    if not hi > lo:
        return
    ticks, decimals = linear_ticks(lo, hi)
    assert 1 <= len(ticks) <= 7
    noise = 1e-11 * max(abs(lo), abs(hi), 1.0)  # well above float64's resolution at these values
    tol = span * 1e-6 + noise
    assert ticks.min() >= lo - tol and ticks.max() <= hi + tol
    if len(ticks) > 1:
        steps = np.diff(ticks)
        assert np.allclose(steps, steps[0], rtol=1e-6, atol=noise)
        mantissa = steps[0] / 10 ** math.floor(math.log10(steps[0]) + 1e-9)
        assert any(abs(mantissa - m) <= 1e-6 * m + noise / steps[0] * 10 for m in (1, 2, 2.5, 5, 10)), mantissa
        labels = [f"{t:,.{decimals}f}" for t in ticks]
        assert len(set(labels)) == len(labels), labels  # enough decimals to tell the ticks apart
    assert len(ticks) >= 2 or span < 1e-5 * max(abs(lo), 1)


@pytest.mark.unit
def test_log_ticks():
    assert log_ticks(3, 4000).tolist() == [10.0, 100.0, 1000.0]
    assert log_ticks(0.5, 80).tolist() == [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
    assert log_ticks(1, 1).tolist() == [1.0]


@pytest.mark.unit
def test_png_bytes_decode_to_the_array():
    from PIL import Image

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=(17, 31, 4), dtype=np.uint8)
    with Image.open(io.BytesIO(png_bytes(rgba))) as image:
        assert image.mode == "RGBA" and image.size == (31, 17)
        assert np.array_equal(np.asarray(image), rgba)


@pytest.mark.unit
def test_raster_puts_its_first_row_at_the_bottom_and_spans_its_extent():
    from PIL import Image

    fig = Figure(300, 200)
    (ax,) = fig.panels(1, left=50, right=10, top=10, bottom=40)
    ax.limits((0.0, 10.0), (0.0, 4.0))
    grid = np.zeros((2, 3, 4), dtype=np.uint8)
    grid[0, :, 0] = 255  # bottom row red
    grid[1, :, 2] = 255  # top row blue
    grid[..., 3] = 255
    ax.raster(grid, (2.0, 8.0, 1.0, 3.0))
    image = next(_parse(fig).iter(f"{SVG}image"))
    box = ax.box
    assert float(image.get("x")) == pytest.approx(box.x + 0.2 * box.w, abs=0.06)
    assert float(image.get("width")) == pytest.approx(0.6 * box.w, abs=0.11)
    assert float(image.get("y")) == pytest.approx(box.y + 0.25 * box.h, abs=0.06)
    assert float(image.get("height")) == pytest.approx(0.5 * box.h, abs=0.11)
    with Image.open(io.BytesIO(base64.b64decode(image.get("href").split(",", 1)[1]))) as png:
        pixels = np.asarray(png)
    assert pixels[0, 0, 2] == 255 and pixels[-1, 0, 0] == 255  # PNG rows run top-down


@pytest.mark.unit
def test_text_is_escaped_and_the_figure_is_well_formed():
    hostile = 'a <script>alert("x")</script> & b'
    fig = Figure(400, 200)
    (ax,) = fig.panels(1)
    ax.limits((0.0, 1.0), (0.0, 1.0))
    ax.dots(np.array([0.5]), np.array([0.5]), 3.0, fill="#123456")
    ax.frame(title=hostile, xlabel=hostile, ylabel=hostile, ylabels=[(0.5, hostile)])
    ax.legend([LegendEntry(hostile, "#123456")])
    root = _parse(fig)
    assert not list(root.iter(f"{SVG}script"))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts.count(hostile) == 5
    (circle,) = root.iter(f"{SVG}circle")
    assert (float(circle.get("cx")), float(circle.get("cy"))) == pytest.approx(
        (ax.box.x + ax.box.w / 2, ax.box.y + ax.box.h / 2), abs=0.06)


@pytest.mark.unit
def test_log_axis_places_points_by_their_logarithm():
    fig = Figure(500, 300)
    (ax,) = fig.panels(1)
    ax.limits((1.0, 100.0), (0.0, 1.0), xlog=True)
    assert float(ax.px(10.0)) == pytest.approx(ax.box.x + ax.box.w / 2)
    ax.line([1, 10, 100], [0, 1, 0], "#000000", marker=3)
    ax.frame()
    root = _parse(fig)
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert {"1", "10", "100"} <= set(labels)
    assert len(list(root.iter(f"{SVG}circle"))) == 3
