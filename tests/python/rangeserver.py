"""A loopback HTTP server for files of a directory, with byte ranges and an optional delay.

Serves GET (whole or `Range: bytes=a-b` / `bytes=a-`, answered 206 with Content-Range) and
HEAD, as object stores and CDNs do. `delay` seconds are slept before each answer, to stand
for an object store's per-request latency. Every request is recorded (method, range), so
tests and benchmarks can count what a client asked for.
"""
from __future__ import annotations

import contextlib
import email.utils
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm holds the
    # body back for the client's delayed ACK (about 40 ms a response).
    disable_nagle_algorithm = True

    def log_message(self, *args):  # quiet: the record is in server.requests
        pass

    def _file(self):
        rel = self.path.split("?", 1)[0].lstrip("/")
        path = (self.server.root / rel).resolve()
        if self.server.root not in path.parents or not path.is_file():
            return None
        return path

    def _answer(self, send_body):
        time.sleep(self.server.delay)
        path = self._file()
        header = self.headers.get("Range")
        with self.server.lock:
            self.server.requests.append((self.command, header))
        if path is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        status = 200
        if header:
            m = RANGE.match(header.strip())
            if not m or int(m.group(1)) >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Last-Modified", email.utils.formatdate(path.stat().st_mtime, usegmt=True))
        self.send_header("ETag", f'"{size:x}-{int(path.stat().st_mtime):x}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not send_body:
            return
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left:
                block = f.read(min(left, 1 << 20))
                if not block:
                    break
                self.wfile.write(block)
                left -= len(block)

    def do_GET(self):
        self._answer(True)

    def do_HEAD(self):
        self._answer(False)


class RangeServer(ThreadingHTTPServer):
    daemon_threads = True
    # Clients open dozens of connections at once; the default backlog of 5 drops them.
    request_queue_size = 256

    def __init__(self, root: Path, delay: float = 0.0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = Path(root).resolve()
        self.delay = delay
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def reset(self):
        with self.lock:
            self.requests.clear()


@contextlib.contextmanager
def serve(root, delay: float = 0.0):
    """A RangeServer for ROOT on a free loopback port, running in a thread until exit."""
    server = RangeServer(root, delay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


if __name__ == "__main__":  # python rangeserver.py DIR [DELAY_S]: serve until interrupted
    import sys

    with serve(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0) as s:
        print(s.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    os._exit(0)
