"""State that survives restarts and is shared by every worker: one small interface.

:func:`open_store` picks the implementation from ``WECHAT_STORE_URL``;
:func:`store_url` is the one place that reads such a URL, and :func:`masked`
the one that prints it.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from .base import Store, StoreUnavailable

SCHEMES = ("sqlite:///", "redis://", "rediss://")

_PASSWORD = re.compile(r"^([a-z]+://[^/@:]*:)[^/@]*@")


def store_url(text: str) -> str:
    """``text`` as a store URL: a URL with a known scheme, or a plain path taken as a SQLite file.

    Raises ValueError for any other scheme.
    """
    if text.startswith(SCHEMES):
        return text
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ValueError(
            f"has an unknown scheme {scheme!r} (use sqlite:///PATH, a plain path, or redis://HOST:PORT/DB)"
        )
    return "sqlite:///" + os.path.abspath(text)


def masked(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: the only form of it that is ever printed."""
    return _PASSWORD.sub(r"\1***@", url)


def open_store(url: str, timeout: float = 0.25) -> Store:
    """The store named by ``url`` (``sqlite:///PATH`` or ``redis://HOST:PORT/DB``).

    ``timeout`` bounds every call: how long SQLite waits for another writer's lock,
    how long a Redis call waits for its answer.
    """
    url = store_url(url)
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url[len("sqlite:///") :], busy_timeout=timeout)
    try:
        from .redis import RedisStore
    except ImportError:
        raise ValueError("the Redis store needs the redis package: pip install 'wechat-callback[redis]'") from None
    if not urlsplit(url).hostname:
        raise ValueError("names no host")
    return RedisStore(url, timeout=timeout)


__all__ = ["SCHEMES", "Store", "StoreUnavailable", "masked", "open_store", "store_url"]
