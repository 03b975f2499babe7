"""The page of ``fasterrcnn serve`` in a real browser: Debian's Chromium driven by Selenium
(the system chromedriver; nothing is downloaded). The command runs with name-seeded weights;
the page gets a real image and a broken one, and its table, drawn boxes, filters and JSON
download are checked against the API's JSON for the same image. Skipped where Chromium or its
driver is absent (.ci/run installs them).
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
from helpers.seeded import DATA

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from helpers.browser import chromium, needs_chromium  # noqa: E402
from helpers.serving import cli_server, post_image  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from fasterrcnn.inference.drawing import class_color  # noqa: E402

IMAGE = DATA / "coco" / "val2017" / "000000087038.jpg"  # 640 x 480
TORCHVISION = "torchvision_fasterrcnn_resnet50_fpn"

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        driver.set_script_timeout(30)
        yield driver


@pytest.fixture(scope="module")
def server_port(tv_weights_path, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("serve_cli")
    with cli_server(["--model", TORCHVISION, "--weights", tv_weights_path], cwd) as port:
        yield port


def _rows(article) -> list[list[str]]:
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in article.find_elements(By.CSS_SELECTOR, "tbody tr")]  # fmt: skip


def _set_slider(browser, value: float) -> None:
    browser.execute_script(
        "const s = document.getElementById('score-slider');"
        "s.value = arguments[0]; s.dispatchEvent(new Event('input'));",
        str(value),
    )


def _pixel(browser, canvas, x: int, y: int) -> list[int]:
    return browser.execute_script(
        "return Array.from(arguments[0].getContext('2d').getImageData(arguments[1], "
        "arguments[2], 1, 1).data.slice(0, 3));",
        canvas, x, y,
    )  # fmt: skip


def test_page_draws_and_lists_the_api_detections(browser, server_port, tmp_path):
    reply = post_image(server_port, IMAGE.read_bytes(), score_threshold=0)
    assert reply.status == 200, reply.body
    api = reply.json()["detections"]
    assert len(api) > 10

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    browser.get(f"http://127.0.0.1:{server_port}/")
    WebDriverWait(browser, 30).until(
        lambda b: TORCHVISION in b.find_element(By.ID, "model-name").text
    )
    browser.find_element(By.ID, "file-input").send_keys(f"{IMAGE}\n{broken}")
    WebDriverWait(browser, 120).until(
        lambda b: (
            len(b.find_elements(By.CSS_SELECTOR, "article[data-state=done]")) == 1
            and len(b.find_elements(By.CSS_SELECTOR, "article[data-state=error]")) == 1
        )
    )
    good = browser.find_element(By.CSS_SELECTOR, "article[data-state=done]")
    bad = browser.find_element(By.CSS_SELECTOR, "article[data-state=error]")
    assert "broken.jpg: 400: image: not a readable image" in bad.text
    canvas = good.find_element(By.TAG_NAME, "canvas")
    assert (canvas.get_property("width"), canvas.get_property("height")) == (640, 480)

    # The slider (steps of 0.01) lets through the detections scoring at least its value.
    threshold = math.floor(api[9]["score"] * 100) / 100
    _set_slider(browser, threshold)
    shown = [d for d in api if d["score"] >= threshold]
    rows = _rows(good)
    assert len(rows) == len(shown) == int(canvas.get_attribute("data-drawn"))
    for row, det in zip(rows, shown, strict=True):
        assert row[1:4] == [det["label"], str(det["category_id"]), f"{det['score']:.5f}"]
        box = det["box"]
        assert [float(v) for v in row[4:]] == [box[k] for k in ("xmin", "ymin", "xmax", "ymax")]

    # The class filter keeps one class (the second most frequent: the seeded weights see
    # mostly one); its best box is drawn on top, in the class's colour.
    _set_slider(browser, 0)
    counts = Counter(d["category_id"] for d in api)
    assert len(counts) > 1
    category = counts.most_common(2)[1][0]
    Select(browser.find_element(By.ID, "class-filter")).select_by_value(str(category))
    same_class = [d for d in api if d["category_id"] == category]
    assert [r[2] for r in _rows(good)] == [str(category)] * len(same_class)
    assert [r[3] for r in _rows(good)] == [f"{d['score']:.5f}" for d in same_class]
    assert int(canvas.get_attribute("data-drawn")) == len(same_class)
    rgb = list(class_color(category)[::-1])
    box = same_class[0]["box"]
    middle = math.floor((box["ymin"] + box["ymax"]) / 2)
    for x in (box["xmin"], box["xmax"]):
        assert _pixel(browser, canvas, min(math.floor(x), 639), middle) == rgb

    # The JSON to download holds what is shown.
    downloaded = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0].href).then((r) => r.json()).then(done);",
        good.find_element(By.CSS_SELECTOR, "a.download"),
    )
    assert downloaded["detections"] == same_class
    assert downloaded["image"] == {"width": 640, "height": 480}

    # Filtering made no new request: one detect call per file.
    calls = browser.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter((e) => e.name.includes('/v1/detect')).length;"
    )
    assert calls == 2
