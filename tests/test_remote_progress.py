"""Remote `zoo pull` shows byte progress on a terminal: zoo.remote.download against a real HTTP server
(ranges honoured, so a resumed download counts what was already there), drawn by Progress.meter."""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from zoo.progress import Progress
from zoo.remote import Client, download

DATA = os.urandom(3 * 1024 * 1024 + 17)
SHA = hashlib.sha256(DATA).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        start = 0
        match = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(DATA) - start))
        self.send_header("ETag", f'"{SHA}"')
        self.end_headers()
        self.wfile.write(DATA[start:])

    def log_message(self, *args) -> None:
        pass


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize("resume", [False, True])
def test_a_download_on_a_terminal_draws_its_bytes_to_the_end(server, tmp_path, resume):
    partial = tmp_path / "a.incomplete"
    if resume:
        partial.write_bytes(DATA[: len(DATA) // 2])
    term = _Terminal()
    progress = Progress(stream=term)
    download(Client(server, None), {"sha256": SHA, "size": len(DATA)}, partial, progress.meter(len(DATA), "download"))
    assert hashlib.sha256(partial.read_bytes()).hexdigest() == SHA
    frames = term.getvalue().split("\r")[1:]
    assert frames and term.getvalue().endswith("\n")
    total = f"{len(DATA) / 1e6:.1f}"
    assert frames[-1].startswith(f"zoo: download {total}/{total} MB (100%)"), frames[-1]
    if resume:  # the first frame already counts the half that was on disk
        assert float(frames[0].split()[2].split("/")[0]) >= len(DATA) / 2 / 1e6 - 0.05, frames[0]


def test_a_download_into_a_pipe_draws_nothing(server, tmp_path):
    stream = io.StringIO()
    progress = Progress(stream=stream)
    download(Client(server, None), {"sha256": SHA, "size": len(DATA)}, tmp_path / "b", progress.meter(len(DATA), "d"))
    assert stream.getvalue() == "" and (tmp_path / "b").stat().st_size == len(DATA)
