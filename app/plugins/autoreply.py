"""The keyword auto-reply plugin: replies read from a rules file.

Load it with ``WECHAT_PLUGINS=app.plugins.autoreply`` and name the file in
``WECHAT_AUTOREPLY_RULES`` (``.toml`` or ``.json``)::

    [[rules]]
    text = "help"                       # the whole text, exactly
    reply = "Send 'weather CITY', or tap the menu."

    [[rules]]
    prefix = "weather "                 # the text starts with it
    reply = { type = "text", content = "Forecasts are on the menu." }

    [[rules]]
    regex = '^[0-9]{6}$'                # found anywhere in the text
    reply = { type = "image", media_id = "MEDIA_ID" }

    [[rules]]
    click = "NEWS"                      # the menu button with this key
    reply = { type = "news", articles = [{ title = "This week", url = "https://example.com" }] }

    [[rules]]
    subscribe = true                    # any follow; or a QR-code scene: subscribe = "shop"
    reply = "Thanks for following!"

    [[rules]]
    scan = "shop"                       # a follower scans the scene's QR code; or scan = true
    reply = "Welcome back"

The JSON form is the same object: ``{"rules": [{"text": "help", "reply": "..."}]}``.
A reply is a string (text) or a table with ``type`` (``text``, ``image``,
``voice``, ``video``, ``music``, ``news``, ``transfer_customer_service``) and the
fields of that reply in :mod:`app.replies`.  The first rule that matches answers.

The file is read at start-up, where a bad rule stops the app with one line naming
the file and the rule (counted from 1).  It is read again when it changes (looked
at no more than once a second); a bad file then is logged in one line and the
rules read before stay.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..messages import Event, Push, SubscribeEvent, TextMessage
from ..replies import MAX_ARTICLES_FOR_MESSAGE, REPLY_TYPES, Article, NewsReply, Reply, TextReply
from ..signals import event_received, message_received

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)

LOOK_EVERY = 1.0  # seconds between two looks at the file's modification time
TEXT_MATCHES = ("text", "prefix", "regex")
EVENT_MATCHES = ("click", "subscribe", "scan")
REPLY_CLASSES = {cls.msg_type: cls for cls in REPLY_TYPES}


class RuleError(ValueError):
    """A rules file that cannot be used; the message names the file (and the rule)."""


@dataclass(frozen=True)
class Rule:
    kind: str  # one of TEXT_MATCHES or EVENT_MATCHES
    value: str | None  # the text, prefix, menu key or scene; None: any follow or scan
    reply: Reply
    pattern: re.Pattern[str] | None = None

    def matches(self, push: Push) -> bool:
        kind, value = self.kind, self.value
        if isinstance(push, TextMessage):
            content = push.content or ""
            if kind == "text":
                return content == value
            if kind == "prefix":
                return content.startswith(value)
            return kind == "regex" and self.pattern.search(content) is not None
        if not isinstance(push, Event) or push.name != kind:
            return False
        if kind == "subscribe":
            return value is None or (isinstance(push, SubscribeEvent) and push.scene == value)
        return value is None or push.event_key == value


# --- reading a file -------------------------------------------------------------


def _toml(data: bytes) -> Any:
    return tomllib.loads(data.decode())


_LANGUAGES: dict[str, tuple[str, Callable[[bytes], Any]]] = {".toml": ("TOML", _toml), ".json": ("JSON", json.loads)}


def read_rules(path: str) -> tuple[Rule, ...]:
    """The rules in the file at ``path``; :class:`RuleError` naming the file, and the rule, if any is bad."""
    language, load = _LANGUAGES.get(os.path.splitext(path)[1].lower(), (None, None))
    if load is None:
        raise RuleError(f"{path}: must end in .toml or .json")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise RuleError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        document = load(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RuleError(f"{path}: not valid {language}: {_one_line(exc)}") from None
    if not isinstance(document, dict):
        raise RuleError(f"{path}: must hold an object with a list 'rules'")
    unknown = sorted(set(document) - {"rules"})
    if unknown:
        raise RuleError(f"{path}: unknown key {unknown[0]!r} (the rules are a list under 'rules')")
    rules = document.get("rules", [])
    if not isinstance(rules, list):
        raise RuleError(f"{path}: 'rules' must be a list")
    parsed = []
    for number, rule in enumerate(rules, 1):
        try:
            parsed.append(parse_rule(rule))
        except ValueError as exc:
            raise RuleError(f"{path}, rule {number}: {exc}") from None
    return tuple(parsed)


def parse_rule(rule: object) -> Rule:
    """One rule, from its table; ``ValueError`` saying what is wrong with it."""
    if not isinstance(rule, dict):
        raise ValueError("must be a table (an object)")
    matches = [key for key in (*TEXT_MATCHES, *EVENT_MATCHES) if key in rule]
    unknown = sorted(set(rule) - {*TEXT_MATCHES, *EVENT_MATCHES, "reply"})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}")
    if len(matches) != 1:
        raise ValueError(f"needs exactly one of {', '.join((*TEXT_MATCHES, *EVENT_MATCHES))}, has {len(matches)}")
    if "reply" not in rule:
        raise ValueError("has no reply")
    kind = matches[0]
    value = rule[kind]
    pattern = None
    if kind in ("subscribe", "scan") and value is True:
        value = None
    elif not isinstance(value, str) or not value:
        what = "true or a scene" if kind in ("subscribe", "scan") else "a string that is not empty"
        raise ValueError(f"{kind} must be {what}, got {value!r}")
    elif kind == "regex":
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"regex {value!r} does not compile: {exc}") from None
    reply = parse_reply(rule["reply"])
    if kind in TEXT_MATCHES and isinstance(reply, NewsReply) and len(reply.articles) > MAX_ARTICLES_FOR_MESSAGE:
        raise ValueError(f"a news reply to a message shows {MAX_ARTICLES_FOR_MESSAGE} article; it has more")
    return Rule(kind, value, reply, pattern)


def parse_reply(reply: object) -> Reply:
    """A reply from a string (text) or a table with ``type`` and the reply's fields."""
    if isinstance(reply, str):
        return TextReply(reply)
    if not isinstance(reply, dict):
        raise ValueError("reply must be a string or a table with a type")
    fields = dict(reply)
    kind = fields.pop("type", None)
    cls = REPLY_CLASSES.get(kind)
    if cls is None:
        raise ValueError(f"reply type {kind!r} is not one of {', '.join(REPLY_CLASSES)}")
    if cls is NewsReply:
        articles = fields.pop("articles", None)
        if not isinstance(articles, list) or not articles:
            raise ValueError("a news reply needs a list of articles")
        fields["articles"] = tuple(_build(Article, article, "article") for article in articles)
    return _build(cls, fields, f"{kind} reply")


