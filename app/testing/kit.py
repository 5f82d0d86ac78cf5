"""What the ``wechat_*`` pytest fixtures (``pytest_wechat``) stand on, usable without pytest too.

* :func:`settings_for`: the settings of an app under test, its store a SQLite file
  in a folder of the test's, its API client pointed at a fake WeChat API;
* :class:`WeChatTestClient`: posts a push given as XML, a sample's name or a file,
  in plaintext or safe mode, and returns the parsed reply;
* :class:`RecordingWeChatAPI`: the fake WeChat API, with the sends it took.
"""

from __future__ import annotations

import time
from pathlib import Path

from flask import Flask

from .fakeapi import FakeWeChatAPI
from .fakehttp import Request
from .fresh import fresh_push
from .pushes import CallbackAnswer, PushClient, event_push, text_push
from .samples import sample

__all__ = ["RecordingWeChatAPI", "WeChatTestClient", "settings_for", "TEST_TOKEN", "TEST_AES_KEY"]

TEST_TOKEN = "wechat-test-token"
TEST_AES_KEY = "TestKeyForPluginTests0123456789abcdefghijkl"  # 43 characters, as the console's are


class RecordingWeChatAPI(FakeWeChatAPI):
    """The fake WeChat API of :mod:`app.testing.fakeapi`, with the sends it took at hand.

    A send is any call to a ``/cgi-bin/message/.../send`` (or ``sendall``, ``bizsend``,
    ``preview``) endpoint: customer-service, mass (and its preview) and template messages.
    """

    @property
    def sends(self) -> list[Request]:
        """Every send request so far, oldest first."""
        return [request for request in self.requests if _is_send(request.path)]

    @property
    def sent(self) -> list[dict]:
        """The JSON body of every send so far, oldest first: ``sent[0]["text"]["content"]``."""
        return [request.json for request in self.sends]

    def wait_for_sends(self, count: int = 1, timeout: float = 5.0) -> list[dict]:
        """:attr:`sent` once it holds ``count`` sends; :class:`TimeoutError` after ``timeout`` seconds.

        For sends made after the reply (a hand-off, a late reply through customer service).
        """
        deadline = time.monotonic() + timeout
        while len(sent := self.sent) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(sent)} send(s) in {timeout} s, expected {count}: {sent}")
            time.sleep(0.02)
        return sent


def _is_send(path: str) -> bool:
    return path.startswith("/cgi-bin/message/") and path.rsplit("/", 1)[-1] in ("send", "sendall", "bizsend", "preview")


def settings_for(store_folder: Path, api: FakeWeChatAPI, plugins: str | tuple[str, ...] = ()) -> dict[str, object]:
    """``create_app`` settings for a test: plaintext and safe-mode pushes taken, the API client on ``api``."""
    if not isinstance(plugins, str):
        plugins = ",".join(plugins)
    return {
        "WECHAT_TOKEN": TEST_TOKEN,
        "WECHAT_APP_ID": api.app_id,
        "WECHAT_APP_SECRET": api.app_secret,
        "WECHAT_ENCODING_AES_KEY": TEST_AES_KEY,
        "WECHAT_MESSAGE_MODE": "compatible",
        "WECHAT_API_BASE_URL": api.base_url,
        "WECHAT_STORE_URL": f"sqlite:///{Path(store_folder) / 'wechat-store.sqlite3'}",
        "WECHAT_PLUGINS": plugins,
    }


class WeChatTestClient:
    """Posts pushes to ``app`` as WeChat would and returns what it answered.

    ``post`` takes the push as XML (``bytes`` or a ``str`` starting with ``<``), as
    the name of a sample push (``"text"``, ``"subscribe"``, see
    :mod:`app.testing.samples`) or as a file (a :class:`~pathlib.Path`, or a ``str``
    with a ``/`` in it or ending in ``.xml`` that names an existing file).  A sample or
    a file is posted as a new push (see :func:`~app.testing.fresh_push`), so posting it
    twice runs the handlers twice; XML given as such is posted as it is, so a repeat of
    it is a repeat.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._clients: dict[bool, PushClient] = {}

    def post(self, push: bytes | str | Path, *, safe: bool = False, **query_options: object) -> CallbackAnswer:
        """Sign (and with ``safe`` encrypt) the push, post it, and return the answer, decrypted."""
        return self._client(safe).post(push_bytes(push), **query_options)

    def text(self, content: str, *, safe: bool = False, **options: object) -> CallbackAnswer:
        """Post a text message with ``content`` (options as for :func:`~app.testing.text_push`)."""
        return self.post(text_push(content, **options), safe=safe)

    def event(
        self, event: str, fields: dict[str, object] | None = None, *, safe: bool = False, **options: object
    ) -> CallbackAnswer:
        """Post an event (arguments as for :func:`~app.testing.event_push`)."""
        return self.post(event_push(event, fields, **options), safe=safe)

    def _client(self, safe: bool) -> PushClient:
        if safe not in self._clients:
            self._clients[safe] = PushClient(self.app, safe_mode=safe)
        return self._clients[safe]


def push_bytes(push: bytes | str | Path) -> bytes:
    """The XML to post for ``push``: XML as given, a file's or a sample's made new."""
    if isinstance(push, bytes):
        return push
    if isinstance(push, Path):
        return fresh_push(push.read_bytes())
    if push.lstrip().startswith("<"):
        return push.encode("utf-8")
    names_a_path = "/" in push or "\\" in push
    if (names_a_path or push.endswith(".xml")) and Path(push).is_file():
        return fresh_push(Path(push).read_bytes())
    if names_a_path:
        raise FileNotFoundError(f"no push file {push!r}")
    return fresh_push(sample(push))
