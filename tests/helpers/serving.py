"""A ``fasterrcnn serve`` application on 127.0.0.1 for the tests (in a thread of the test
process, or as the ``fasterrcnn serve`` command), and a small HTTP client for it."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fasterrcnn.modeling.faster_rcnn import FasterRCNN
from fasterrcnn.serving.app import ServeOptions, create_app
from fasterrcnn.serving.server import listen, make_server


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)


@contextmanager
def app_server(model: FasterRCNN, name: str, options: ServeOptions) -> Iterator[int]:
    """Serve ``model`` on a free port of 127.0.0.1 in a thread; yields the port."""
    sock = listen("127.0.0.1", 0)
    server = make_server(create_app(model, name, options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


@contextmanager
def cli_server(args: list[object], cwd: Path, timeout: float = 120) -> Iterator[int]:
    """``fasterrcnn serve --port 0 ARGS`` in a subprocess; yields its port, stops it after."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fasterrcnn", "serve", "--port", "0", *map(str, args)],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server says where it listens
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, f"no address in {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        yield int(match.group(1))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, object] | None = None,
    timeout: float = 120,
) -> Reply:
    """One HTTP request on a fresh connection."""
    if query:
        path += "?" + urlencode(query)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read())  # fmt: skip
    finally:
        conn.close()


def post_image(port: int, data: bytes, content_type: str = "image/jpeg", **query: object) -> Reply:
    """``POST /v1/detect`` with ``data`` as the raw body."""
    return request(port, "POST", "/v1/detect", data, {"Content-Type": content_type}, query)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())  # fmt: skip
    for name, (filename, data) in files.items():
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n')  # fmt: skip
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
