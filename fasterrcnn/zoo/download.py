"""Downloading published weight files into a local cache, checked by SHA-256."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from fasterrcnn.zoo.presets import WeightsInfo


class DownloadError(RuntimeError):
    """Weights that could not be fetched or verified; the message is one line."""


def cache_dir() -> Path:
    """``$FASTERRCNN_HOME`` if set, else ``$XDG_CACHE_HOME/fasterrcnn`` (``~/.cache``)."""
    home = os.environ.get("FASTERRCNN_HOME")
    if home:
        return Path(home)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fasterrcnn"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_weights(info: WeightsInfo, timeout: float = 30.0) -> Path:
    """Path of ``info``'s file in the cache, downloading it first if needed.

    The file's SHA-256 must start with ``info.sha256`` (when given); a cached file that does
    not match is downloaded again.
    """
    target = cache_dir() / info.file_name
    if target.is_file() and _matches(target, info):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(info.url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        if not _matches(tmp, info):
            raise DownloadError(
                f"{info.file_name}: checksum mismatch (expected sha256 {info.sha256}...)"
            )
        tmp.replace(target)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or err
        raise DownloadError(f"could not download {info.url} ({reason})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _matches(path: Path, info: WeightsInfo) -> bool:
    return info.sha256 is None or sha256_of(path).startswith(info.sha256)
