"""State that survives restarts and is shared by every worker: one small interface.

:func:`open_store` picks the implementation from ``WECHAT_STORE_URL``.
"""

from __future__ import annotations

from .base import Store


def open_store(url: str) -> Store:
    """The store named by ``url`` (``sqlite:///PATH`` or ``redis://HOST:PORT/DB``)."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url[len("sqlite:///") :])
    if url.startswith(("redis://", "rediss://")):
        try:
            from .redis import RedisStore
        except ImportError:
            raise ValueError("the Redis store needs the redis package: pip install 'wechat-callback[redis]'") from None

        return RedisStore(url)
    raise ValueError(f"unknown store scheme in {url!r}")


__all__ = ["Store", "open_store"]
