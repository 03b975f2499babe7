"""Pascal VOC reading against hand-written XML files with hand-computed boxes: the 1-based
inclusive convention, decimals, difficult objects, class files, VOC roots and splits, and the
XML files labelImg and CVAT write."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.coco_slice import IMAGES

from fasterrcnn.data.dataset_files import detect_format, load_dataset
from fasterrcnn.data.json_checks import DatasetError
from fasterrcnn.data.voc_reader import read_voc

# Written as labelImg writes a file (its layout and tags), for image 000000000139.jpg.
LABELIMG = """<annotation>
	<folder>val2017</folder>
	<filename>000000000139.jpg</filename>
	<path>/home/user/val2017/000000000139.jpg</path>
	<source>
		<database>Unknown</database>
	</source>
	<size>
		<width>640</width>
		<height>426</height>
		<depth>3</depth>
	</size>
	<segmented>0</segmented>
	<object>
		<name>tv</name>
		<pose>Unspecified</pose>
		<truncated>0</truncated>
		<difficult>0</difficult>
		<bndbox>
			<xmin>6</xmin>
			<ymin>167</ymin>
			<xmax>155</xmax>
			<ymax>262</ymax>
		</bndbox>
	</object>
	<object>
		<name>person</name>
		<pose>Unspecified</pose>
		<truncated>1</truncated>
		<difficult>1</difficult>
		<bndbox>
			<xmin>1</xmin>
			<ymin>1</ymin>
			<xmax>640</xmax>
			<ymax>426</ymax>
		</bndbox>
	</object>
</annotation>
"""

# As CVAT's "PASCAL VOC 1.1" export writes it: decimals, an empty <depth>, attributes, and the
# object's tags in another order.
CVAT = """<?xml version="1.0" encoding="utf-8"?>
<annotation>
  <folder></folder>
  <filename>000000000802.jpg</filename>
  <source>
    <database>Unknown</database>
    <annotation>Unknown</annotation>
    <image>Unknown</image>
  </source>
  <size>
    <width>424</width>
    <height>640</height>
    <depth></depth>
  </size>
  <segmented>0</segmented>
  <object>
    <name>oven</name>
    <occluded>0</occluded>
    <bndbox>
      <xmin>10.25</xmin>
      <ymin>20.5</ymin>
      <xmax>100.75</xmax>
      <ymax>200.0</ymax>
    </bndbox>
    <attributes>
      <attribute>
        <name>rotation</name>
        <value>0.0</value>
      </attribute>
    </attributes>
    <truncated>0</truncated>
    <difficult>0</difficult>
  </object>
