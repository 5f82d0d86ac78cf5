"""How the app logs: lines that do not flood, a text or JSON format, openids masked on request.

A store outage or a stream of forged requests repeats the same failure on every
request; :class:`Throttle` says so once a minute, not once a request.

``WECHAT_LOG_FORMAT=json`` writes one JSON object a line (the app's lines and,
under gunicorn, gunicorn's own and its access log); ``WECHAT_LOG_MASK_OPENIDS``
masks followers' openids in every line those handlers write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping

INTERVAL = 60.0
PUSH_LOGGER = "app.push"  # one line per delivery of a push, written by app.metrics
TRUE_WORDS = ("1", "true", "yes", "on")


class Throttle:
    """Logs the first occurrence of each ``kind`` at once, then at most once per ``interval``.

    A line logged after others were held back says how many there were.
    """

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._kinds: dict[str, tuple[float, int]] = {}  # kind -> (when last logged, held back since)

    def log(self, logger: logging.Logger, level: int, kind: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``kind`` was logged within the interval; True if logged."""
        now = time.monotonic()
        with self._lock:
            logged_at, held = self._kinds.get(kind, (float("-inf"), 0))
            if now - logged_at < self.interval:
                self._kinds[kind] = (logged_at, held + 1)
                return False
            self._kinds[kind] = (now, 0)
        if held:
            message += f" (and {held} more like it in the last {self.interval:g}s)"
        logger.log(level, message, *args)
        return True


# --- formats and masking ---------------------------------------------------------

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PUSH_FIELDS = ("type", "id", "outcome", "ms")  # the arguments of app.metrics' push line, in order
ACCESS_FIELDS = {"remote": "h", "method": "m", "path": "U", "status": "s", "bytes": "B", "ms": "M", "agent": "a"}
OPENID = re.compile(r"(?<![\w-])o[\w-]{27}(?![\w-])", re.ASCII)  # WeChat's openids: 28 characters from an "o"
OPENID_IN_KEY = re.compile(r"\b((?:msg|event):)([^:\s]+)(?=:\d)")  # push keys without MsgId carry the sender


def mask(openid: str) -> str:
    """``o~`` and 8 hex digits of a hash: the same follower masks the same, so lines can still be followed."""
    return "o~" + hashlib.blake2s(openid.encode(), digest_size=4).hexdigest()


def mask_openids(text: str) -> str:
    """``text`` with every openid in it masked: bare ones, and the sender inside a push's key."""
    text = OPENID_IN_KEY.sub(lambda found: found.group(1) + mask(found.group(2)), text)
    return OPENID.sub(lambda found: mask(found.group()), text)


class MaskOpenIds(logging.Filter):
    """Masks openids in a record's message and text arguments, once per record (it may pass several handlers).

    A traceback is left as it is: it shows code, and seldom an openid.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "openids_masked", False):
            return True
        record.openids_masked = True
        if isinstance(record.msg, str):
            record.msg = mask_openids(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask_openids(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


class Seconds:
    """The text of a time's whole second, ``strftime`` run once per second, not once per line.

    Every push writes a line, so a busy worker formats the same second hundreds of
    times; formatting it costs more than the rest of the line.  Safe across threads:
    the cache is one tuple, replaced whole.
    """

    def __init__(self, pattern: str, convert: Callable[[float], time.struct_time]) -> None:
        self.pattern = pattern
        self.convert = convert
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        cached_second, text = self._cached
        if second != cached_second:
            text = time.strftime(self.pattern, self.convert(second))
            self._cached = (second, text)
        return text


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, as :class:`logging.Formatter` writes it, each second's text made once."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self.seconds = Seconds(self.default_time_format, self.converter)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self.default_msec_format % (self.seconds(record.created), record.msecs)


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log shippers: ``time`` (UTC), ``level``, ``logger``, ``message``,
    ``exception`` when there is one.  A push's line adds ``type``, ``id``, ``outcome`` and ``ms``;
    gunicorn's access line ``remote``, ``method``, ``path``, ``status``, ``bytes``, ``ms``, ``agent``."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = Seconds("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": f"{self.seconds(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        args = record.args
        if record.name == PUSH_LOGGER and isinstance(args, tuple) and len(args) == len(PUSH_FIELDS):
            entry.update(zip(PUSH_FIELDS, args, strict=True))
            entry["ms"] = round(float(entry["ms"]), 1)
        elif record.name == "gunicorn.access" and isinstance(args, Mapping):
            entry.update((name, args.get(atom)) for name, atom in ACCESS_FIELDS.items())
            entry["status"] = int(entry["status"]) if str(entry["status"]).isdigit() else entry["status"]
            entry["agent"] = str(entry["agent"]).replace('\\"', '"')  # gunicorn escaped its quotes for text
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(log_format: str = "text", mask: bool = False) -> None:
    """Log the app's lines to stderr at INFO, as ``log_format`` says, openids masked if ``mask``.

    When the program that runs the app set logging up already (a test runner, a
    ``logconfig`` of its own), its handlers are left as they are.  The handler
    this function added is set again by the next call (the last app built wins).
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "wechat_callback", False)), None)
    if handler is None:
        if root.handlers:
            return
        handler = logging.StreamHandler()
        handler.wechat_callback = True
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    handler.setFormatter(formatter(log_format))
    for old in [f for f in handler.filters if isinstance(f, MaskOpenIds)]:
        handler.removeFilter(old)
    if mask:
        handler.addFilter(MaskOpenIds())


def adopt(*loggers: logging.Logger, environ: Mapping[str, str] = os.environ) -> None:
    """Give other loggers' handlers (gunicorn's error and access logs) the app's format and masking.

    Read from the environment, before any app is built; a bad value is left to
    start-up, which stops with a line naming the variable.
    """
    log_format = environ.get("WECHAT_LOG_FORMAT", "").strip()
    masking = environ.get("WECHAT_LOG_MASK_OPENIDS", "").strip().lower() in TRUE_WORDS
    for logger in loggers:
        for handler in logger.handlers:
            if log_format == "json":
                handler.setFormatter(JsonFormatter())
            if masking and not any(isinstance(f, MaskOpenIds) for f in handler.filters):
                handler.addFilter(MaskOpenIds())
