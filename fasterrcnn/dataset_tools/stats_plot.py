"""One PNG figure of :class:`~fasterrcnn.dataset_tools.stats.DatasetStats`: boxes per class,
box sizes, image sizes and images with and without boxes.

matplotlib is optional (``pip install matplotlib``); it is imported when a figure is drawn and
drawn through its Agg canvas, without pyplot, so no window or display is ever needed.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fasterrcnn.dataset_tools.stats import MEDIUM_AREA, SMALL_AREA, DatasetStats

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# The figure's size: FIGSIZE inches at DPI dots per inch (1400 x 1000 pixels).
FIGSIZE = (14.0, 10.0)
DPI = 100
IGNORED_COLOR = "#9e9e9e"
BOX_COLOR = "#3b7dd8"
MISSING_MATPLOTLIB = "plotting the statistics needs matplotlib: pip install matplotlib"


def check_plotting() -> None:
    """ImportError (one line naming ``pip install matplotlib``) when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError(MISSING_MATPLOTLIB)


def plot_stats(stats: DatasetStats, path: str | Path) -> Path:
    """Write the figure of ``stats`` to ``path`` as a PNG of FIGSIZE * DPI pixels."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(MISSING_MATPLOTLIB) from None
    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(f"{stats.source} ({stats.format}): {stats.images} images")
    grid = figure.add_gridspec(2, 3)
    _classes(figure.add_subplot(grid[0, :]), stats)
    _box_sizes(figure.add_subplot(grid[1, 0]), stats)
    _image_sizes(figure.add_subplot(grid[1, 1]), stats)
    _images(figure.add_subplot(grid[1, 2]), stats)
    path = Path(path)
    figure.savefig(path, format="png", dpi=DPI)
    return path


def _classes(axes: Axes, stats: DatasetStats) -> None:
    names = [c.name for c in stats.classes]
    boxes = [c.boxes for c in stats.classes]
    ignored = [c.ignored for c in stats.classes]
    positions = list(range(len(names)))
    axes.bar(positions, boxes, color=BOX_COLOR, label="boxes")
    if any(ignored):
        axes.bar(positions, ignored, bottom=boxes, color=IGNORED_COLOR, label="ignored regions")
    axes.legend(loc="upper right")
    axes.set_xticks(positions)
    size = max(4.0, min(9.0, 600 / max(len(names), 1)))
    axes.set_xticklabels(names, rotation=90, fontsize=size)
    axes.set_xlim(-0.6, max(len(names), 1) - 0.4)
    axes.set_ylabel("boxes")
    axes.set_title(f"boxes per class ({stats.boxes} boxes, {stats.ignored} ignored regions)")


def _box_sizes(axes: Axes, stats: DatasetStats) -> None:
    edges, counts = stats.size_edges, stats.size_counts
    widths = [right - left for left, right in itertools.pairwise(edges)]
    axes.bar(edges[:-1], counts, width=widths, align="edge", color=BOX_COLOR, edgecolor="white")
    sizes = stats.size_classes
    for area, style, name in ((SMALL_AREA, "--", "small | medium"),
                              (MEDIUM_AREA, ":", "medium | large")):  # fmt: skip
        side = round(area**0.5)
        axes.axvline(side, color="#d62728", linestyle=style, label=f"{side}: {name}")
    axes.legend(loc="upper right", fontsize=8)
    axes.set_xlabel("sqrt(box area), pixels")
    axes.set_ylabel("boxes")
    axes.set_title(f"box sizes: {sizes['small']} small, {sizes['medium']} medium, "
                   f"{sizes['large']} large")  # fmt: skip


def _image_sizes(axes: Axes, stats: DatasetStats) -> None:
    sizes = stats.image_sizes
    title = "image sizes"
    if sizes.unreadable:
        title += f" ({sizes.unreadable} unknown)"
    axes.set_title(title)
    axes.set_xlabel("width")
    axes.set_ylabel("height")
    if not sizes.counts:
        axes.text(0.5, 0.5, "no size known", ha="center", va="center", transform=axes.transAxes)
        return
    points: list[tuple[int, int]] = list(sizes.counts)
    counts = [sizes.counts[p] for p in points]
    largest = max(counts)
    area: Any = [20 + 280 * n / largest for n in counts]
    axes.scatter([w for w, _ in points], [h for _, h in points], s=area, alpha=0.6,
                 color=BOX_COLOR, edgecolors="black", linewidths=0.5)  # fmt: skip
    if len(points) <= 12 and largest > 1:  # how many images share each size
        for (w, h), n in zip(points, counts, strict=True):
            axes.annotate(str(n), (w, h), fontsize=8, ha="center", va="bottom",
                          xytext=(0, 6), textcoords="offset points")  # fmt: skip
    axes.set_xlim(0, 1.1 * max(w for w, _ in points))
    axes.set_ylim(0, 1.15 * max(h for _, h in points))


def _images(axes: Axes, stats: DatasetStats) -> None:
    without = stats.images_without_boxes
    bars = [
        ("with boxes", stats.images_with_boxes, BOX_COLOR),
        ("without boxes", without, "#e377c2"),
        ("only ignored\nregions", stats.images_only_ignored, IGNORED_COLOR),
        ("no label\nfile", stats.background_images, "#bcbd22"),
    ]
    positions = list(range(len(bars)))
    drawn = axes.bar(positions, [n for _, n, _ in bars], color=[c for _, _, c in bars])
    axes.bar_label(drawn, fontsize=8)
    axes.set_xticks(positions)
    axes.set_xticklabels([name for name, _, _ in bars], fontsize=8)
    axes.set_ylabel("images")
    axes.set_title(f"images with and without boxes ({stats.images} images)")
