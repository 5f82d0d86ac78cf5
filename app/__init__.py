"""A WeChat Official Account callback server.

:func:`create_app` wires it together: settings, store, API client, plugins, job
tracking, and the callback in front of Flask (:mod:`app.callback`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from flask import Flask

from . import allowlist, health, logs, tracking
from .allowlist import AllowList, WeChatAllowList
from .callback import CallbackFront
from .cli import wechat_cli
from .client import WeChatClient
from .crypto import AESEnvelope
from .pipeline import Pipeline
from .plugins import Plugins, load_plugins
from .settings import Settings, SettingsError, load_settings
from .state import AppState, get_state
from .store import Store, StoreUnavailable, masked, open_store

__all__ = ["create_app", "get_state", "SettingsError"]

log = logging.getLogger(__name__)


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """Build the app; ``config`` keys (``WECHAT_*``) override the environment.

    Raises :class:`SettingsError`, a one-line message naming the variable, when a
    setting is missing or malformed.
    """
    # The instance folder is in the working directory, not inside the virtualenv the package is
    # installed in: the default store must outlive a reinstall.
    app = Flask(__name__, instance_path=os.path.abspath("instance"))
    settings = load_settings(config, instance_path=app.instance_path)
    logs.configure(settings.log_format, settings.log_mask_openids)

    store = _open_writable_store(settings)
    envelope = AESEnvelope(settings.encoding_aes_key, settings.app_id) if settings.encoding_aes_key else None
    log.info("WECHAT_MESSAGE_MODE=%s: %s", settings.message_mode, MODE_MEANS[settings.message_mode])
    plugins = load_plugins(settings.plugins)

    client = WeChatClient(settings, store, on_send=store.save_job)
    state = AppState(
        settings=settings,
        store=store,
        envelope=envelope,
        client=client,
        plugins=Plugins(plugins, own=tracking.receivers(store)),
        allowlist=None if settings.allowed_ips is None else _allowlist(settings, store, client),
    )
    state.metrics.watch(client)
    state.pipeline = Pipeline(
        settings,
        store,
        envelope,
        state.plugins,
        client,
        state.metrics,
        state.throttle,
        state.allowlist,
        context=app.app_context,
    )
    app.extensions["wechat"] = state
    app.wsgi_app = CallbackFront(state.pipeline, settings.callback_path, app.wsgi_app, settings.trusted_proxies)

    app.register_blueprint(health.blueprint)
    app.cli.add_command(wechat_cli)
    return app


MODE_MEANS = {
    "plaintext": "only plaintext pushes are accepted",
    "compatible": "plaintext and encrypted pushes are accepted, for switching the console over",
    "safe": "only encrypted pushes are accepted",
}
STARTUP_PROBE_TIMEOUT = 5.0


def _open_writable_store(settings: Settings) -> Store:
    """The store, once it has taken a write: a server that cannot journal must not start."""
    shown = masked(settings.store_url)
    try:
        store = open_store(settings.store_url, settings.store_timeout)
    except Exception as exc:
        raise SettingsError(f"WECHAT_STORE_URL: cannot open {shown!r}: {masked(str(exc))}") from None
    try:
        store.check_writable(STARTUP_PROBE_TIMEOUT, settings.health_min_free_bytes)
    except StoreUnavailable as exc:
        store.close()
        raise SettingsError(f"WECHAT_STORE_URL: {shown!r} cannot take a write: {exc}") from None
    return store


def _allowlist(settings: Settings, store: Store, client: WeChatClient) -> AllowList:
    if settings.allowed_ips != allowlist.WECHAT:
        return AllowList(settings.allowed_ips)

    def fetch() -> list[str]:
        return list(client.call("getcallbackip", method="GET", idempotent=True).get("ip_list") or [])

    try:
        return WeChatAllowList(fetch, store)
    except ValueError as exc:
        raise SettingsError(f"WECHAT_ALLOWED_IPS=wechat: {exc}") from None
