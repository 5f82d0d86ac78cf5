"""pytest fixtures for testing a wechat-callback plugin; installed with the package, loaded by pytest itself.

::

    # pyproject.toml:  [tool.pytest.ini_options]  wechat_plugins = "my_plugin"

    def test_shout(wechat_client):
        assert wechat_client.text("hi").content == "HI"

Fixtures (all named ``wechat_*``, so that they meet none of a project's own):

* ``wechat_plugins``: the plugins the app loads: the ``wechat_plugins`` marker of the
  test (``@pytest.mark.wechat_plugins("my_plugin")``), else the ``wechat_plugins`` ini
  option (comma-separated), else none; override the fixture to decide otherwise;
* ``wechat_api``: a fake WeChat API on 127.0.0.1
  (:class:`app.testing.kit.RecordingWeChatAPI`), with the sends it took in ``.sent``;
* ``wechat_settings``: the app's settings, a dict; override it to change some::

      @pytest.fixture
      def wechat_settings(wechat_settings):
          return {**wechat_settings, "WECHAT_LATE_REPLY": "customer_service"}

* ``wechat_app``: the Flask app built from ``wechat_settings`` alone (``WECHAT_*``
  environment variables are ignored), its store a SQLite file in ``tmp_path``, its
  API client on ``wechat_api``;
* ``wechat_client``: posts a push (XML, a sample's name like ``"text"`` or
  ``"subscribe"``, or a file) with ``post(push, safe=False)``, or ``text(content)``,
  ``event(name, fields)``, and returns the parsed answer
  (:class:`app.testing.CallbackAnswer`: ``status``, ``content``, ``msg_type``,
  ``field(path)``, ``xml``).

A pytest plugin loads in every pytest run of the environment it is installed in, and
the project's package is called ``app``, as many others are: this module imports it
only when a test uses one of the fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flask import Flask

    from app.testing.kit import RecordingWeChatAPI, WeChatTestClient

MARKER = "wechat_plugins"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(MARKER, "comma-separated plugin modules the wechat_app fixture loads", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(*modules): the plugin modules the wechat_app fixture loads")


def _kit() -> Any:
    """:mod:`app.testing.kit`, imported now; a clear failure when another package called ``app`` is in the way.

    This module and the package are installed side by side, so the package ``import app``
    finds must sit next to this file.
    """
    ours = Path(__file__).resolve().parent / "app"
    try:
        import app
    except ImportError:
        app = None
    found = Path(getattr(app, "__file__", None) or "nowhere").resolve()
    if found.parent != ours:
        pytest.fail(
            f"the wechat_* fixtures need wechat-callback's package `app` ({ours}), but `import app` finds {found}. "
            "Run these tests where your own `app` package is not importable as `app`.",
            pytrace=False,
        )
    from app.testing import kit

    return kit


@pytest.fixture
def wechat_plugins(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The plugin modules ``wechat_app`` loads: the test's marker, else the ini option."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        names: list[str] = []
        for argument in marker.args:
            names.extend(argument.split(","))
    else:
        names = str(request.config.getini(MARKER)).replace("\n", ",").split(",")
    return tuple(name.strip() for name in names if name.strip())


@pytest.fixture
def wechat_api() -> Any:
    """A fake WeChat API on 127.0.0.1, started for the test and stopped after it."""
    with _kit().RecordingWeChatAPI() as api:
        yield api


@pytest.fixture
def wechat_settings(tmp_path: Any, wechat_api: RecordingWeChatAPI, wechat_plugins: tuple[str, ...]) -> dict[str, Any]:
    """The settings ``wechat_app`` is built from (see :func:`app.testing.kit.settings_for`)."""
    return _kit().settings_for(tmp_path, wechat_api, wechat_plugins)


@pytest.fixture
def wechat_app(wechat_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The app under test, built from ``wechat_settings`` and nothing else; its background work
    (the lease thread) stops when the test ends, so it never touches a store another test uses."""
    _kit()
    for name in list(os.environ):
        if name.startswith("WECHAT_"):
            monkeypatch.delenv(name)
    from app import create_app, get_state

    app = create_app(wechat_settings)
    yield app
    get_state(app).pipeline.runner.stop()


@pytest.fixture
def wechat_client(wechat_app: Flask) -> WeChatTestClient:
    """Posts pushes to ``wechat_app`` as WeChat would; see :class:`app.testing.kit.WeChatTestClient`."""
    return _kit().WeChatTestClient(wechat_app)
