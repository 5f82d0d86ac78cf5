"""Shared fixtures: an app on a real SQLite file, in plaintext and in safe mode."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from app import create_app
from app.runs import stop_runners
from app.testing import PushClient

FIXTURES = Path(__file__).parent / "fixtures"

TOKEN = "wx_callback_token"
APP_ID = "wx3c1e9e2f5a7b9d01"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def make_app(tmp_path: Path, **overrides: object):
    """The echo app taking plaintext and encrypted pushes (compatible mode), its store a SQLite file under ``tmp_path``.

    The tests of the message modes themselves set ``WECHAT_MESSAGE_MODE``.
    """
    return make_app_at(f"{tmp_path}/store.sqlite3", **overrides)


def make_app_at(store_path: str, **overrides: object):
    config: dict[str, object] = {
        "WECHAT_TOKEN": TOKEN,
        "WECHAT_APP_ID": APP_ID,
        "WECHAT_ENCODING_AES_KEY": AES_KEY,
        "WECHAT_STORE_URL": f"sqlite:///{store_path}",
        "WECHAT_PLUGINS": "app.plugins.echo",
    }
    config.update(overrides)
    if config.get("WECHAT_ENCODING_AES_KEY"):
        config.setdefault("WECHAT_MESSAGE_MODE", "compatible")
    return create_app(config)


@pytest.fixture(autouse=True)
def stop_apps_after_each_test():
    """Every app a test built stops its lease thread when the test ends: otherwise it goes on
    sweeping, renewing and looking for lost runs in a store later tests share (the session's
    Redis), and takes what they wait for."""
    yield
    stop_runners()


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


@pytest.fixture
def plain(app):
    """Posts plaintext pushes to the echo app."""
    return PushClient(app)


@pytest.fixture
def safe(app):
    """Posts safe-mode (AES) pushes to the echo app."""
    return PushClient(app, safe_mode=True)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def fake():
    """A fake WeChat API on 127.0.0.1 (app.testing.fakeapi), for the client's tests."""
    from app.testing.fakeapi import FakeWeChatAPI

    with FakeWeChatAPI() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """The URL of a real Redis server on 127.0.0.1, emptied before each test that uses it."""
    from tests.servers import start_redis

    process, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def empty_redis(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path where a test writes plugin modules."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def write_plugin(folder, body: str) -> str:
    """Write ``body`` as a plugin module of a new name in ``folder``; its name."""
    name = f"plugin_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(body))
    return name
