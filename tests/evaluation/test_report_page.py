"""The report's one self-contained page: escaped text, images embedded as ``data:`` URIs with
the files' exact bytes, no network URL, numbers as documented, a missing image as an error;
then the written ``index.html`` from a ``file://`` URL in Debian's Chromium (Selenium, the
system chromedriver) with the network cut off by a dead proxy: every image loads at its
file's width, the per-class table sorts by a clicked header, a clicked image opens full size.
The browser tests are skipped where Chromium or its driver is absent (.ci/run installs them).
"""

from __future__ import annotations

import base64
import functools
import math
import re
import threading
import urllib.request
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
from helpers.browser import NO_NETWORK, chromium, needs_chromium

from fasterrcnn.evaluation.report.page import (
    MissingImageError,
    PageImage,
    ReportPage,
    format_cell,
    format_stat,
    render_page,
    write_page,
)

ODD = '<b>&"'
# (file, width, height): PNG and JPEG (suffixes in both cases), one wider than the page.
IMAGES = {
    "pr_curves.png": (1800, 600),
    "confusion.png": (640, 480),
    "worst/000000000001.jpg": (320, 240),
    "worst/000000000002.jpeg": (500, 375),
    "worst/000000000003.JPG": (240, 320),
}
PLOTS = ("pr_curves.png", "confusion.png")
WORST = ("worst/000000000001.jpg", "worst/000000000002.jpeg", "worst/000000000003.JPG")
STATS = {"AP": 0.35712, "AP50": 0.5, "AP75": 1.0, "APs": -1.0, "APm": 0.0, "APl": 0.4444}
COLUMNS = ("class", "AP", "images")
ROWS: tuple[tuple[str | int | float | None, ...], ...] = (
    ("person", 0.5123, 100),
    ("bicycle", None, 9),
    ("Car", 0.0456, 10),
    (ODD, 0.9, None),
    ("zebra", 0.25, 0),
    ("traffic light", None, 1),
    ("dog", 0.75, 55),
)


def _write_images(folder: Path) -> None:
    for i, (file, (width, height)) in enumerate(IMAGES.items()):
        image = np.full((height, width, 3), (240, 230 - 40 * i, 60 * i), np.uint8)
        cv2.rectangle(image, (10, 10), (width - 10, height - 10), (20, 20, 200), 4)
        path = folder / file
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), image)


def _page(title: str = "Evaluation of faster_rcnn_res50 on val2017") -> ReportPage:
    return ReportPage(
        title=title,
        summary=("7 images, 42 detections", f"deploy threshold 0.62: precision 0.81 {ODD}"),
        stats=STATS,
        plots=tuple(PageImage(file, f"plot {file}") for file in PLOTS),
        class_columns=COLUMNS,
        class_rows=ROWS,
        worst_images=tuple(PageImage(file, f"{file}: 3 false positives <i>") for file in WORST),
        legend=f"solid: matched, dashed: missed {ODD}",
    )


class _Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    _write_images(tmp_path)
    return tmp_path


def test_text_is_escaped(folder: Path) -> None:
    html = render_page(_page(title="<script>alert(1)</script>"), folder)
    assert "<b>" not in html and "<i>" not in html and "alert(1)</script>" not in html
    assert html.count("<script>") == 1  # the page's own
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    escaped = "&lt;b&gt;&amp;&quot;"
    # the class cell (text and data-value), a summary line, the legend
    assert html.count(escaped) == 4
    assert f'<td data-value="{escaped}">{escaped}</td>' in html
    assert [attrs["alt"] for tag, attrs in _tags(html) if tag == "img"][-1] == (
        f"{WORST[-1]}: 3 false positives <i>"  # the parser unescapes
    )


def test_images_are_data_uris_of_the_files_bytes(folder: Path) -> None:
    sources = [attrs["src"] for tag, attrs in _tags(render_page(_page(), folder)) if tag == "img"]
    assert len(sources) == len(PLOTS) + len(WORST)
    for file, source in zip(PLOTS + WORST, sources, strict=True):
        assert source is not None
        mime = "image/png" if file.endswith(".png") else "image/jpeg"
        prefix = f"data:{mime};base64,"
        assert source.startswith(prefix), (file, source[:40])
        decoded = base64.b64decode(source[len(prefix) :], validate=True)
        assert decoded == (folder / file).read_bytes(), file


