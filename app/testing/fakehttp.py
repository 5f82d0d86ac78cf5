"""The HTTP side of :mod:`app.testing.fakeapi`: a request as it arrived, the faults
the handler acts out, and the threaded loopback server with its handler.

The handler asks the :class:`~app.testing.fakeapi.FakeWeChatAPI` it serves what to
answer; this module knows nothing of tokens or WeChat's endpoints.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from .fakeapi import FakeWeChatAPI


@dataclass(frozen=True)
class Request:
    """One request as the fake received it."""

    method: str
    path: str  # "/cgi-bin/message/custom/send"
    query: dict[str, str]
    body: bytes  # the raw bytes, to check the encoding
    json: Any  # the body parsed as JSON, or None
    headers: dict[str, str]
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Fault:
    kind: str  # "errcode", "http", "slow", "drop", "garbage"
    errcode: int = 0
    errmsg: str = ""
    status: int = 500
    seconds: float = 0.0
    body: bytes = b""
    after_headers: bool = False


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # fifty clients may connect at once

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up (after a timeout, say) is no error of the fake's


def handler_for(fake: FakeWeChatAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like WeChat
        server_version = "fake-wechat-api"
        sys_version = ""

        def setup(self) -> None:
            super().setup()
            fake._opened(self.connection)

        def finish(self) -> None:
            fake._closed(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = Request(
                self.command,
                url.path,
                dict(parse_qsl(url.query, keep_blank_values=True)),
                body,
                _parse(body),
                dict(self.headers.items()),
            )
            fault = fake._record(request)
            if fault is not None and fault.kind == "slow":
                if fake._stopping.wait(fault.seconds):
                    return self._drop()
                fault = None
            if fault is not None and fault.kind == "drop":
                if fault.after_headers:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json; encoding=utf-8")
                    self.send_header("Content-Length", "64")
                    self.end_headers()
                    self.wfile.write(b'{"errcode":0,')
                return self._drop()
            if fault is not None and fault.kind == "http":
                return self._send(fault.status, b"<html><body>Internal Server Error</body></html>", "text/html")
            if fault is not None and fault.kind == "garbage":
                return self._send(200, fault.body, "text/html")
            status, answer = fake._answer(request, fault)
            self._send(status, answer, "application/json; encoding=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _drop(self) -> None:
            self.close_connection = True
            close(self.connection)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the recorded requests are the log; stderr stays quiet

    return Handler


def close(connection: socket.socket) -> None:
    """Shut ``connection`` down both ways and close it, whatever state it is in."""
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    connection.close()


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8")) if body else None
    except ValueError:
        return None
