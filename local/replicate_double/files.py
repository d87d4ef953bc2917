"""Output files: kept in memory and served like replicate.delivery (over HTTPS, by a second server)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from local.replicate_double.net import QuietHandler


@dataclass
class StoredFile:
    data: bytes
    content_type: str
    prediction_id: str
    declare_length: bool = True  # False: sent chunked, without Content-Length
    removed: bool = False  # data removal (one hour after the prediction ended): 404 from then on


@dataclass(frozen=True)
class FileRequest:
    """One request the file servers received (to check, e.g., that no API token leaked to them)."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    status: int
    tls: bool  # False: the plain-HTTP server (Fault.insecure_url)
    prediction_id: str | None  # whose file it was, if it exists (or existed)


class FileStore:
    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}
        self._lock = threading.Lock()
        self.requests: list[FileRequest] = []

    def put(self, path: str, file: StoredFile) -> None:
        with self._lock:
            self._files[path] = file

    def get(self, path: str) -> StoredFile | None:
        """The file at `path`, removed ones included (callers check `removed`)."""
        with self._lock:
            return self._files.get(path)

    def remove_prediction(self, prediction_id: str) -> None:
        with self._lock:
            for file in self._files.values():
                if file.prediction_id == prediction_id:
                    file.removed = True
                    file.data = b""

    def log(self, request: FileRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self.requests.clear()


class FileHandler(QuietHandler):
    """GET/HEAD of a stored file; 404 once its data was removed. No auth, as on the delivery CDN."""

    server: Any

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, *, body: bool) -> None:
        store: FileStore = self.server.owner.files
        path = self.path.split("?", 1)[0]
        file = store.get(path)
        status = 200 if file and not file.removed else 404
        store.log(
            FileRequest(
                method=self.command,
                path=path,
                headers={k.lower(): v for k, v in self.headers.items()},
                status=status,
                tls=self.server.owner.files_port == self.server.port,
                prediction_id=file.prediction_id if file else None,
            )
        )
        if file is None or status == 404:
            payload = b"Not Found"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", file.content_type)
        self.send_header("Cache-Control", "public, max-age=3600")
        self.send_header("Last-Modified", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
        if file.declare_length:
            self.send_header("Content-Length", str(len(file.data)))
            self.end_headers()
            if body:
                self.wfile.write(file.data)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if body:
            chunk = 64 * 1024
            for start in range(0, len(file.data), chunk):
                part = file.data[start : start + chunk]
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
