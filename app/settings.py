"""The ``WECHAT_*`` settings, read once at start-up and validated there.

Every setting comes from the environment or from the ``config`` mapping given
to :func:`app.create_app` (which wins).  A bad value raises
:class:`SettingsError` whose message is one line naming the variable, so an
operator sees at once what to fix.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_API_BASE_URL = "https://api.weixin.qq.com"
TOKEN_ENDPOINTS = ("stable_token", "token")

_AES_KEY_PATTERN = re.compile(r"[A-Za-z0-9+/]{43}")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    token: str
    app_id: str | None = None
    app_secret: str | None = None
    encoding_aes_key: str | None = None
    callback_path: str = "/wechat"
    api_base_url: str = DEFAULT_API_BASE_URL
    plugins: tuple[str, ...] = ()
    store_url: str = "sqlite:///wechat.sqlite3"
    timestamp_tolerance: int = 300
    max_body_bytes: int = 262144
    token_endpoint: str = "stable_token"
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    dedup_ttl: int = 86400


def load_settings(
    config: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    instance_path: str = ".",
) -> Settings:
    """Build :class:`Settings` from ``config`` over ``environ``."""
    source: dict[str, object] = dict(os.environ if environ is None else environ)
    source.update(config or {})

    def text(name: str) -> str | None:
        value = source.get(name)
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    token = text("WECHAT_TOKEN")
    if token is None:
        raise SettingsError("WECHAT_TOKEN is required: set it to the token of the official-account console")

    aes_key = text("WECHAT_ENCODING_AES_KEY")
    if aes_key is not None:
        _check_aes_key(aes_key)

    app_id = text("WECHAT_APP_ID")
    if aes_key is not None and app_id is None:
        raise SettingsError("WECHAT_APP_ID is required when WECHAT_ENCODING_AES_KEY is set")

    callback_path = text("WECHAT_CALLBACK_PATH") or "/wechat"
    if not callback_path.startswith("/"):
        raise SettingsError(f"WECHAT_CALLBACK_PATH must start with '/', got {callback_path!r}")

    api_base_url = (text("WECHAT_API_BASE_URL") or DEFAULT_API_BASE_URL).rstrip("/")
    if not api_base_url.startswith(("http://", "https://")):
        raise SettingsError(f"WECHAT_API_BASE_URL must be an http(s) URL, got {api_base_url!r}")

    plugins = source.get("WECHAT_PLUGINS") or ()
    if isinstance(plugins, str):
        plugins = [name.strip() for name in plugins.split(",")]
    plugins = tuple(name for name in plugins if name)

    store_url = text("WECHAT_STORE_URL") or f"sqlite:///{os.path.join(instance_path, 'wechat.sqlite3')}"
    if not store_url.startswith(("sqlite:///", "redis://", "rediss://")):
        raise SettingsError(
            f"WECHAT_STORE_URL has an unknown scheme: {store_url!r} (use sqlite:///PATH or redis://HOST:PORT/DB)"
        )

    token_endpoint = text("WECHAT_TOKEN_ENDPOINT") or "stable_token"
    if token_endpoint not in TOKEN_ENDPOINTS:
        raise SettingsError(
            f"WECHAT_TOKEN_ENDPOINT must be one of {', '.join(TOKEN_ENDPOINTS)}, got {token_endpoint!r}"
        )

    return Settings(
        token=token,
        app_id=app_id,
        app_secret=text("WECHAT_APP_SECRET"),
        encoding_aes_key=aes_key,
        callback_path=callback_path,
        api_base_url=api_base_url,
        plugins=plugins,
        store_url=store_url,
        timestamp_tolerance=_number(source, "WECHAT_TIMESTAMP_TOLERANCE", 300, int, minimum=0),
        max_body_bytes=_number(source, "WECHAT_MAX_BODY_BYTES", 262144, int, minimum=1),
        token_endpoint=token_endpoint,
        connect_timeout=_number(source, "WECHAT_CONNECT_TIMEOUT", 3.05, float, minimum=0.01),
        read_timeout=_number(source, "WECHAT_READ_TIMEOUT", 10.0, float, minimum=0.01),
    )


def _check_aes_key(key: str) -> None:
    if not _AES_KEY_PATTERN.fullmatch(key):
        raise SettingsError(
            f"WECHAT_ENCODING_AES_KEY must be 43 base64 characters (A-Z, a-z, 0-9, +, /), got {len(key)} characters"
        )
    try:
        decoded = base64.b64decode(key + "=", validate=True)
    except binascii.Error as exc:  # pragma: no cover - the pattern already rules this out
        raise SettingsError(f"WECHAT_ENCODING_AES_KEY is not valid base64: {exc}") from None
    if len(decoded) != 32:  # pragma: no cover - 43 base64 characters always give 32 bytes
        raise SettingsError("WECHAT_ENCODING_AES_KEY must decode to 32 bytes")


def _number(source: Mapping[str, object], name: str, default, kind, minimum):
    value = source.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a number, got {value!r}") from None
    if number < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value!r}")
    return number
