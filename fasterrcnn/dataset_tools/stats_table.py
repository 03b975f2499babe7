"""The text table of :class:`~fasterrcnn.dataset_tools.stats.DatasetStats` for the terminal."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fasterrcnn.dataset_tools.stats import DatasetStats

# Up to this many distinct image sizes are listed one by one; more are summarised.
LISTED_SIZES = 6
_INDENT = " " * 13


def _share(part: int, whole: int) -> str:
    return f"{part} ({100 * part / whole:.0f}%)" if whole else str(part)


def _plural(count: int, word: str, plural: str = "") -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _image_lines(stats: DatasetStats) -> list[str]:
    sizes = stats.image_sizes
    if not sizes.counts:
        line = "none known"
    elif len(sizes.counts) <= LISTED_SIZES:
        ordered = sorted(sizes.counts.items(), key=lambda item: (-item[1], item[0]))
        line = ", ".join(f"{w} x {h}: {n}" for (w, h), n in ordered) + " (width x height)"
    else:
        summary = sizes.summary()
        parts = [
            f"{name} {s['min']:g} / {s['median']:g} / {s['max']:g}" for name, s in summary.items()
        ]
        line = f"{len(sizes.counts)} distinct; " + ", ".join(parts) + " (min / median / max)"
    lines = [f"image sizes  {line}"]
    extra = []
    if sizes.from_headers:
        extra.append(f"{sizes.from_headers} read from the image files")
    if sizes.unreadable:
        extra.append(f"{sizes.unreadable} unknown (no size given, file unreadable)")
    if extra:
        lines.append(_INDENT + "; ".join(extra))
    return lines


def _class_lines(stats: DatasetStats) -> list[str]:
    counted = [c for c in stats.classes if c.boxes or c.ignored]
    empty = [c.name for c in stats.classes if not (c.boxes or c.ignored)]
    width = max([len("class"), *(len(c.name) for c in counted)])
    lines = [f"{'class':<{width}}  {'id':>5}  {'boxes':>7}  {'ignored':>7}"]
    lines += [
        f"{c.name:<{width}}  {c.category_id:>5}  {c.boxes:>7}  {c.ignored:>7}" for c in counted
    ]
    if empty:
        names = ", ".join(empty)
        lines += textwrap.wrap(
            f"without any box: {_plural(len(empty), 'class', 'classes')}: {names}",
            width=96,
            subsequent_indent="  ",
        )
    return lines


def stats_table(stats: DatasetStats) -> str:
    """Summary lines, one row per class that has boxes, then the reader's report."""
    without = stats.images_without_boxes
    details = [f"{stats.images_only_ignored} with ignored regions only"]
    if stats.background_images or stats.format == "yolo":
        details.append(f"{stats.background_images} without a label file")
    sizes = stats.size_classes
    size_line = "   ".join(
        f"{name}{label}: {_share(sizes[name], stats.boxes)}"
        for name, label in (("small", " (< 32x32)"), ("medium", " (< 96x96)"), ("large", ""))
    )
    lines = [
        f"dataset      {stats.source} ({stats.format})",
        f"images       {stats.images}: {stats.images_with_boxes} with boxes, {without} without"
        + (f" ({', '.join(details)})" if without else ""),
        f"boxes        {stats.boxes}, and {_plural(stats.ignored, 'ignored region')}",
        f"box sizes    {size_line}  (by box area)",
        *_image_lines(stats),
        "",
        *_class_lines(stats),
    ]
    report = [f"repaired: {n} {reason}" for reason, n in stats.repaired.items()]
    report += [f"dropped: {n} {reason}" for reason, n in stats.dropped.items()]
    report += list(stats.notes)
    if report:
        lines += ["", *report]
    return "\n".join(lines)
