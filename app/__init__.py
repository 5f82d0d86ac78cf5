"""A WeChat Official Account callback server.

:func:`create_app` wires it together: settings, store, API client, plugins, job
tracking, and the callback blueprint.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Flask

from . import health, tracking
from .callback import create_blueprint
from .cli import wechat_cli
from .client import WeChatClient
from .crypto import AESEnvelope
from .plugins import Plugins, load_plugins
from .settings import SettingsError, load_settings
from .state import AppState, get_state
from .store import open_store

__all__ = ["create_app", "get_state", "SettingsError"]


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """Build the app; ``config`` keys (``WECHAT_*``) override the environment.

    Raises :class:`SettingsError`, a one-line message naming the variable, when a
    setting is missing or malformed.
    """
    app = Flask(__name__, instance_relative_config=True)
    settings = load_settings(config, instance_path=app.instance_path)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        store = open_store(settings.store_url)
    except Exception as exc:
        raise SettingsError(f"WECHAT_STORE_URL: cannot open {settings.store_url!r}: {exc}") from None
    envelope = AESEnvelope(settings.encoding_aes_key, settings.app_id) if settings.encoding_aes_key else None
    plugins = load_plugins(settings.plugins)

    app.extensions["wechat"] = AppState(
        settings=settings,
        store=store,
        envelope=envelope,
        client=WeChatClient(settings, store, on_send=store.save_job),
        plugins=Plugins(plugins, own=tracking.receivers(store)),
    )
    app.register_blueprint(create_blueprint(settings.callback_path))

    app.register_blueprint(health.blueprint)
    app.cli.add_command(wechat_cli)
    return app
