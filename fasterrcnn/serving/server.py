"""Running the HTTP application: a listening socket, uvicorn, and :func:`serve`."""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from fasterrcnn.inference.protocol import BatchDetector
from fasterrcnn.serving.app import ServeOptions, create_app


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); OSError if it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def make_server(app: FastAPI, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for ``app``; ``server.run(sockets=[listen(...)])`` runs it."""
    config = uvicorn.Config(
        app, log_level=log_level, access_log=False, lifespan="on", timeout_keep_alive=30
    )
    return uvicorn.Server(config)


def url_of(sock: socket.socket) -> str:
    """The ``http://host:port/`` address a listening socket serves."""
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    return f"http://{url_host}:{port}/"


def serve(
    model: BatchDetector, name: str, sock: socket.socket, options: ServeOptions | None = None
) -> None:
    """Serve ``model`` (reported as ``name``) on the listening socket ``sock`` until the
    process is interrupted (Ctrl-C, SIGTERM); see :func:`~fasterrcnn.serving.app.create_app`."""
    make_server(create_app(model, name, options)).run(sockets=[sock])
