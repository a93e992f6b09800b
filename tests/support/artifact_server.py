"""A tiny threaded HTTP server for artifacts: ``GET /artifacts/{sha256}`` with Range.

Serves blobs from memory, answers ``Range: bytes=N-`` (and ``N-M``) with 206 and a
Content-Range, and records every request. Fault hooks, per blob:

- ``cut_after(sha256, n, ...)``: the next requests send the full headers, then only
  ``n`` bytes of the body, then close the connection (one hook per request, in order);
- ``corrupt(sha256)``: serve the blob with one byte flipped;
- ``ignore_range``: answer every request with 200 and the whole body.

Example::

    with ArtifactServer() as server:
        digest = server.add(b"firmware")
        server.cut_after(digest, 100)
        url = f"{server.base_url}/artifacts/{digest}"
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

__all__ = ["ArtifactServer", "Request"]

# Also under the admin API's prefix, where `fleet-sim run --http http://host:port` looks.
_PATH = re.compile(r"^(?:/api/v1)?/artifacts/([0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass(frozen=True)
class Request:
    sha256: str
    range: str | None
    status: int


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        match = _PATH.match(self.path)
        blob = self.server.owner.blob(match.group(1)) if match else None
        if match is None or blob is None:
            self._record(match.group(1) if match else "", HTTPStatus.NOT_FOUND)
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        sha256 = match.group(1)
        start, end, status = self._span(len(blob))
        if status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
            self._record(sha256, status)
            self.send_response(status)
            self.send_header("Content-Range", f"bytes */{len(blob)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._record(sha256, status)
        body = blob[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(blob)}")
        self.end_headers()
        cut = self.server.owner.next_cut(sha256)
        try:
            self.wfile.write(body if cut is None else body[:cut])
            self.wfile.flush()
        except OSError:
            return
        if cut is not None:
            self.close_connection = True

    def _span(self, size: int) -> tuple[int, int, HTTPStatus]:
        header = self.headers.get("Range")
        match = _RANGE.match(header) if header and not self.server.owner.ignore_range else None
        if match is None:
            return 0, size - 1, HTTPStatus.OK
        start = int(match.group(1))
        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
        if start >= size or start > end:
            return 0, 0, HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE
        return start, end, HTTPStatus.PARTIAL_CONTENT

    def _record(self, sha256: str, status: int) -> None:
        self.server.owner.record(
            Request(sha256=sha256, range=self.headers.get("Range"), status=status)
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops SYNs when a fleet connects at once, and
    # each drop costs the client a 1 s, then 3 s, ... TCP retransmission.
    request_queue_size = 1024
    owner: ArtifactServer


class ArtifactServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._blobs: dict[str, bytes] = {}
        self._cuts: dict[str, deque[int]] = {}
        self.requests: list[Request] = []
        self.ignore_range = False
        self._server = _Server((host, 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            self._blobs[digest] = data
        return digest

    def corrupt(self, sha256: str) -> None:
        with self._lock:
            data = bytearray(self._blobs[sha256])
            data[len(data) // 2] ^= 0xFF
            self._blobs[sha256] = bytes(data)

    def cut_after(self, sha256: str, *sizes: int) -> None:
        with self._lock:
            self._cuts.setdefault(sha256, deque()).extend(sizes)

    def blob(self, sha256: str) -> bytes | None:
        with self._lock:
            return self._blobs.get(sha256)

    def next_cut(self, sha256: str) -> int | None:
        with self._lock:
            cuts = self._cuts.get(sha256)
            return cuts.popleft() if cuts else None

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def ranges_for(self, sha256: str) -> list[str | None]:
        with self._lock:
            return [r.range for r in self.requests if r.sha256 == sha256]

    def _serve(self) -> None:
        # A short poll keeps shutdown() quick; the default waits up to half a second.
        self._server.serve_forever(poll_interval=0.02)

    def start(self) -> ArtifactServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ArtifactServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
