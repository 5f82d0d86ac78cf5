"""Decorators that connect a receiver for one keyword, menu key or QR-code scene.

::

    from app.routes import on_click, on_subscribe, on_text

    @on_text("help")
    def help(message):
        return "Send 'weather CITY'"

    @on_text(prefix="weather ")
    def weather(message, session):
        ...

    @on_click("NEWS")
    def news(event, client):
        ...

Each decorator connects a receiver to a signal of :mod:`app.signals` with
blinker's own ``connect`` (so it belongs to the plugin being imported, like any
receiver) and returns the function unchanged.  The receiver answers only the
pushes that match, and returns ``None`` for the rest, so the first reply in
plugin order still wins.  The function takes only what it names: ``message`` or
``event``, ``client``, ``store``, ``session``, ``settings``, and ``match`` (the
:class:`re.Match` of a ``regex`` route); a name it is not given is an error when
its module is imported.  Event names match whatever their case.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from blinker import Signal

from .plugins import plan_for
from .signals import event_received, message_received

F = TypeVar("F", bound=Callable[..., Any])


def on_text(
    text: str | None = None, *, prefix: str | None = None, regex: str | re.Pattern[str] | None = None
) -> Callable[[F], F]:
    """Answer a text message that is exactly ``text``, starts with ``prefix``, or in which ``regex`` is found.

    ``regex`` is searched for anywhere in the text (anchor it with ``^`` and ``$``
    to match the whole); the function may take its ``match``.  Exactly one of the
    three is given.
    """
    if sum(value is not None for value in (text, prefix, regex)) != 1:
        raise TypeError("on_text takes exactly one of text, prefix= or regex=")
    if text is not None:
        return _route(message_received, "text", "message", lambda message: message.content == text)
    if prefix is not None:
        return _route(message_received, "text", "message", lambda message: (message.content or "").startswith(prefix))
    pattern = re.compile(regex)
    return _route(message_received, "text", "message", lambda message: pattern.search(message.content or ""), "match")


def on_click(key: str) -> Callable[[F], F]:
    """Answer a click on the custom-menu button whose key is ``key``."""
    return _route(event_received, "click", "event", lambda event: event.event_key == key)


def on_subscribe(scene: str | None = None) -> Callable[[F], F]:
    """Answer a follow; with ``scene``, only a follow through the parametric QR code of that scene."""
    if scene is None:
        return _route(event_received, "subscribe", "event", None)
    return _route(event_received, "subscribe", "event", lambda event: event.scene == scene)


def on_scan(scene: str | None = None) -> Callable[[F], F]:
    """Answer a follower scanning a parametric QR code; with ``scene``, only the code of that scene."""
    if scene is None:
        return _route(event_received, "scan", "event", None)
    return _route(event_received, "scan", "event", lambda event: event.event_key == scene)


def on_event(name: str, *, key: str | None = None) -> Callable[[F], F]:
    """Answer the event ``name`` (any case: ``"VIEW"``, ``"view"``); with ``key``, only when its EventKey is that."""
    if key is None:
        return _route(event_received, name.lower(), "event", None)
    return _route(event_received, name.lower(), "event", lambda event: event.event_key == key)


def _route(
    signal: Signal,
    sender: str,
    push: str,
    test: Callable[[Any], Any] | None,
    found_as: str | None = None,
) -> Callable[[F], F]:
    """A decorator connecting a receiver that calls the function when ``test`` passes the push.

    What ``test`` returns is given to the function as ``found_as``, when that is set.
    """

    def decorator(function: F) -> F:
        plan = plan_for(function, signal, also=(found_as,) if found_as else ())
        if plan.error:
            raise TypeError(plan.error)

        def answer(sent_by: str, given: dict[str, Any], session: Any) -> Any:
            if test is not None:
                found = test(given[push])
                if not found:
                    return None
                if found_as:
                    given[found_as] = found
            return plan.call(function, sent_by, given, session)

        # The session is made only for a receiver that names it: this one, if the function does.
        if plan.session:

            def receiver(sent_by: str, session: Any = None, **given: Any) -> Any:
                return answer(sent_by, given, session)

        else:

            def receiver(sent_by: str, **given: Any) -> Any:
                return answer(sent_by, given, None)

        # Named after the function (for the log of a receiver that raises), but with a
        # signature of its own: blinker's sender, then everything dispatch gives.
        receiver.__module__ = function.__module__
        receiver.__name__ = getattr(function, "__name__", receiver.__name__)
        receiver.__qualname__ = getattr(function, "__qualname__", receiver.__qualname__)
        receiver.__doc__ = function.__doc__
        signal.connect(receiver, sender=sender, weak=False)
        return function

    return decorator
