"""Outputs that appear whole or not at all: a writer fills a temporary sibling of the output
(same folder, so that the final rename stays on one file system), which is renamed into
place only once everything in it was written; on any error the temporary is removed.

Write failures (a full disk, no permission) become a one-line :class:`DatasetError`.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fasterrcnn.data.json_checks import DatasetError


def _temporary_name(out: Path) -> Path:
    return out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            return


def _cannot_write(out: Path, err: OSError) -> DatasetError:
    return DatasetError(f"{out}: cannot write ({err.strerror or err})")


def check_output_folder(out: Path, *, replace: bool = False) -> None:
    """Refuse an output folder that is a file, or a folder with something in it (unless
    ``replace``, which swaps the old folder out for the new one)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DatasetError(f"{out}: exists and is not a folder")
    if not replace and out.is_dir() and any(out.iterdir()):
        raise DatasetError(
            f"{out}: the output folder exists and is not empty (name a new folder or empty it)"
        )


@contextmanager
def atomic_folder(out: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes ``out`` when the block ends without an
    error. ``out`` must not exist or be an empty folder; with ``replace`` an existing folder
    is replaced (removed once the new one is in place)."""
    out = Path(out)
    check_output_folder(out, replace=replace)
    try:
        created = _make_parents(out.parent)
        temp = _temporary_name(out)
        temp.mkdir()
    except OSError as err:
        raise _cannot_write(out, err) from None
    old: Path | None = None
    try:
        try:
            yield temp
            check_output_folder(out, replace=replace)  # again: it may have changed meanwhile
            if out.is_dir():
                if any(out.iterdir()):
                    old = _temporary_name(out)
                    os.replace(out, old)
                else:
                    out.rmdir()
            os.replace(temp, out)
        except OSError as err:
            raise _cannot_write(out, err) from None
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if old is not None:  # the replaced folder goes back where it was
            os.replace(old, out)
        _remove_empty(created)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(out: str | Path) -> Iterator[Path]:
    """Yield a temporary file path (not yet created) that replaces ``out`` when the block
    ends without an error; an existing file ``out`` is replaced, a folder refused."""
    out = Path(out)
    if out.is_dir():
        raise DatasetError(f"{out}: is a folder, not a file")
    try:
        created = _make_parents(out.parent)
    except OSError as err:
        raise _cannot_write(out, err) from None
    temp = _temporary_name(out)
    try:
        try:
            yield temp
            os.replace(temp, out)
        except OSError as err:
            raise _cannot_write(out, err) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        _remove_empty(created)
        raise
