"""Published weight files on demand: download, verify, cache.

A file is fetched from its URL (or from ``$FASTERRCNN_MIRROR/<file name>``) into a temporary
file beside its cache entry, with a progress bar on stderr, checked against its length and
checksum, and only then renamed into place: the cache never holds a partial or unverified
file under a final name. A lock file per entry makes concurrent processes (the ranks of a
``torchrun`` job) download once; the others wait and use the result. A cached file is used
without the network.

The cache folder is ``$FASTERRCNN_HOME``, else ``$XDG_CACHE_HOME/fasterrcnn`` (``~/.cache``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock, Timeout
from tqdm import tqdm

from fasterrcnn.zoo.key_maps import Family
from fasterrcnn.zoo.presets import PRESETS, WeightsInfo

MIRROR_ENV = "FASTERRCNN_MIRROR"
_CHUNK = 1 << 20
_LOCK_TIMEOUT_S = 3600.0  # another process's download of a large file over a slow link


class DownloadError(RuntimeError):
    """Weights that could not be fetched or verified; the message is one line."""


def cache_dir() -> Path:
    """``$FASTERRCNN_HOME`` if set, else ``$XDG_CACHE_HOME/fasterrcnn`` (``~/.cache``)."""
    home = os.environ.get("FASTERRCNN_HOME")
    if home:
        return Path(home)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fasterrcnn"


def cached_path(info: WeightsInfo) -> Path:
    """Where ``info``'s file is (or would be) cached; also where a user may put it by hand."""
    return cache_dir() / info.file_name


def source_url(info: WeightsInfo) -> str:
    """``info.url``, or ``<$FASTERRCNN_MIRROR>/<file name>`` when a mirror is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{info.file_name}" if mirror else info.url


def file_digests(path: Path) -> tuple[str, str]:
    """(SHA-256, MD5) of a file, hex."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            sha256.update(block)
            md5.update(block)
    return sha256.hexdigest(), md5.hexdigest()


def checksum_problem(path: Path, info: WeightsInfo) -> str | None:
    """Why ``path`` is not ``info``'s file by its checksums, or None if it is (or if the
    source publishes no checksum)."""
    if info.sha256 is None and info.md5 is None:
        return None
    return _digest_problem(file_digests(path), info)


def _digest_problem(digests: tuple[str, str], info: WeightsInfo) -> str | None:
    sha256, md5 = digests
    if info.sha256 is not None and not sha256.startswith(info.sha256):
        return f"sha256 {sha256[: len(info.sha256)]}, expected {info.sha256}"
    if info.md5 is not None and not md5.startswith(info.md5):
        return f"md5 {md5[: len(info.md5)]}, expected {info.md5}"
    return None


def fetch_weights(info: WeightsInfo, timeout: float = 30.0, progress: bool = True) -> Path:
    """Path of ``info``'s file in the cache, downloading it first if it is not there.

    Raises :class:`DownloadError` (one line) when the file can be neither found in the cache
    nor downloaded and verified; nothing is left under the final name then.
    """
    target = cached_path(info)
    if target.is_file():
        return target
    _make_folder(target.parent)
    try:
        with FileLock(_lock_path(target), timeout=_LOCK_TIMEOUT_S):
            if target.is_file():  # another process downloaded it while this one waited
                return target
            _download(info, target, timeout, progress)
    except Timeout:
        raise DownloadError(
            f"gave up waiting for another process to download {target} (lock {_lock_path(target)})"
        ) from None
    return target


def _lock_path(target: Path) -> Path:
    """The lock file of a cache entry, kept apart in ``.locks`` (lock files stay after use:
    removing one could let two processes hold "the" lock at once)."""
    return target.parent / ".locks" / f"{target.name}.lock"


def _make_folder(folder: Path) -> None:
    try:
        (folder / ".locks").mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=folder)
        probe.close()
    except OSError as err:
        raise DownloadError(
            f"cache folder {folder} is not writable ({err.strerror or err}); "
            "set FASTERRCNN_HOME to a writable folder"
        ) from None


def _download(info: WeightsInfo, target: Path, timeout: float, progress: bool) -> None:
    url = source_url(info)
    by_hand = f"put the file at {target} by hand or set {MIRROR_ENV}"
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{info.file_name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            received, expected = _copy_url(url, out, timeout, progress, info.file_name)
        if expected is not None and received != expected:
            raise DownloadError(
                f"download of {url} ended after {received} of {expected} bytes; {by_hand}"
            )
        problem = checksum_problem(tmp, info)
        if problem is not None:
            raise DownloadError(
                f"{url}: checksum mismatch ({problem}); nothing was cached, {by_hand}"
            )
        os.replace(tmp, target)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        raise DownloadError(f"could not download {url} ({_reason(err)}); {by_hand}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _copy_url(
    url: str, out: BinaryIO, timeout: float, progress: bool, name: str
) -> tuple[int, int | None]:
    """Stream ``url`` into ``out``: (bytes received, Content-Length if the server sent one)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(
            total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
            file=sys.stderr, disable=not progress,
        ) as bar:  # fmt: skip
            while True:
                try:
                    block = response.read(_CHUNK)
                except http.client.IncompleteRead as err:  # the connection dropped mid-file
                    out.write(err.partial)
                    received += len(err.partial)
                    break
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(len(block))
    return received, expected


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None)
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    text = str(reason if reason is not None else err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def published_file(path: Path, family: Family) -> WeightsInfo | None:
    """The published file of a ``family`` preset that ``path`` is, recognised by checksum, if
    that file needs settings of its own (:attr:`WeightsInfo.has_settings`); else None.

    So a published file runs the same whether it came through the cache or is passed as a
    path. Files of families without such files are not read here."""
    candidates = [
        p.weights
        for p in PRESETS.values()
        if p.family == family
        and p.weights is not None
        and p.weights.has_settings
        and (p.weights.sha256 or p.weights.md5)
    ]
    if not candidates or not path.is_file():
        return None
    digests = file_digests(path)
    return next((info for info in candidates if _digest_problem(digests, info) is None), None)
