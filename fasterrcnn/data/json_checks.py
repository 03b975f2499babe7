"""Reading and checking the JSON files of datasets and results: their values' kinds, and one
error type whose one-line message names the file and the problem."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard


class DatasetError(ValueError):
    """An annotation file, results file or image folder that cannot be used (one-line message)."""

    def __init__(self, message: str) -> None:
        super().__init__(message.replace("\r", " ").replace("\n", " "))


def is_int(value: object) -> TypeGuard[int]:
    """A JSON integer (booleans excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[float]:
    """A finite JSON number (booleans excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def is_box(value: object) -> TypeGuard[list[float]]:
    """A list of 4 finite numbers."""
    return isinstance(value, list) and len(value) == 4 and all(is_number(v) for v in value)


def kind(value: object) -> str:
    """How a JSON value is called in messages ("an object", "a list", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number"


@dataclass
class Tally:
    """Entries that point at unknown ids: how many, and the first one (``"entry 3 -> id 9"``)."""

    count: int = 0
    first: str = ""

    def add(self, example: str) -> None:
        self.first = self.first or example
        self.count += 1

    def problem(self, noun: str, what: str) -> str:
        """E.g. ``3 annotations point at unknown images (first: annotation 17 -> image_id 9)``."""
        verb = "points" if self.count == 1 else "point"
        nouns = noun if self.count == 1 else f"{noun}s"
        return f"{self.count} {nouns} {verb} at unknown {what} (first: {self.first})"


def read_json(path: Path) -> Any:
    """The parsed JSON of ``path``; a missing, unreadable or malformed file is a DatasetError."""
    if path.is_dir():
        raise DatasetError(f"{path}: is a directory, not a JSON file")
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    try:
        with path.open("rb") as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise DatasetError(f"{path}: not valid JSON ({where}: {error.msg})") from None
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not valid JSON (not UTF-8 text: {error.reason})") from None
    except RecursionError:
        raise DatasetError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError as error:  # e.g. an integer with too many digits
        raise DatasetError(f"{path}: not valid JSON ({error})") from None
    except OSError as error:
        raise DatasetError(f"{path}: cannot be read ({error.strerror or error})") from None
