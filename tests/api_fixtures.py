"""Helpers shared by the tests that drive the API client against :class:`app.testing.fakeapi.FakeWeChatAPI`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from flask import Flask

from app import create_app
from app.access_token import CACHE_KEY
from app.client import WeChatClient
from app.settings import Settings
from app.store.sqlite import SQLiteStore
from app.testing.fakeapi import FakeWeChatAPI

CALLBACK_TOKEN = "callback-token"


def make_app(tmp_path: Path, fake: FakeWeChatAPI, **config: object) -> Flask:
    """An app whose API client talks to ``fake``, with a quick backoff.

    The read timeout is 5 s, short but safe on a loaded machine; the timeout tests set 0.5 s.
    """
    app = create_app(
        {
            "WECHAT_TOKEN": CALLBACK_TOKEN,
            "WECHAT_STORE_URL": f"sqlite:///{tmp_path}/s.db",
            "WECHAT_API_BASE_URL": fake.base_url,
            "WECHAT_APP_ID": fake.app_id,
            "WECHAT_APP_SECRET": fake.app_secret,
            "WECHAT_READ_TIMEOUT": 5,
            **config,
        }
    )
    app.extensions["wechat"].client.backoff = 0.01
    return app


def age_cached_token(client: WeChatClient, seconds_left: float, fetched_ago: float = 7200 - 100) -> None:
    """Make the cached token expire in ``seconds_left`` seconds (inside the refresh-ahead window if small)."""
    data = json.loads(client.tokens.store.get_value(CACHE_KEY))
    data["expires_at"] = time.time() + seconds_left
    data["fetched_at"] = time.time() - fetched_ago
    client.tokens.store.set_value(CACHE_KEY, json.dumps(data), 3600)


def send_from_worker(db_path: str, base_url: str, app_id: str, app_secret: str, openid: str, barrier: Any) -> None:
    """Run in a spawned process: its own client on the shared SQLite file sends one text at the barrier."""
    settings = Settings(
        signing_token=CALLBACK_TOKEN,
        app_id=app_id,
        app_secret=app_secret,
        api_base_url=base_url,
        store_url=f"sqlite:///{db_path}",
        read_timeout=5.0,
    )
    client = WeChatClient(settings, SQLiteStore(db_path), backoff=0.01)
    barrier.wait(timeout=30)
    client.send_text(openid, "hi")
