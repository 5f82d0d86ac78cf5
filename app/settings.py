"""The ``WECHAT_*`` settings, read once at start-up and validated there.

Each field of :class:`Settings` names its variable and the function that reads
it, and its default is the field's own: this class is the one place a setting is
defined.  A value is validated by the module that owns it (the AES key by
:mod:`app.crypto`, the store URL by :mod:`app.store`, the allow-list by
:mod:`app.allowlist`); this module only names the variable when one is refused.
Every value comes from the environment or from the ``config`` mapping given to
:func:`app.create_app` (which wins).  A bad one raises :class:`SettingsError`
whose message is one line naming the variable, so an operator sees at once what
to fix.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import allowlist, crypto, store

PLAINTEXT, COMPATIBLE, SAFE = "plaintext", "compatible", "safe"
MESSAGE_MODES = (PLAINTEXT, COMPATIBLE, SAFE)
RETRY, CUSTOMER_SERVICE = "retry", "customer_service"
TOKEN_ENDPOINTS = ("stable_token", "token")
EMBEDDED, RQ = "embedded", "rq"
LOG_FORMATS = ("text", "json")
DEFAULT_MORE_HINT = "\n（未完，回复任意内容看下一段）"
DEFAULT_LATE_REPLY_HINT = "这条消息还在处理中，请稍后回复任意内容查看结果。"
WECHAT_DELIVERY_TIMEOUT = 5.0  # seconds WeChat waits for each delivery


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


# --- readers: text in, value out, ValueError saying what is wrong -------------


def _text(value: str) -> str:
    return value


def _integer(minimum: int) -> Callable[[str], int]:
    def read(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"must be a whole number, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}, got {value!r}")
        return number

    return read


def _seconds(above: float, below: float | None = None) -> Callable[[str], float]:
    def read(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"must be a number of seconds, got {value!r}") from None
        if not number > above or (below is not None and not number < below) or number != number:
            bound = f"more than {above:g}" + ("" if below is None else f" and less than {below:g}")
            raise ValueError(f"must be {bound}, got {value!r}")
        return number

    return read


def _one_of(*choices: str) -> Callable[[str], str]:
    def read(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    return read


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _names(value: str) -> tuple[str, ...]:
    return tuple(name for name in (part.strip() for part in value.split(",")) if name)


def _path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"must start with '/', got {value!r}")
    return value


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _aes_key(value: str) -> str:
    crypto.decode_aes_key(value)
    return value


def _store_url(value: str) -> str:
    try:
        return store.store_url(value)
    except ValueError as exc:
        raise ValueError(f"{store.masked(value)!r} {exc}") from None


def _rules_file(value: str) -> str:
    """The auto-reply rules file, read now: a bad rule stops start-up (see :mod:`app.plugins.autoreply`)."""
    from .plugins import autoreply  # the plugin owns its rules; imported only when a file is named

    path = os.path.abspath(value)
    autoreply.load(path)
    return path


def setting(variable: str, read: Callable[[str], Any] = _text, default: Any = None, keep_empty: bool = False) -> Any:
    """A field read from ``variable``; an unset or blank variable leaves ``default``.

    ``keep_empty``: a variable that is set but empty is a value of its own (the empty string).
    """
    return field(default=default, metadata={"variable": variable, "read": read, "keep_empty": keep_empty})


@dataclass(frozen=True)
class Settings:
    signing_token: str = setting("WECHAT_TOKEN")  # the console's Token, which signs callbacks; required
    app_id: str | None = setting("WECHAT_APP_ID")
    app_secret: str | None = setting("WECHAT_APP_SECRET")
    encoding_aes_key: str | None = setting("WECHAT_ENCODING_AES_KEY", _aes_key)
    message_mode: str = setting("WECHAT_MESSAGE_MODE", _one_of(*MESSAGE_MODES))  # default: safe with a key
    callback_path: str = setting("WECHAT_CALLBACK_PATH", _path, "/wechat")
    api_base_url: str = setting("WECHAT_API_BASE_URL", _http_url, "https://api.weixin.qq.com")
    plugins: tuple[str, ...] = setting("WECHAT_PLUGINS", _names, ())
    autoreply_rules: str | None = setting("WECHAT_AUTOREPLY_RULES", _rules_file)  # for app.plugins.autoreply
    session_ttl: float = setting("WECHAT_SESSION_TTL", _seconds(0), 3600.0)  # after a follower's session last changed
    store_url: str = setting("WECHAT_STORE_URL", _store_url)  # default: wechat.sqlite3 in the instance folder
    timestamp_tolerance: int = setting("WECHAT_TIMESTAMP_TOLERANCE", _integer(0), 300)
    max_body_bytes: int = setting("WECHAT_MAX_BODY_BYTES", _integer(1), 262144)
    reply_deadline: float = setting("WECHAT_REPLY_DEADLINE", _seconds(0, WECHAT_DELIVERY_TIMEOUT), 4.5)
    late_reply: str = setting("WECHAT_LATE_REPLY", _one_of(RETRY, CUSTOMER_SERVICE), RETRY)
    late_reply_hint: str = setting("WECHAT_LATE_REPLY_HINT", _text, DEFAULT_LATE_REPLY_HINT, keep_empty=True)
    handler_threads: int = setting("WECHAT_HANDLER_THREADS", _integer(1), 128)  # per worker process
    store_timeout: float = setting("WECHAT_STORE_TIMEOUT", _seconds(0, WECHAT_DELIVERY_TIMEOUT), 0.25)
    text_limit: int = setting("WECHAT_TEXT_LIMIT", _integer(64), 2048)  # bytes of a text reply's UTF-8
    text_max_parts: int = setting("WECHAT_TEXT_MAX_PARTS", _integer(1), 5)
    more_hint: str = setting("WECHAT_MORE_HINT", _text, DEFAULT_MORE_HINT, keep_empty=True)
    task_queue: str = setting("WECHAT_TASK_QUEUE", _one_of(EMBEDDED, RQ), EMBEDDED)
    dedup_ttl: int = setting("WECHAT_DEDUP_TTL", _integer(60), 86400)  # must outlast WeChat's 15 s of deliveries
    allowed_ips: allowlist.Allowed = setting("WECHAT_ALLOWED_IPS", allowlist.parse_allowed)
    trusted_proxies: int = setting("WECHAT_TRUSTED_PROXIES", _integer(0), 0)
    health_timeout: float = setting("WECHAT_HEALTH_TIMEOUT", _seconds(0), 1.0)
    health_min_free_bytes: int = setting("WECHAT_HEALTH_MIN_FREE_BYTES", _integer(0), 1 << 20)
    token_endpoint: str = setting("WECHAT_TOKEN_ENDPOINT", _one_of(*TOKEN_ENDPOINTS), "stable_token")
    connect_timeout: float = setting("WECHAT_CONNECT_TIMEOUT", _seconds(0), 3.05)
    read_timeout: float = setting("WECHAT_READ_TIMEOUT", _seconds(0), 10.0)
    log_format: str = setting("WECHAT_LOG_FORMAT", _one_of(*LOG_FORMATS), "text")
    log_mask_openids: bool = setting("WECHAT_LOG_MASK_OPENIDS", _flag, False)

    @property
    def accepts_plaintext(self) -> bool:
        return self.message_mode != SAFE

    @property
    def accepts_encrypted(self) -> bool:
        return self.message_mode != PLAINTEXT


def variables() -> dict[str, dataclasses.Field]:
    """Every setting's variable name and its field, in declaration order."""
    return {item.metadata["variable"]: item for item in dataclasses.fields(Settings)}


