"""``show_dataset`` and ``draw_ground_truth``: boxes drawn exactly on their edges, ignored
regions dashed and grey, one file per image, contact sheets of the right count and grid, and
an unreadable image skipped in one line."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fasterrcnn.data.coco import CocoDataset
from fasterrcnn.dataset_tools.show import CAPTION, PAD, SHEET_BACKGROUND, show_dataset
from fasterrcnn.inference.drawing import IGNORED_COLOR, class_color, draw_ground_truth

BACKGROUND_RGB = (150, 120, 90)
BOX = [10.0, 20.0, 30.0, 40.0]  # x 10..39, y 20..59
REGION = [60.0, 50.0, 40.0, 30.0]  # x 60..99, y 50..79
NAMES = {1: "cat", 2: "person"}


def _outline(shape: tuple[int, int], x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y1 : y2 + 1, [x1, x2]] = True
    mask[[y1, y2], x1 : x2 + 1] = True
    return mask


def _annotations() -> list[dict]:
    return [
        {"bbox": BOX, "category_id": 1, "iscrowd": 0},
        {"bbox": REGION, "category_id": 2, "iscrowd": 1},
    ]


def test_boxes_are_drawn_on_their_edges() -> None:
    image = np.full((100, 120, 3), BACKGROUND_RGB, np.uint8)
    drawn = draw_ground_truth(image, _annotations(), NAMES)
    original = image[:, :, ::-1]
    changed = (drawn != original).any(axis=2)
    # Below the box's label and left of everything the ignored region draws: its outline only.
    box_part = np.s_[20:, :60]
    assert np.array_equal(changed[box_part], _outline((100, 120), 10, 20, 39, 59)[box_part])
    assert (drawn[_outline((100, 120), 10, 20, 39, 59)] == class_color(1)).all()
    assert changed[:20, 10:40].any()  # the class name above the box
    # The ignored region: dashes of grey along its outline, gaps between them, nothing else.
    region_part = np.s_[50:, 60:]
    outline = _outline((100, 120), 60, 50, 99, 79)
    assert not (changed[region_part] & ~outline[region_part]).any()
    dashes = changed & outline
    assert (drawn[dashes] == IGNORED_COLOR).all()
    assert 0.3 < dashes[region_part].sum() / outline[region_part].sum() < 0.9
    assert IGNORED_COLOR != class_color(2)


@pytest.fixture
def folder_dataset(tmp_path) -> CocoDataset:
    """Seven readable images (two of them with the same stem) and an unreadable one."""
    root = tmp_path / "images"
    images, annotations = [], []
    for i in range(8):
        name = "x/a.png" if i == 0 else "y/a.png" if i == 1 else f"img{i}.png"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if i == 5:
            path.write_bytes(b"broken")
        else:
            cv2.imwrite(str(path), np.full((100, 120, 3), BACKGROUND_RGB[::-1], np.uint8))
        images.append({"id": 10 + i, "file_name": name, "width": 120, "height": 100})
        annotations.append({"image_id": 10 + i, "category_id": 1, "bbox": BOX})
    annotations.append({"image_id": 10, "category_id": 2, "bbox": REGION, "iscrowd": 1})
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "person"}]
    data = {"images": images, "annotations": annotations, "categories": categories}
    return CocoDataset.load(data, root)


def test_show_writes_images_and_sheets(tmp_path, folder_dataset) -> None:
    out = tmp_path / "out"
    lines: list[str] = []
    summary = show_dataset(folder_dataset, out, per_sheet=3, thumb_size=64, on_skip=lines.append)
    assert summary.drawn == 7
    assert len(lines) == 1 and lines == summary.skipped
    assert "img5.png" in lines[0] and "\n" not in lines[0]
    stems = ["a", "a_11", "img2", "img3", "img4", "img6", "img7"]
    assert sorted(p.name for p in out.glob("*.jpg")) == sorted(f"{s}.jpg" for s in stems)
    drawn = cv2.imread(str(out / "img2.jpg"))
    original = np.full((100, 120, 3), BACKGROUND_RGB[::-1], np.int16)
    difference = np.abs(drawn.astype(np.int16) - original).max(axis=2)
    assert (difference[25:55, 10] > 30).all() and (difference[25:55, 25] < 12).all()
    # 7 thumbnails, 3 a sheet in 2 columns: sheets of 2, 2 and 1 rows.
    assert [p.name for p in summary.sheets] == ["sheet_001.png", "sheet_002.png", "sheet_003.png"]
    cell_w, cell_h = 64 + 2 * PAD, 64 + CAPTION + 2 * PAD
    sheets = [cv2.imread(str(p)) for p in summary.sheets]
    assert [s.shape for s in sheets] == [(2 * cell_h, 2 * cell_w, 3)] * 2 + [
        (cell_h, 2 * cell_w, 3)
    ]
    last = sheets[-1]
    caption = last[PAD + 64 : cell_h, :cell_w]
    assert (caption != SHEET_BACKGROUND).any()  # the file name under the thumbnail
    assert (last[:, cell_w:] == SHEET_BACKGROUND).all()  # the empty cell


def test_max_images_and_bad_arguments(tmp_path, folder_dataset) -> None:
    summary = show_dataset(folder_dataset, tmp_path / "few", max_images=2, per_sheet=16)
    assert (summary.drawn, summary.skipped, len(summary.sheets)) == (2, [], 1)
    assert len(list((tmp_path / "few").glob("*.jpg"))) == 2
    with pytest.raises(ValueError, match="per_sheet"):
        show_dataset(folder_dataset, tmp_path / "none", per_sheet=0)
