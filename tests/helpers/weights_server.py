"""A weight-file server on 127.0.0.1 for the download tests (``FASTERRCNN_MIRROR`` points at it).

It serves the bytes in ``files`` by name, counts the requests per path, and can misbehave on
purpose: send files slowly, or drop the connection partway through a file.
"""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass, field


@dataclass
class WeightsServer:
    files: dict[str, bytes] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    # Seconds to wait after each chunk of CHUNK bytes (a slow link).
    delay: float = 0.0
    # Send only this many bytes of each file, then close the connection.
    drop_after: int | None = None
    base_url: str = ""
    _httpd: http.server.ThreadingHTTPServer | None = None

    CHUNK = 64 * 1024

    def start(self) -> WeightsServer:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                server.hits[name] = server.hits.get(name, 0) + 1
                data = server.files.get(name)
                if data is None:
                    self.send_error(404, "not found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                end = len(data) if server.drop_after is None else server.drop_after
                for start in range(0, end, server.CHUNK):
                    self.wfile.write(data[start : min(start + server.CHUNK, end)])
                    self.wfile.flush()
                    time.sleep(server.delay)
                if server.drop_after is not None:
                    self.close_connection = True

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