</annotation>
"""


def _xml(name: str, objects: list[tuple[str, tuple[float, ...], int]], size=(640, 480)) -> str:
    body = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    width, height = size
    return (
        f"<annotation><filename>{name}</filename><size><width>{width}</width>"
        f"<height>{height}</height><depth>3</depth></size>{body}</annotation>"
    )


@pytest.fixture
def voc_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "xml"
    folder.mkdir()
    (folder / "000000000139.xml").write_text(LABELIMG)
    (folder / "000000000802.xml").write_text(CVAT)
    return folder


def test_labelimg_and_cvat_files_one_based_to_continuous(voc_folder: Path) -> None:
    assert detect_format(voc_folder) == "voc"
    dataset = load_dataset(voc_folder, IMAGES)
    assert dataset.classes.names == ("oven", "person", "tv")  # the names found, sorted
    assert dataset.classes.category_ids == (1, 2, 3)
    first, second = dataset.images
    assert (first.file_name, first.height, first.width) == ("000000000139.jpg", 426, 640)
    assert (second.height, second.width) == (640, 424)
    tv, person = dataset.annotations(first.id)
    # xmin 6 .. xmax 155 (1-based, inclusive) is the continuous [5, 155]: width 150.
    assert tv["bbox"] == [5.0, 166.0, 150.0, 96.0]
    assert (tv["category_id"], tv["iscrowd"], tv["area"]) == (3, 0, 150.0 * 96.0)
    # The whole image, 1..640 x 1..426, marked difficult: an ignored (crowd) region.
    assert person["bbox"] == [0.0, 0.0, 640.0, 426.0]
    assert (person["category_id"], person["iscrowd"]) == (2, 1)
    (oven,) = dataset.annotations(second.id)
    assert oven["bbox"] == pytest.approx([9.25, 19.5, 91.5, 180.5])
    assert dataset.report.lines() == []


def test_class_file_sets_order_and_drops_other_names(voc_folder: Path, tmp_path: Path) -> None:
    classes = tmp_path / "names.txt"
    classes.write_text("tv\n\noven\n")
    dataset = read_voc(voc_folder, IMAGES, classes=classes)
    assert dataset.classes.names == ("tv", "oven")
    assert [a["category_id"] for a in dataset.annotations(1)] == [1]
    assert dataset.report.dropped == {"objects of classes not in names.txt": 1}
    # A classes.txt beside the XML files is used when no class file is named.
    (voc_folder / "classes.txt").write_text("person\ntv\noven\n")
    assert read_voc(voc_folder, IMAGES).classes.names == ("person", "tv", "oven")


def test_image_by_stem_else_filename_and_size_from_header(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(IMAGES / "000000000139.jpg", images / "a.jpg")
    shutil.copy(IMAGES / "000000000802.jpg", images / "b.jpg")
    xml = tmp_path / "xml"
    xml.mkdir()
    # Stem "a" finds a.jpg although <filename> says otherwise; "other" is found by <filename>,
    # and its <size> of 0 x 0 is read from the image's header (424 x 640).
    (xml / "a.xml").write_text(_xml("renamed.jpg", [("cat", (1, 1, 10, 10), 0)]))
    (xml / "other.xml").write_text(_xml("b.jpg", [("cat", (1, 1, 10, 10), 0)], size=(0, 0)))
    (xml / "lost.xml").write_text(_xml("nowhere.jpg", [("cat", (1, 1, 10, 10), 0)]))
    dataset = read_voc(xml, images)
    assert [(i.file_name, i.height, i.width) for i in dataset.images] == [
        ("a.jpg", 480, 640),
        ("b.jpg", 640, 424),
    ]
    assert dataset.report.dropped == {"XML files without an image": 1}


def test_boxes_clipped_and_empty_ones_dropped(tmp_path: Path) -> None:
    xml = tmp_path / "xml"
    xml.mkdir()
    objects = [("cat", (-5, 1, 700, 100), 0), ("cat", (700, 1, 800, 100), 0)]
    (xml / "000000000139.xml").write_text(_xml("x.jpg", objects, size=(640, 426)))
    dataset = read_voc(xml, IMAGES)
    assert [a["bbox"] for a in dataset.annotations(1)] == [[0.0, 0.0, 640.0, 100.0]]
    assert dataset.report.repaired == {"boxes clipped to the image": 1}
    assert dataset.report.dropped == {"boxes without area inside the image": 1}


def test_broken_files_are_left_out_and_named(voc_folder: Path) -> None:
    (voc_folder / "000000010764.xml").write_text("<annotation><object>")  # cut short
    (voc_folder / "000000011511.xml").write_text(_xml("x.jpg", [("cat", ("1", "nan", 5, 5), 0)]))
    dataset = read_voc(voc_folder, IMAGES)
    assert len(dataset) == 2
    assert dataset.report.dropped == {
        "XML files that cannot be parsed": 1,
        "XML files with a broken object": 1,
    }
    notes = "\n".join(dataset.report.notes)
    assert "000000010764.xml: no element found: line 1, column 20" in notes
    assert "000000011511.xml: object 1 (cat): <ymin> is 'nan'" in notes


def test_voc_root_with_split(tmp_path: Path) -> None:
    root = tmp_path / "VOC2007"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    shutil.copytree(IMAGES, root / "JPEGImages")
    (root / "Annotations" / "000000000139.xml").write_text(LABELIMG)
    (root / "Annotations" / "000000000802.xml").write_text(CVAT)
    (root / "ImageSets" / "Main" / "val.txt").write_text("000000000802\n")
    assert [i.file_name for i in load_dataset(root, split="val").images] == ["000000000802.jpg"]
    assert len(load_dataset(root)) == 2  # no split: every XML file
    with pytest.raises(DatasetError, match=r"no split 'test' .* splits: val"):
        load_dataset(root, split="test")


@pytest.mark.parametrize(
    ("write", "message"),
    [
        ("", r"no \.xml files"),
        ("dup", r"class 'cat' is listed twice"),
    ],
)
def test_unreadable_datasets(tmp_path: Path, write: str, message: str) -> None:
    xml = tmp_path / "xml"
    xml.mkdir()
    if write == "dup":
        (xml / "a.xml").write_text(_xml("a.jpg", []))
        (xml / "classes.txt").write_text("cat\ncat\n")
    with pytest.raises(DatasetError, match=message):
        read_voc(xml, IMAGES)


def test_labels_only_without_an_image_folder(voc_folder: Path) -> None:
    """To evaluate a results file: images named by <filename>, sizes from <size>."""
    dataset = read_voc(voc_folder)
    assert dataset.image_root is None
    assert [(i.file_name, i.height, i.width) for i in dataset.images] == [
        ("000000000139.jpg", 426, 640),
        ("000000000802.jpg", 640, 424),
    ]
    assert dataset.annotations(1)[0]["bbox"] == [5.0, 166.0, 150.0, 96.0]
    (voc_folder / "000000000802.xml").write_text(CVAT.replace("<width>424</width>", ""))
    assert read_voc(voc_folder).report.dropped == {
        "XML files without a size (and no image folder)": 1
    }
