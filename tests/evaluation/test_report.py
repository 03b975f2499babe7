"""``eval --report`` and ``evaluate(..., report=)`` end to end on the COCO slice's real images:
every file of the report holds what the modules it comes from compute (thresholds, confusion
matrix, errors by kind, metrics), the printed deploy line is the report's, the worst images
are the images with the most errors drawn in their styles, and every bad input is one line.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers.browser import NO_NETWORK, chromium, needs_chromium
from helpers.seeded import DATA

import fasterrcnn
from fasterrcnn.cli import main
from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.evaluation.coco_metrics import evaluate_results
from fasterrcnn.evaluation.confusion import confusion_matrix
from fasterrcnn.evaluation.error_kinds import count_errors
from fasterrcnn.evaluation.report.worst_images import (
    FALSE_POSITIVE,
    FOUND,
    MAX_SIDE,
    MISSED,
    draw_errors,
)
from fasterrcnn.evaluation.report.writer import ReportError, ReportOptions, write_report
from fasterrcnn.evaluation.results_json import load_results
from fasterrcnn.evaluation.thresholds import thresholds_of_results

COCO = DATA / "coco"
ANNOTATIONS = COCO / "instances_val2017.json"
IMAGES = COCO / "val2017"
FILES = (
    "index.html", "metrics.json", "thresholds.json", "errors.json", "confusion_matrix.json",
    "pr_curves.png", "f1_curve.png", "confusion_matrix.png", "error_kinds.png",
)  # fmt: skip


def _perturbed(dataset: CocoDataset, seed: int = 0) -> np.ndarray:
    """The slice's ground truth as detections: jittered, some relabelled, some dropped, some
    doubled, plus background boxes; scores random."""
    rng = np.random.default_rng(seed)
    ids = dataset.classes.category_ids
    rows = []
    for image in dataset.images:
        for a in dataset.annotations(image.id):
            if rng.random() < 0.15:
                continue  # missed
            x, y, w, h = a["bbox"]
            jitter = rng.normal(0, 0.1, 4) * [w, h, w, h]
            box = [x + jitter[0], y + jitter[1], max(w + jitter[2], 1), max(h + jitter[3], 1)]
            category = a["category_id"] if rng.random() > 0.1 else ids[rng.integers(len(ids))]
            rows.append([image.id, *box, rng.uniform(0.05, 1), category])
            if rng.random() < 0.1:
                rows.append([image.id, *box, rng.uniform(0.05, 1), category])
        for _ in range(3):
            x, y = rng.uniform(0, image.width - 40), rng.uniform(0, image.height - 40)
            rows.append([image.id, x, y, 40, 40, rng.uniform(0.05, 1), ids[rng.integers(80)]])
    return np.array(rows, np.float64)


def _results_file(path: Path, results: np.ndarray) -> Path:
    path.write_text(json.dumps([
        {"image_id": int(r[0]), "bbox": [float(v) for v in r[1:5]], "score": float(r[5]),
         "category_id": int(r[6])} for r in results
    ]))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def slice_report(tmp_path_factory) -> tuple[Path, np.ndarray, str]:
    """``eval --results --report`` of the perturbed ground truth: the folder, the results
    as read back and what the command printed."""
    folder = tmp_path_factory.mktemp("report")
    dataset = CocoDataset.load(ANNOTATIONS, IMAGES)
    results_file = _results_file(folder / "results.json", _perturbed(dataset))
    report = folder / "report"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["eval", "--annotations", str(ANNOTATIONS), "--images", str(IMAGES),
                       "--results", str(results_file), "--report", str(report),
                       "--report-images", "4"])  # fmt: skip
    assert status == 0
    return report, load_results(results_file, dataset), out.getvalue()


def test_report_files_hold_what_their_modules_compute(slice_report):
    report, results, printed = slice_report
    dataset = CocoDataset.load(ANNOTATIONS, IMAGES)
    for name in FILES:
        assert (report / name).is_file(), name
    thresholds = json.loads((report / "thresholds.json").read_text())
    assert thresholds == json.loads(json.dumps(thresholds_of_results(dataset, results)))
    best = thresholds["overall"]
    assert 0 < best["threshold"] <= 1 and 0 < best["f1"] <= 1
    line = (f"deploy threshold {best['threshold']:.2f}: precision {best['precision']:.2f}, "
            f"recall {best['recall']:.2f}, F1 {best['f1']:.2f}")  # fmt: skip
    assert line in printed.splitlines()
    matrix = json.loads((report / "confusion_matrix.json").read_text())
    expected = confusion_matrix(dataset, results, score_threshold=best["threshold"])
    assert matrix == expected.to_dict()
    assert matrix["score_threshold"] == best["threshold"] and matrix["iou_threshold"] == 0.5
    errors = json.loads((report / "errors.json").read_text())
    counted = count_errors(dataset, results, score_threshold=best["threshold"])
    assert errors == json.loads(json.dumps(counted.to_dict()))
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(evaluate_results(dataset, results).to_dict()))
    # The worst images: the four with the most errors, in order, drawn and in the page.
    worst = counted.worst(4)
    drawn = sorted((report / "worst").glob("*.jpg"))
    assert len(drawn) == 4
    page = (report / "index.html").read_text()
    for rank, (image_errors, path) in enumerate(zip(worst, drawn, strict=True), start=1):
        file_name = dataset.images[dataset.index_of(image_errors.image_id)].file_name
        assert path.name == f"{rank:02d}_{Path(file_name).stem}.jpg"
        pixels = cv2.imread(str(path))
        image = dataset.images[dataset.index_of(image_errors.image_id)]
        assert pixels.shape[:2] == (image.height, image.width)  # the slice's fit in MAX_SIDE
        assert f"{file_name}: {image_errors.false_positives} false positive" in page
    assert f"report: {report / 'index.html'} in " in printed


def test_report_thresholds_follow_the_options(slice_report, tmp_path):
    _, results, _ = slice_report
    dataset = CocoDataset.load(ANNOTATIONS, IMAGES)
    options = ReportOptions(tmp_path / "r", iou_threshold=0.6, score_threshold=0.3, images=0)
    summary = write_report(dataset, results, options, progress=False)
    matrix = json.loads((tmp_path / "r" / "confusion_matrix.json").read_text())
    assert matrix == confusion_matrix(dataset, results, iou_threshold=0.6,
                                      score_threshold=0.3).to_dict()  # fmt: skip
    errors = json.loads((tmp_path / "r" / "errors.json").read_text())
    counted = count_errors(dataset, results, score_threshold=0.3, iou_threshold=0.6)
    assert errors == json.loads(json.dumps(counted.to_dict()))
    assert summary.score_threshold == 0.3 and not (tmp_path / "r" / "worst").exists()


def test_evaluate_writes_the_report_of_its_own_run(tv_model, tmp_path):
    metrics = fasterrcnn.evaluate(tv_model, IMAGES, ANNOTATIONS, max_images=2,
                                  results_file=tmp_path / "results.json",
                                  report=tmp_path / "report", progress=False)  # fmt: skip
    written = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert written == json.loads(json.dumps(metrics.to_dict()))
    dataset = CocoDataset.load(ANNOTATIONS, IMAGES)
    results = load_results(tmp_path / "results.json", dataset)
    first2 = [image.id for image in dataset.images[:2]]
    thresholds = json.loads((tmp_path / "report" / "thresholds.json").read_text())
    assert thresholds == json.loads(json.dumps(thresholds_of_results(dataset, results, first2)))


def test_empty_results_give_a_report_of_zeros(tmp_path, capsys):
    results = _results_file(tmp_path / "empty.json", np.zeros((0, 7)))
    status = main(["eval", "--annotations", str(ANNOTATIONS), "--results", str(results),
                   "--report", str(tmp_path / "report")])  # fmt: skip
    assert status == 0
    assert "deploy threshold: none (no true positive)" in capsys.readouterr().out
    thresholds = json.loads((tmp_path / "report" / "thresholds.json").read_text())
    assert thresholds["overall"] is None
    assert set(thresholds["precision_targets"].values()) == {None}
    matrix = np.array(json.loads((tmp_path / "report" / "confusion_matrix.json").read_text())
                      ["matrix"])  # fmt: skip
    crowd = sum(a["iscrowd"] for a in json.loads(ANNOTATIONS.read_text())["annotations"])
    assert matrix[:, -1].sum() == 90 - crowd and matrix[:, :-1].sum() == 0
    errors = json.loads((tmp_path / "report" / "errors.json").read_text())
    assert errors["total"]["missed"] == 90 - crowd and errors["total"]["background"] == 0


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["--report-iou", "1.5"], "iou threshold must be in [0, 1], not 1.5"),
        (["--report-score", "-0.1"], "score threshold must be in [0, 1], not -0.1"),
        (["--report-images", "-1"], "image count must be at least 0"),
    ],
)
def test_bad_report_options_are_one_line_before_the_work(options, problem, tmp_path, capsys):
    status = main(["eval", "--annotations", str(ANNOTATIONS), "--images", str(IMAGES),
                   "--model", "torchvision_fasterrcnn_resnet50_fpn", "--report",
                   str(tmp_path / "r"), *options])  # fmt: skip
    assert status == 2
    assert problem in _error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_a_report_folder_that_is_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    for target in (tmp_path / "taken", tmp_path / "taken" / "inside"):
        status = main(["eval", "--annotations", str(ANNOTATIONS), "--results",
                       str(tmp_path / "absent.json"), "--report", str(target)])  # fmt: skip
        assert status == 2
        assert f"{tmp_path / 'taken'} is a file, not a folder" in _error_line(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_report_folder(tmp_path):
    (tmp_path / "locked").mkdir(mode=0o500)
    with pytest.raises(ReportError, match="permission denied"):
        ReportOptions(tmp_path / "locked" / "report").check()


def test_results_naming_unknown_images_are_one_line(tmp_path, capsys):
    results = _results_file(tmp_path / "r.json", np.array([[5, 1, 1, 5, 5, 0.9, 1]]))
    status = main(["eval", "--annotations", str(ANNOTATIONS), "--results", str(results),
                   "--report", str(tmp_path / "report")])  # fmt: skip
    assert status == 2
    assert "r.json" in _error_line(capsys)


def test_an_unreadable_worst_image_is_skipped_in_one_line(slice_report, tmp_path, capsys):
    _, results, _ = slice_report
    images = tmp_path / "images"
    images.mkdir()
    dataset = CocoDataset.load(ANNOTATIONS, IMAGES)
    for image in dataset.images:
        (images / image.file_name).symlink_to(IMAGES / image.file_name)
    worst = count_errors(dataset, results, score_threshold=0.5).worst(1)[0]
    broken = dataset.images[dataset.index_of(worst.image_id)].file_name
    (images / broken).unlink()
    (images / broken).write_bytes(b"not a jpeg")
    summary = write_report(CocoDataset.load(ANNOTATIONS, images), results,
                           ReportOptions(tmp_path / "r", score_threshold=0.5, images=3),
                           progress=False)  # fmt: skip
    assert len(summary.skipped) == 1 and broken in summary.skipped[0]
    assert len(list((tmp_path / "r" / "worst").glob("*.jpg"))) == 2


def test_drawn_errors_take_their_styles():
    """On a grey image: a found box's detection green, a missed box red, a false positive
    orange, each outline inside its box's edges; a big image scaled to MAX_SIDE."""
    from fasterrcnn.evaluation.error_kinds import ImageErrors

    image = np.full((2 * MAX_SIDE, 2 * MAX_SIDE, 3), 128, np.uint8)  # scaled by 1/2
    annotations = [
        {"bbox": [100, 100, 400, 400], "category_id": 1, "iscrowd": 0},  # found
        {"bbox": [1000, 1000, 400, 400], "category_id": 1, "iscrowd": 0},  # missed
    ]
    detections = np.array([
        [1, 100, 100, 400, 400, 0.9, 1],  # the true positive
        [1, 1600, 200, 300, 300, 0.8, 1],  # background
    ], np.float64)  # fmt: skip
    errors = ImageErrors(1, detections, ("true_positive", "background"), (1,))
    drawn = draw_errors(image, errors, annotations, {1: "cat"})
    assert drawn.shape == (MAX_SIDE, MAX_SIDE, 3)
    # Right edges (tags sit on the top-left corners): the last column inside each box.
    assert tuple(drawn[150, 249]) == FOUND  # x 50..249 after scaling
    assert tuple(drawn[600, 699]) == MISSED  # x 500..699; dashes start at the top
    assert tuple(drawn[150, 949]) == FALSE_POSITIVE  # x 800..949
    assert tuple(drawn[150, 950]) == (128, 128, 128)  # nothing outside the box


