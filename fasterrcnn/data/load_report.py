"""What reading a dataset repaired, dropped and noticed, counted by reason.

Every reader fills one :class:`LoadReport` (a COCO file's is empty unless the reader repaired
something); ``fasterrcnn data stats`` prints it and training logs it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LoadReport:
    """``repaired``: boxes kept after a repair (reason -> count); ``dropped``: boxes, label
    files or images left out (reason -> count); ``notes``: other facts worth a line (such as
    images without a label file, read as background images); ``unlabelled_images``: how many
    images had no label file at all (YOLO reads them as background images)."""

    format: str = "coco"
    repaired: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    unlabelled_images: int = 0

    def lines(self) -> list[str]:
        """One line per reason and note, repairs first; empty when there is nothing to say."""
        lines = [f"repaired: {n} {reason}" for reason, n in sorted(self.repaired.items())]
        lines += [f"dropped: {n} {reason}" for reason, n in sorted(self.dropped.items())]
        return lines + list(self.notes)