def load_settings(
    config: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    instance_path: str = "instance",
) -> Settings:
    """Build :class:`Settings` from ``config`` over ``environ``; the default store lives in ``instance_path``."""
    source: dict[str, object] = dict(os.environ if environ is None else environ)
    source.update(config or {})

    values: dict[str, Any] = {}
    for variable, item in variables().items():
        raw = source.get(variable)
        if raw is None:
            continue
        text = raw if isinstance(raw, str) else ",".join(raw) if isinstance(raw, list | tuple) else str(raw)
        text = text.strip()
        if not text and not item.metadata["keep_empty"]:
            continue
        try:
            values[item.name] = item.metadata["read"](text)
        except ValueError as exc:
            raise SettingsError(f"{variable} {exc}") from None

    if not values.get("signing_token"):
        raise SettingsError("WECHAT_TOKEN is required: set it to the token of the official-account console")
    values.setdefault("store_url", store.store_url(os.path.join(instance_path, "wechat.sqlite3")))
    values.setdefault("message_mode", SAFE if values.get("encoding_aes_key") else PLAINTEXT)
    settings = Settings(**values)
    _check_together(settings)
    return settings


def _check_together(settings: Settings) -> None:
    """The rules that tie one setting to another."""
    if settings.encoding_aes_key and not settings.app_id:
        raise SettingsError("WECHAT_APP_ID is required when WECHAT_ENCODING_AES_KEY is set")
    if settings.message_mode != PLAINTEXT and not settings.encoding_aes_key:
        raise SettingsError(
            f"WECHAT_MESSAGE_MODE={settings.message_mode} needs WECHAT_ENCODING_AES_KEY (and WECHAT_APP_ID)"
        )
    if settings.late_reply == CUSTOMER_SERVICE and not (settings.app_id and settings.app_secret):
        raise SettingsError("WECHAT_LATE_REPLY=customer_service needs WECHAT_APP_ID and WECHAT_APP_SECRET")
    if len(settings.more_hint.encode()) > settings.text_limit // 2:
        raise SettingsError("WECHAT_MORE_HINT must take at most half of WECHAT_TEXT_LIMIT")
    if settings.task_queue == RQ and not settings.store_url.startswith(("redis://", "rediss://")):
        raise SettingsError("WECHAT_TASK_QUEUE=rq needs a Redis WECHAT_STORE_URL: the queue lives in that Redis")
    if settings.allowed_ips == allowlist.WECHAT and not (settings.app_id and settings.app_secret):
        raise SettingsError("WECHAT_ALLOWED_IPS=wechat needs WECHAT_APP_ID and WECHAT_APP_SECRET to fetch the list")