def test_a_report_with_faster_coco_eval_metrics(slice_report, tmp_path):
    """The curves and thresholds need pycocotools' per-image matches, which faster-coco-eval
    keeps in C++: the report runs pycocotools for them and gives the same files."""
    pytest.importorskip("faster_coco_eval")
    report, results, _ = slice_report
    results_file = _results_file(tmp_path / "results.json", results)
    status = main(["eval", "--annotations", str(ANNOTATIONS), "--results", str(results_file),
                   "--evaluator", "faster-coco-eval", "--report", str(tmp_path / "r"),
                   "--report-images", "0"])  # fmt: skip
    assert status == 0
    for name in ("thresholds.json", "confusion_matrix.json", "errors.json"):
        assert (tmp_path / "r" / name).read_text() == (report / name).read_text(), name


@needs_chromium
def test_the_real_report_in_chromium_offline(slice_report):
    """The slice's report from a file:// URL with the network cut off: every image loads at
    its file's width, and the per-class table sorts by AP (classes without AP last)."""
    report, _, _ = slice_report
    metrics = json.loads((report / "metrics.json").read_text())
    with chromium(*NO_NETWORK) as browser:
        browser.get((report / "index.html").as_uri())
        images = browser.execute_script(
            "return Array.from(document.images).map((img) => [img.complete, img.naturalWidth]);"
        )
        files = [*(report / name for name in FILES if name.endswith(".png")),
                 *sorted((report / "worst").glob("*.jpg"))]  # fmt: skip
        assert len(images) == len(files) == 8
        widths = sorted(cv2.imread(str(path)).shape[1] for path in files)
        assert all(complete for complete, _ in images)
        assert sorted(width for _, width in images) == widths
        heads = browser.find_elements("css selector", "#class-table th")
        ap = [head.text for head in heads].index("AP")
        heads[ap].click()
        shown = browser.execute_script(
            "return Array.from(document.querySelectorAll('#class-table tbody tr'))"
            ".map((row) => [row.cells[0].textContent, row.cells[arguments[0]].textContent]);",
            ap,
        )
    by_ap = sorted((c for c in metrics["per_category"] if c["AP"] is not None),
                   key=lambda c: c["AP"])  # fmt: skip
    assert [name for name, _ in shown[: len(by_ap)]] == [c["name"] for c in by_ap]
    assert {value for _, value in shown[len(by_ap) :]} == {"-"}
    assert len(shown) == 80
