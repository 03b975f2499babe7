"""``fasterrcnn models``: the presets, their published files and whether they are cached."""

from __future__ import annotations

import argparse

from fasterrcnn.zoo.catalog import catalog, format_size
from fasterrcnn.zoo.download import cache_dir


def add_parser(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser(
        "models",
        help="list the presets: source, published mAP, file, size, cached or not",
        description="List the presets and their published weight files. The cache folder is "
        "$FASTERRCNN_HOME (default ~/.cache/fasterrcnn).",
    )
    models.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rows = [("model", "source", "mAP", "file", "size", "cached")]
    for e in catalog():
        rows.append((
            e.name + (" (default)" if e.default else ""),
            e.family,
            f"{e.coco_map:.1f}" if e.coco_map is not None else "-",
            e.file_name or "-",
            format_size(e.size) if e.cached else "~" + format_size(e.size),
            "yes" if e.cached else "no",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"cache: {cache_dir()} (set FASTERRCNN_HOME to move it; sizes with ~ are estimates)")
    return 0