def test_no_network_url(folder: Path) -> None:
    html = render_page(_page(), folder)
    tags = _tags(html)
    assert not [tag for tag, _ in tags if tag in ("link", "iframe", "object", "embed")]
    for tag, attrs in tags:
        assert "src" not in attrs or tag == "img", tag  # no external script
        for name in ("src", "href", "action", "srcset", "poster"):
            value = attrs.get(name)
            assert value is None or value.startswith("data:image/"), (tag, name)
    text = re.sub(r'data:image/[a-z]+;base64,[A-Za-z0-9+/=]*"', "", html)
    assert not re.search(r"https?:|//|url\(|@import|fetch\(|XMLHttpRequest", text)


def test_numbers_are_formatted(folder: Path) -> None:
    assert [format_stat(v) for v in (0.35712, 0.5, 1.0, 0.0, -1.0, 0.99951, math.nan)] == [
        "35.7", "50.0", "100.0", "0.0", "-", "100.0", "-",
    ]  # fmt: skip
    cells = (0.12345, 0.5, 7, 0, None, math.nan, np.int64(3), np.float32(0.25), "car", 1e-4)
    assert [format_cell(v) for v in cells] == [
        "0.123", "0.500", "7", "0", "-", "-", "3", "0.250", "car", "0.000",
    ]  # fmt: skip
    html = render_page(_page(), folder)
    assert '<span class="name">AP</span><span class="value">35.7</span>' in html
    assert '<span class="name">APs</span><span class="value">-</span>' in html
    assert '<td class="num" data-value="0.5123">0.512</td>' in html
    assert '<td class="num" data-value="100">100</td>' in html
    assert html.count('<td class="num missing">-</td>') == 3  # no data-value: sorts last
    heads = [attrs["data-type"] for tag, attrs in _tags(html) if tag == "th"]
    assert heads == ["text", "number", "number"]


def test_missing_image_is_an_error(folder: Path) -> None:
    (folder / WORST[1]).unlink()
    with pytest.raises(MissingImageError, match=re.escape(WORST[1])) as caught:
        write_page(_page(), folder)
    assert isinstance(caught.value, FileNotFoundError)
    assert "\n" not in str(caught.value)
    assert not (folder / "index.html").exists()
    bad = ReportPage("t", (), {}, (PageImage("plot.gif", "a gif"),), (), (), ())
    with pytest.raises(ValueError, match=r"plot\.gif"):
        render_page(bad, folder)
    short = ReportPage("t", (), {}, (), ("class", "AP"), (("car",),), ())
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        render_page(short, folder)


def test_write_page(folder: Path) -> None:
    path = write_page(_page(), folder)
    assert path == folder / "index.html"
    assert path.read_text(encoding="utf-8") == render_page(_page(), folder)


@pytest.fixture(scope="module")
def browser():
    with chromium(*NO_NETWORK) as driver:
        yield driver


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("report")
    _write_images(folder)
    return write_page(_page(), folder).as_uri()


def _column(browser, index: int) -> list[str]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#class-table tbody tr'))"
        ".map((row) => row.cells[arguments[0]].textContent);",
        index,
    )


def _click_header(browser, index: int) -> str:
    head = browser.find_elements("css selector", "#class-table th")[index]
    head.click()
    return head.text


class _Recorder(SimpleHTTPRequestHandler):
    """Serves its folder and records the paths asked for."""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@needs_chromium
def test_the_browser_has_no_network(browser, tmp_path: Path) -> None:
    # An image on a real server here, which Python can fetch, is out of the browser's reach.
    assert cv2.imwrite(str(tmp_path / "far.png"), np.zeros((7, 13, 3), np.uint8))
    handler = functools.partial(_Recorder, directory=str(tmp_path))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/far.png"
        with urllib.request.urlopen(url, timeout=5) as reply:
            assert reply.read() == (tmp_path / "far.png").read_bytes()
        probe = tmp_path / "probe.html"
        probe.write_text(f'<img id="far" src="{url}">')
        browser.get(probe.as_uri())
        loaded = browser.execute_script(
            "const img = document.getElementById('far'); return [img.complete, img.naturalWidth];"
        )
        server.shutdown()
    assert loaded == [True, 0]
    assert _Recorder.asked == ["/far.png"]  # Python's request only


