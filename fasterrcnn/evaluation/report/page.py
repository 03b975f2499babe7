"""The one self-contained HTML page of an evaluation report (``index.html``).

The page works offline from a ``file://`` URL: its style sheet and script are inline
(:mod:`.page_assets`, no library, no font, no request), and every image is embedded as a
base64 ``data:`` URI read from the report folder (``image/png`` for ``.png``,
``image/jpeg`` for ``.jpg`` / ``.jpeg``, by the file's suffix, any case). An image the page
names but the folder lacks raises :class:`MissingImageError` (nothing is skipped silently);
another suffix raises ``ValueError``. All text is escaped with :func:`html.escape`.

Numbers: the COCO stats are shown in percent with one decimal (``0.3571`` -> ``35.7``) and a
negative one (pycocotools' ``-1``, undefined) as ``-``; in the per-class table an int is
shown as is, a float with 3 decimals, and ``None`` (or a NaN float) as ``-``
(:func:`format_stat`, :func:`format_cell`).

The per-class table sorts by a column when its header is clicked: ascending first, a second
click descending (the header shows ▲ / ▼). A column whose filled cells are all numbers sorts
numerically by the cells' ``data-value`` (the raw number); any other column by a locale
collator on the cell's text. A ``-`` cell carries no ``data-value`` and sorts last in both
directions; ties keep the order they had. A click on an image shows it full size.
"""

from __future__ import annotations

import base64
import math
import numbers
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TypeGuard

from fasterrcnn.evaluation.report.page_assets import CSS, JS

Cell = str | int | float | None

MIME_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
MISSING = "-"


class MissingImageError(FileNotFoundError):
    """An image of the page is not in the report folder (the message names the file)."""


@dataclass(frozen=True)
class PageImage:
    """One image of the page: its file relative to the report folder and its caption."""

    file: str  # e.g. "worst/000000001234.jpg" or "pr_curves.png"
    caption: str  # e.g. "000000001234.jpg: 3 false positives, 2 missed"


@dataclass(frozen=True)
class ReportPage:
    """What the page shows, top to bottom: the title, the summary lines, the COCO stats,
    the plots, the per-class table and the worst images (a section with nothing to show is
    left out)."""

    title: str  # e.g. "Evaluation of faster_rcnn_res50 on val2017"
    summary: tuple[str, ...]  # one line each
    stats: dict[str, float]  # pycocotools' 12 stats by name (AP, AP50, ...), -1.0 undefined
    plots: tuple[PageImage, ...]
    class_columns: tuple[str, ...]  # the per-class table's header, the class name first
    class_rows: tuple[tuple[Cell, ...], ...]  # one row per class, as long as class_columns
    worst_images: tuple[PageImage, ...]  # in order, the worst first
    legend: str = ""  # one line on the drawing styles of the worst images


def format_stat(value: float) -> str:
    """A COCO stat in percent with one decimal (``0.3571`` -> ``"35.7"``); ``"-"`` for a
    negative one (pycocotools' ``-1``: undefined) or a NaN."""
    if math.isnan(value) or value < 0:
        return MISSING
    return f"{100 * value:.1f}"


