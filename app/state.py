"""What one app holds: its settings, store, AES envelope, API client, receivers and request path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import Flask, current_app

from .allowlist import AllowList
from .crypto import AESEnvelope
from .logs import Throttle
from .metrics import Metrics
from .settings import Settings
from .store import Store

if TYPE_CHECKING:
    from .client import WeChatClient
    from .pipeline import Pipeline
    from .plugins import Plugins


@dataclass
class AppState:
    settings: Settings
    store: Store
    envelope: AESEnvelope | None
    client: WeChatClient
    plugins: Plugins  # the receivers it runs (its plugins', then its own), in the order their replies win
    metrics: Metrics = field(default_factory=Metrics)
    throttle: Throttle = field(default_factory=Throttle)  # for log lines that repeat
    allowlist: AllowList | None = None  # WECHAT_ALLOWED_IPS, when set
    pipeline: Pipeline | None = None  # the request path; set once the rest is built


def get_state(app: Flask | None = None) -> AppState:
    """The :class:`AppState` of ``app``, or of the current app."""
    return (app or current_app).extensions["wechat"]