@needs_chromium
def test_every_image_loads_offline(browser, page_url: str) -> None:
    browser.get(page_url)
    found = browser.execute_script(
        "return Array.from(document.images).map((img) => [img.getAttribute('src').slice(0, 15),"
        " img.complete, img.naturalWidth, img.getBoundingClientRect().width]);"
    )
    page_width = browser.execute_script("return document.documentElement.clientWidth;")
    assert len(found) == len(PLOTS) + len(WORST)
    for file, (source, complete, width, shown) in zip(PLOTS + WORST, found, strict=True):
        assert source.startswith("data:image/") and complete, file
        assert width == IMAGES[file][0], file
        assert 0 < shown < page_width, file  # scaled to fit
    requests = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name);"
    )
    assert not [name for name in requests if not name.startswith(("data:", "file:"))]


@needs_chromium
def test_stats_and_summary_are_visible(browser, page_url: str) -> None:
    browser.get(page_url)
    summary = browser.find_element("id", "summary")
    stats = browser.find_element("id", "stats")
    assert summary.is_displayed() and stats.is_displayed()
    assert summary.text.splitlines() == list(_page().summary)
    cards = [card.text.split("\n") for card in stats.find_elements("css selector", ".stat")]
    assert cards == [[name, format_stat(value)] for name, value in STATS.items()]
    assert browser.find_element("css selector", ".legend").text == _page().legend


@needs_chromium
def test_numeric_columns_sort_with_the_empty_last(browser, page_url: str) -> None:
    browser.get(page_url)
    present = sorted(row[1] for row in ROWS if isinstance(row[1], float))
    assert _click_header(browser, 1) == "AP▲"
    assert _column(browser, 1) == [format_cell(v) for v in present] + ["-", "-"]
    assert _click_header(browser, 1) == "AP▼"
    assert _column(browser, 1) == [format_cell(v) for v in present[::-1]] + ["-", "-"]
    # ints by value, not as text (9 before 10 before 100); the other header lost its arrow
    assert _click_header(browser, 2) == "images▲"
    assert _column(browser, 2) == ["0", "1", "9", "10", "55", "100", "-"]
    assert browser.find_elements("css selector", "#class-table th")[1].text == "AP"
    assert _click_header(browser, 2) == "images▼"
    assert _column(browser, 2) == ["100", "55", "10", "9", "1", "0", "-"]


@needs_chromium
def test_the_name_column_sorts_alphabetically(browser, page_url: str) -> None:
    browser.get(page_url)
    # by locale: punctuation first, case ignored ("Car" between "bicycle" and "dog")
    names = [ODD, "bicycle", "Car", "dog", "person", "traffic light", "zebra"]
    assert _click_header(browser, 0) == "class▲"
    assert _column(browser, 0) == names
    assert _click_header(browser, 0) == "class▼"
    assert _column(browser, 0) == names[::-1]


@needs_chromium
def test_a_clicked_image_opens_full_size(browser, page_url: str) -> None:
    from selenium.webdriver.common.keys import Keys

    browser.get(page_url)
    box = browser.find_element("id", "lightbox")
    assert not box.is_displayed()
    browser.find_elements("css selector", "#plots img")[0].click()
    assert box.is_displayed()
    big = box.find_element("tag name", "img")
    assert big.get_property("naturalWidth") == IMAGES[PLOTS[0]][0]
    browser.find_element("tag name", "body").send_keys(Keys.ESCAPE)
    assert not box.is_displayed()
    browser.find_elements("css selector", "#worst img")[2].click()
    assert box.find_element("tag name", "img").get_property("naturalWidth") == 240
    box.click()
    assert not box.is_displayed()
    assert browser.execute_script("return document.images.length;") == len(IMAGES)
