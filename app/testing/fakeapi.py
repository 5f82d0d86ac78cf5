"""A fake WeChat API for tests: a real HTTP server on 127.0.0.1 that the test starts.

It issues and checks access tokens the way WeChat does, answers the send
endpoints with WeChat-shaped JSON, records every request exactly as it arrived,
and can be told to misbehave on a path::

    from app import create_app
    from app.testing.fakeapi import FakeWeChatAPI

    def test_send(tmp_path):
        with FakeWeChatAPI() as fake:
            app = create_app({"WECHAT_TOKEN": "t", "WECHAT_API_BASE_URL": fake.base_url,
                              "WECHAT_APP_ID": fake.app_id, "WECHAT_APP_SECRET": fake.app_secret,
                              "WECHAT_STORE_URL": f"sqlite:///{tmp_path}/store.db"})
            fake.fail("message/custom/send", 45015)       # the next send is refused once
            ...
            [sent] = fake.requests_to("message/custom/send")
            assert sent.json["text"] == {"content": "你好"}

Tokens: ``POST /cgi-bin/stable_token`` (JSON body) and ``GET /cgi-bin/token``
(query) check ``grant_type``, ``appid`` and ``secret``.  The stable endpoint
hands back the current token while it has more than :attr:`renew_ahead` seconds
left and a new one otherwise or with ``force_refresh`` (which revokes the old
one); the classic endpoint issues a new token on every call.  Any other path
needs ``access_token``: missing is 41001, unknown or revoked 40001, expired 42001.
The mass ``msg_id`` and template ``msgid`` it hands out count up from 1000000001
(one sequence for both); :meth:`route` answers a path your own way.

Faults are queued per path and used up one request at a time, in order:
:meth:`fail` (an errcode answer), :meth:`http_error`, :meth:`slow`,
:meth:`drop` (close the connection without an answer) and :meth:`garbage`
(a body that is not JSON).  A path is ``"message/custom/send"`` or the full
``"/cgi-bin/message/custom/send"``.

The server is threaded and keeps connections alive, so many threads or worker
processes may call it at once; it binds only the loopback interface (the HTTP
side is :mod:`app.testing.fakehttp`).  Run it on its own, in the foreground,
with ``python -m app.testing.fakeapi [--port N]``: it prints its base URL (for
``WECHAT_API_BASE_URL``) and stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .fakehttp import Fault, Request, Server, close, handler_for

HOST = "127.0.0.1"
TOKEN_PATHS = ("/cgi-bin/stable_token", "/cgi-bin/token")
TOKEN_ERRCODES = (40001, 40014, 42001)

ERRMSGS = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40007: "invalid media_id",
    40013: "invalid appid",
    40014: "invalid access_token",
    40125: "invalid appsecret",
    40130: "invalid openid list size, at least two openid",
    41001: "access_token missing",
    42001: "access_token expired",
    43004: "require subscribe",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit mustslower retry next minute",
    45015: "response out of time limit or subscription is canceled",
    45083: "the speed is out of range",
    47001: "data format error",
}


Route = Callable[[Request], dict[str, Any]]


class FakeWeChatAPI:
    """A fake ``api.weixin.qq.com``; see the module docstring."""

    def __init__(
        self,
        app_id: str = "wx5f1a2b3c4d5e6f70",
        app_secret: str = "fake-app-secret-0123456789abcdef",
        expires_in: int = 7200,
        renew_ahead: int = 300,
        port: int = 0,
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.expires_in = expires_in
        self.renew_ahead = renew_ahead
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._faults: dict[str, deque[Fault]] = {}
        self._tokens: dict[str, float] = {}  # token -> when it expires; revoked tokens are removed
        self._current: dict[str, str] = {}  # token path -> the token it last issued
        self._issued: list[str] = []
        self._ids = itertools.count(1000000001)
        self._clientmsgids: dict[str, int] = {}
        self.mass_speed = 0  # what message/mass/speed/set last set
        self._routes: dict[str, Route] = {
            "/cgi-bin/message/custom/send": self._custom_send,
            "/cgi-bin/message/custom/typing": lambda request: {"errcode": 0, "errmsg": "ok"},
            "/cgi-bin/getcallbackip": lambda request: {"ip_list": ["127.0.0.1", "::1"]},
            "/cgi-bin/media/uploadnews": self._upload_news,
            "/cgi-bin/media/uploadvideo": self._upload_video,
            "/cgi-bin/message/mass/sendall": self._mass_send,
            "/cgi-bin/message/mass/send": self._mass_send,
            "/cgi-bin/message/mass/delete": lambda request: {"errcode": 0, "errmsg": "ok"},
            "/cgi-bin/message/mass/get": self._mass_get,
            "/cgi-bin/message/mass/preview": self._mass_preview,
            "/cgi-bin/message/mass/speed/get": self._speed_get,
            "/cgi-bin/message/mass/speed/set": self._speed_set,
            "/cgi-bin/message/template/send": self._template_send,
        }
        self._connections = 0
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # --- running ------------------------------------------------------------

    def start(self) -> FakeWeChatAPI:
        """Listen on 127.0.0.1 (a free port unless one was given) and serve in a background thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = Server((HOST, self._port), handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-wechat-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (slow answers are cut short)."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for connection in self._open:
                close(connection)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeWeChatAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, for ``WECHAT_API_BASE_URL``."""
        if self._server is None:
            raise RuntimeError("the fake WeChat API is not started")
        return f"http://{HOST}:{self._server.server_address[1]}"

    # --- what it received -------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        """Every request so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[Request]:
        """The requests to ``path``, oldest first."""
        path = _full_path(path)
        return [request for request in self.requests if request.path == path]

    def token_requests(self) -> list[Request]:
        """The requests to either token endpoint."""
        return [request for request in self.requests if request.path in TOKEN_PATHS]

    @property
    def issued_tokens(self) -> list[str]:
        """Every access token handed out, oldest first."""
        with self._lock:
            return list(self._issued)

    @property
    def connections(self) -> int:
        """How many TCP connections clients opened."""
        with self._lock:
            return self._connections

    def clear(self) -> None:
        """Forget the recorded requests (tokens and queued faults stay)."""
        with self._lock:
            self._requests.clear()

    # --- shaping answers --------------------------------------------------------

    def expire_tokens(self) -> None:
        """Every token issued so far is expired: using one now gets 42001."""
        with self._lock:
            now = time.time()
            self._tokens = {token: min(expires_at, now - 1) for token, expires_at in self._tokens.items()}

    def fail(self, path: str, errcode: int, errmsg: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` requests to ``path`` with ``errcode``.

        40001, 40014 and 42001 also revoke the token the request carried, as WeChat
        says so only of a token it no longer accepts.
        """
        self._queue(path, Fault("errcode", errcode=errcode, errmsg=errmsg or ERRMSGS.get(errcode, "error")), times)

    def http_error(self, path: str, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests to ``path`` with HTTP ``status`` and an HTML body."""
        self._queue(path, Fault("http", status=status), times)

    def slow(self, path: str, seconds: float, times: int = 1) -> None:
        """Wait ``seconds`` before answering the next ``times`` requests to ``path`` (normally, if still connected)."""
        self._queue(path, Fault("slow", seconds=seconds), times)

    def drop(self, path: str, times: int = 1, after_headers: bool = False) -> None:
        """Close the connection of the next ``times`` requests to ``path`` without an answer.

        With ``after_headers`` the status line and headers go out first and the body never does.
        """
        self._queue(path, Fault("drop", after_headers=after_headers), times)

    def garbage(self, path: str, body: bytes = b"<html><body>502 Bad Gateway</body></html>", times: int = 1) -> None:
        """Answer the next ``times`` requests to ``path`` with HTTP 200 and ``body``, which is not JSON."""
        self._queue(path, Fault("garbage", body=body), times)

    def route(self, path: str, handler: Route) -> None:
        """Answer ``path`` (after the token check) with ``handler(request)``, a JSON object."""
        self._routes[_full_path(path)] = handler

    def _queue(self, path: str, fault: Fault, times: int) -> None:
        with self._lock:
            self._faults.setdefault(_full_path(path), deque()).extend([fault] * times)

    # --- serving ------------------------------------------------------------------

    def _record(self, request: Request) -> Fault | None:
        with self._lock:
            self._requests.append(request)
            queue = self._faults.get(request.path)
            return queue.popleft() if queue else None

    def _answer(self, request: Request, fault: Fault | None) -> tuple[int, bytes]:
        """The status and JSON body for ``request``, after any errcode fault."""
        if request.path == "/cgi-bin/stable_token" and request.method == "POST":
            return 200, _json(self._stable_token(request) if fault is None else _error(fault))
        if request.path == "/cgi-bin/token" and request.method == "GET":
            return 200, _json(self._classic_token(request) if fault is None else _error(fault))
        handler = self._routes.get(request.path)
        if handler is None:
            return 404, b'{"errcode":404,"errmsg":"not found"}'
        problem = self._check_token(request.query.get("access_token"))
        if problem is not None:
            return 200, _json(problem)
        if fault is not None:
            if fault.errcode in TOKEN_ERRCODES:
                with self._lock:
                    self._tokens.pop(request.query.get("access_token", ""), None)
            return 200, _json(_error(fault))
        if request.method == "POST" and not isinstance(request.json, dict):
            return 200, _json(_errcode(47001))
        return 200, _json(handler(request))

    def _stable_token(self, request: Request) -> dict[str, Any]:
        body = request.json if isinstance(request.json, dict) else {}
        problem = self._check_credentials(body.get("grant_type"), body.get("appid"), body.get("secret"))
        if problem is not None:
            return problem
        with self._lock:
            token = self._current.get(request.path)
            expires_at = self._tokens.get(token or "")
            if body.get("force_refresh") is True or expires_at is None or expires_at - time.time() <= self.renew_ahead:
                if body.get("force_refresh") is True and token:
                    self._tokens.pop(token, None)
                token, expires_at = self._issue(request.path)
            return {"access_token": token, "expires_in": int(expires_at - time.time() + 0.5)}

    def _classic_token(self, request: Request) -> dict[str, Any]:
        query = request.query
        problem = self._check_credentials(query.get("grant_type"), query.get("appid"), query.get("secret"))
        if problem is not None:
            return problem
        with self._lock:
            previous = self._current.get(request.path)
            if previous in self._tokens:  # the old token keeps working for five more minutes
                self._tokens[previous] = min(self._tokens[previous], time.time() + 300)
            token, _ = self._issue(request.path)
            return {"access_token": token, "expires_in": self.expires_in}

    def _issue(self, path: str) -> tuple[str, float]:
        token = secrets.token_urlsafe(48)
        expires_at = time.time() + self.expires_in
        self._tokens[token] = expires_at
        self._current[path] = token
        self._issued.append(token)
        return token, expires_at

    def _check_credentials(self, grant_type: object, appid: object, secret: object) -> dict[str, Any] | None:
        if grant_type != "client_credential":
            return _errcode(40002)
        if appid != self.app_id:
            return _errcode(40013)
        if secret != self.app_secret:
            return _errcode(40125)
        return None

    def _check_token(self, token: str | None) -> dict[str, Any] | None:
        if not token:
            return _errcode(41001)
        with self._lock:
            expires_at = self._tokens.get(token)
        if expires_at is None:
            return _errcode(40001)
        if expires_at <= time.time():
            return _errcode(42001)
        return None

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def _custom_send(self, request: Request) -> dict[str, Any]:
        msgtype = request.json.get("msgtype")
        if not request.json.get("touser") or not isinstance(request.json.get(msgtype), dict):
            return _errcode(47001)  # no recipient, or no object named by msgtype
        return {"errcode": 0, "errmsg": "ok"}

    def _upload_video(self, request: Request) -> dict[str, Any]:
        if not request.json.get("media_id"):
            return _errcode(40007)
        return {"type": "video", "media_id": f"fake-video-{self._next_id()}", "created_at": int(time.time())}

    def _mass_preview(self, request: Request) -> dict[str, Any]:
        if not request.json.get("touser") and not request.json.get("towxname"):
            return _errcode(40003)
        return {"errcode": 0, "errmsg": "preview success", "msg_id": self._next_id()}

    def _speed_get(self, request: Request) -> dict[str, Any]:
        return {"speed": self.mass_speed, "realspeed": (80, 60, 45, 30, 10)[self.mass_speed]}

    def _speed_set(self, request: Request) -> dict[str, Any]:
        speed = request.json.get("speed")
        if not isinstance(speed, int) or not 0 <= speed <= 4:
            return _errcode(45083)
        self.mass_speed = speed
        return {"errcode": 0, "errmsg": "ok"}

    def _upload_news(self, request: Request) -> dict[str, Any]:
        return {"type": "news", "media_id": f"fake-news-{self._next_id()}", "created_at": int(time.time())}

    def _mass_send(self, request: Request) -> dict[str, Any]:
        touser = request.json.get("touser")
        if request.path.endswith("/mass/send") and (not isinstance(touser, list) or not 2 <= len(touser) <= 10000):
            return _errcode(40130)
        clientmsgid = request.json.get("clientmsgid")
        with self._lock:
            sent_before = self._clientmsgids.get(clientmsgid)
        if sent_before is not None:  # WeChat refuses a clientmsgid it saw within 24 hours, naming the first send
            return {"errcode": 45065, "errmsg": "clientmsgid exist", "msg_id": sent_before}
        msg_id = self._next_id()
        if clientmsgid:
            with self._lock:
                self._clientmsgids[clientmsgid] = msg_id
        return {"errcode": 0, "errmsg": "send job submission success", "msg_id": msg_id, "msg_data_id": msg_id * 10 + 1}

    def _mass_get(self, request: Request) -> dict[str, Any]:
        return {"msg_id": request.json.get("msg_id"), "msg_status": "SEND_SUCCESS"}

    def _template_send(self, request: Request) -> dict[str, Any]:
        return {"errcode": 0, "errmsg": "ok", "msgid": self._next_id()}

    # --- connection bookkeeping, for the handler --------------------------------

    def _opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections += 1
            self._open.add(connection)

    def _closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._open.discard(connection)


def _full_path(path: str) -> str:
    return path if path.startswith("/") else f"/cgi-bin/{path}"


def _errcode(errcode: int) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": ERRMSGS.get(errcode, "error")}


def _error(fault: Fault) -> dict[str, Any]:
    return {"errcode": fault.errcode, "errmsg": fault.errmsg}


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def main(argv: list[str] | None = None) -> None:
    """``python -m app.testing.fakeapi [--port N]``: serve until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m app.testing.fakeapi",
        description="Run a fake WeChat API on 127.0.0.1 in the foreground; Ctrl-C or SIGTERM stops it.",
    )
    parser.add_argument("--port", type=int, default=0, help="the port to listen on (default: a free one)")
    port = parser.parse_args(argv).port
    # SIGTERM stops it as Ctrl-C does; and Ctrl-C does even when started from a shell's background job,
    # whose children inherit SIGINT ignored.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, signal.default_int_handler)
    fake = FakeWeChatAPI(port=port)
    try:
        fake.start()
    except OSError as error:
        parser.error(f"cannot listen on {HOST}:{port}: {error}")
    try:
        print(fake.base_url, flush=True)
        print(f"appid {fake.app_id}, secret {fake.app_secret}; Ctrl-C or SIGTERM stops it", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
