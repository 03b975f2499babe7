"""Matching a model's classes to a dataset's categories, by id or by name."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fasterrcnn.config import ClassTable


def _normalized(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class ClassMapping:
    """Model category id -> dataset category id.

    A model class maps to the dataset category with its id when the names agree too, else to
    the category with its name (case and spacing aside), else to nothing: its detections are
    left out. ``unmatched`` lists the dataset categories no model class maps to.
    """

    to_dataset: dict[int, int]
    unmatched: tuple[tuple[int, str], ...]
    num_dataset_categories: int

    @classmethod
    def between(cls, model: ClassTable, dataset: ClassTable) -> ClassMapping:
        names_by_id = {
            i: _normalized(n) for i, n in zip(dataset.category_ids, dataset.names, strict=True)
        }
        id_by_name = {
            _normalized(n): i for i, n in zip(dataset.category_ids, dataset.names, strict=True)
        }
        to_dataset = {}
        for model_id, name in zip(model.category_ids, model.names, strict=True):
            if names_by_id.get(model_id) == _normalized(name):
                to_dataset[model_id] = model_id
            elif _normalized(name) in id_by_name:
                to_dataset[model_id] = id_by_name[_normalized(name)]
        targets = set(to_dataset.values())
        unmatched = tuple(
            (i, n)
            for i, n in zip(dataset.category_ids, dataset.names, strict=True)
            if i not in targets
        )
        return cls(to_dataset, unmatched, len(dataset.category_ids))

    @property
    def matches_nothing(self) -> bool:
        return not self.to_dataset

    def note(self) -> str | None:
        """One line when some dataset categories match no model class; None when all do."""
        if not self.unmatched:
            return None
        cat_id, name = self.unmatched[0]
        return (
            f"the dataset's categories are not the model's: {len(self.unmatched)} of its "
            f"{self.num_dataset_categories} categories match no model class by id or name "
            f"(first: {name!r}, id {cat_id}) and get no detections"
        )

    def dataset_ids(self, model_ids: np.ndarray) -> np.ndarray:
        """Model category ids (N,) -> dataset category ids (N,) int64, -1 where none."""
        return np.array([self.to_dataset.get(int(i), -1) for i in model_ids], dtype=np.int64)