def _build(cls: type, fields: object, what: str) -> Any:
    if not isinstance(fields, dict):
        raise ValueError(f"{what} must be a table")
    known = {item.name: item for item in dataclasses.fields(cls)}
    for name, value in fields.items():
        if name not in known:
            raise ValueError(f"{what} has no field {name!r} (it has {', '.join(known)})")
        if name != "articles" and not isinstance(value, str):
            raise ValueError(f"{what}: {name} must be a string, got {value!r}")
    missing = [name for name, item in known.items() if _required(item) and name not in fields]
    if missing:
        raise ValueError(f"{what} needs {missing[0]!r}")
    return cls(**fields)


def _required(item: dataclasses.Field) -> bool:
    return item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


# --- the rules of a file, kept fresh ----------------------------------------------


class RuleBook:
    """The rules of the file at ``path``, read again when its modification time or size changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp = _stamp(path)
        self._rules = read_rules(path)
        self._next_look = time.monotonic() + LOOK_EVERY
        self._lock = threading.Lock()

    def rules(self) -> tuple[Rule, ...]:
        """The rules, looking at the file first if a second has passed since the last look."""
        if time.monotonic() >= self._next_look and self._lock.acquire(blocking=False):
            try:
                self._next_look = time.monotonic() + LOOK_EVERY
                self._look()
            finally:
                self._lock.release()
        return self._rules

    def reply_to(self, push: Push) -> Reply | None:
        for rule in self.rules():
            if rule.matches(push):
                return rule.reply
        return None

    def _look(self) -> None:
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return
        self._stamp = stamp  # a bad file is logged once, not on every look
        if stamp is None:
            log.error("%s: cannot be read; keeping the %d rules read before", self.path, len(self._rules))
            return
        try:
            rules = read_rules(self.path)
        except RuleError as exc:
            log.error("%s; keeping the %d rules read before", exc, len(self._rules))
            return
        self._rules = rules
        log.info("%s: read again, %d rules", self.path, len(rules))


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


_books: dict[str, RuleBook] = {}
_books_lock = threading.Lock()


def load(path: str) -> RuleBook:
    """Read the rules file at ``path`` now (at start-up), for every app that names it; :class:`RuleError` if bad."""
    book = RuleBook(path)
    with _books_lock:
        _books[path] = book
    return book


def book_for(path: str) -> RuleBook | None:
    """The rules of ``path`` as last read (reading them now if no app has); None if they cannot be read."""
    book = _books.get(path)
    if book is None:
        try:
            book = load(path)
        except RuleError as exc:
            log.error("%s", exc)
            return None
    return book


# --- the receivers ----------------------------------------------------------------


def _answer(push: Push, settings: Settings | None) -> Reply | None:
    path = getattr(settings, "autoreply_rules", None)
    if not path:
        return None
    book = book_for(path)
    return None if book is None else book.reply_to(push)


@message_received.connect_via("text")
def reply_to_text(message: TextMessage, settings: Settings | None = None) -> Reply | None:
    return _answer(message, settings)


@event_received.connect_via("click")
@event_received.connect_via("subscribe")
@event_received.connect_via("scan")
def reply_to_event(event: Event, settings: Settings | None = None) -> Reply | None:
    return _answer(event, settings)