def _is_number(value: Cell) -> TypeGuard[int | float]:
    """A number, not a bool (NumPy's numbers too)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_missing(value: Cell) -> bool:
    return value is None or (_is_number(value) and math.isnan(float(value)))


def format_cell(value: Cell) -> str:
    """A cell of the per-class table as shown: ``"-"`` for ``None`` or a NaN, an integer as
    is, another number with 3 decimals (``0.12345`` -> ``"0.123"``), text as is."""
    if _is_missing(value):
        return MISSING
    if _is_number(value):
        return str(int(value)) if isinstance(value, numbers.Integral) else f"{float(value):.3f}"
    return str(value)


def _raw_number(value: int | float) -> str:
    """The ``data-value`` of a numeric cell: the number in full, as JavaScript's ``Number``
    reads it."""
    if isinstance(value, numbers.Integral):
        return str(int(value))
    number = float(value)
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return repr(number)


def image_data_uri(folder: Path, file: str) -> str:
    """The ``data:`` URI of ``folder / file`` (base64), its type by the suffix."""
    path = folder / file
    mime = MIME_TYPES.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"report image {file}: not a .png, .jpg or .jpeg file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingImageError(f"report image not found: {path}") from None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _figures(images: tuple[PageImage, ...], folder: Path, kind: str) -> str:
    figures = [
        f'<figure><img src="{image_data_uri(folder, image.file)}" alt="{escape(image.caption)}">'
        f"<figcaption>{escape(image.caption)}</figcaption></figure>"
        for image in images
    ]
    return f'<div class="grid {kind}">\n' + "\n".join(figures) + "\n</div>"


def _stats_section(stats: dict[str, float]) -> str:
    cards = [
        f'<div class="stat" title="{escape(repr(float(value)))}">'
        f'<span class="name">{escape(name)}</span>'
        f'<span class="value">{format_stat(value)}</span></div>'
        for name, value in stats.items()
    ]
    return (
        '<section id="stats"><h2>COCO metrics (%)</h2><div class="stats">\n'
        + "\n".join(cards)
        + "\n</div></section>"
    )


def _numeric_columns(page: ReportPage) -> list[bool]:
    """Per column: every filled cell is a number, and one at least is filled."""
    numeric = []
    for c in range(len(page.class_columns)):
        filled = [row[c] for row in page.class_rows if not _is_missing(row[c])]
        numeric.append(bool(filled) and all(_is_number(value) for value in filled))
    return numeric


def _cell(value: Cell, numeric: bool) -> str:
    text = escape(format_cell(value))
    if _is_missing(value):
        return f'<td class="{"num missing" if numeric else "missing"}">{text}</td>'
    if numeric and _is_number(value):
        return f'<td class="num" data-value="{_raw_number(value)}">{text}</td>'
    return f'<td data-value="{text}">{text}</td>'


def _class_section(page: ReportPage) -> str:
    width = len(page.class_columns)
    for row in page.class_rows:
        if len(row) != width:
            raise ValueError(f"per-class row {row!r}: {len(row)} cells for {width} columns")
    numeric = _numeric_columns(page)
    heads = "".join(
        f'<th data-type="{"number" if is_number else "text"}" tabindex="0" aria-sort="none">'
        f'{escape(name)}<span class="arrow"></span></th>'
        for name, is_number in zip(page.class_columns, numeric, strict=True)
    )
    rows = "\n".join(
        "<tr>" + "".join(_cell(v, n) for v, n in zip(row, numeric, strict=True)) + "</tr>"
        for row in page.class_rows
    )
    return (
        '<section id="classes"><h2>Per class</h2><div class="table-wrap">'
        f'<table id="class-table"><thead><tr>{heads}</tr></thead>\n'
        f"<tbody>\n{rows}\n</tbody></table></div></section>"
    )


def render_page(page: ReportPage, folder: Path) -> str:
    """The page's HTML text, its images read from ``folder`` and embedded (see the module
    docstring; :class:`MissingImageError` for an image not there)."""
    folder = Path(folder)
    sections = []
    if page.summary:
        lines = "".join(f"<li>{escape(line)}</li>" for line in page.summary)
        sections.append(f'<section id="summary"><ul class="summary">{lines}</ul></section>')
    if page.stats:
        sections.append(_stats_section(page.stats))
    if page.plots:
        plots = _figures(page.plots, folder, "plots")
        sections.append(f'<section id="plots"><h2>Plots</h2>\n{plots}\n</section>')
    if page.class_columns:
        sections.append(_class_section(page))
    if page.worst_images:
        legend = f'<p class="legend">{escape(page.legend)}</p>' if page.legend else ""
        worst = _figures(page.worst_images, folder, "images")
        sections.append(f'<section id="worst"><h2>Worst images</h2>{legend}\n{worst}\n</section>')
    title = escape(page.title)
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{title}</h1></header>\n<main>\n{body}\n</main>\n"
        '<div id="lightbox" hidden></div>\n'
        f"<script>{JS}</script>\n</body>\n</html>\n"
    )


def write_page(page: ReportPage, folder: Path) -> Path:
    """Write the page to ``folder / "index.html"`` (UTF-8) and return that path."""
    path = Path(folder) / "index.html"
    path.write_text(render_page(page, folder), encoding="utf-8")
    return path
