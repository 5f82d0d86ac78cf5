"""Sending a typed push to one app's receivers and picking the reply.

blinker's own ``send`` calls every receiver connected anywhere in the process,
stops at the first that raises and promises no order.  Here the app's
:class:`app.plugins.Plugins` names the receivers and their order: the plugins'
(``WECHAT_PLUGINS``, then entry points; each plugin's in the order it connected
them), then the app's own, then those connected at run time outside an import.
Every receiver runs; one that raises is logged and skipped; the first reply wins.
Each receiver is given only what it names (see :class:`app.plugins.Plan`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from blinker import Signal

from . import signals
from .messages import Event, MassSendJobFinishEvent, Message, Push, TemplateSendJobFinishEvent
from .plugins import EVERYTHING, Plugins, PluginStore
from .replies import Reply, as_reply
from .session import Session

if TYPE_CHECKING:
    from .settings import Settings
    from .store import Store

log = logging.getLogger(__name__)

DEFAULT_SESSION_TTL = 3600.0  # when no settings are at hand (a caller that passes neither settings nor client)


@dataclass
class Outcome:
    reply: Reply | None = None
    failures: int = 0


def dispatch(
    push: Push, plugins: Plugins, *, store: Store | None = None, settings: Settings | None = None, **extra: Any
) -> Outcome:
    """Run every receiver ``plugins`` has for ``push``; the first reply in their order wins.

    ``extra`` (the client) is passed to every receiver as is; ``store`` reaches them
    as a :class:`app.plugins.PluginStore`, which holds only the plugins' own values,
    and, for the receivers that name ``session``, as the follower's
    :class:`app.session.Session`, made when the first of them runs and written back
    once they have all run.  ``settings`` are the app's (by default the client's).
    """
    reply = None
    failures = 0
    given = session = None
    for signal, sender, name in _deliveries(push):
        calls = plugins.calls_of(signal, sender)
        if not calls:
            continue
        if given is None:  # built once a receiver is there to take it
            cached = plugins.dispatch_cache
            if cached is None or cached[0] is not store or cached[1] is not settings or cached[2] != extra:
                cached = _shared(plugins, store, settings, extra)
            ttl = cached[4]
            given = {name: push, **cached[3]}
        for receiver, plan in calls:
            try:
                if plan is EVERYTHING:
                    result = receiver(sender, **given)
                else:
                    if plan.session and session is None and store is not None:
                        session = Session(store, push.from_user, ttl)
                    result = plan.call(receiver, sender, given, session)
                if result is not None:
                    result = as_reply(result)
            except Exception:
                failures += 1
                log.exception("handler %s failed on %s %r", _name(receiver), push.msg_type, sender)
                continue
            if reply is None:
                reply = result
    if session is not None and session.loaded:
        _save(session)
    return Outcome(reply, failures)


def _shared(plugins: Plugins, store: Store | None, settings: Settings | None, extra: dict[str, Any]) -> tuple:
    """``(store, settings, extra)`` as the caller passed them, then what every receiver of the app is given
    besides the push and the session, and the session's expiry.

    The same for every push of an app, so kept on its ``plugins`` until the caller passes something else.
    """
    asked = (store, settings, dict(extra))
    if settings is None:
        settings = getattr(extra.get("client"), "settings", None)
    shared = dict(extra)
    if settings is not None:
        shared["settings"] = settings
    if store is not None:
        shared["store"] = PluginStore(store)
    ttl = settings.session_ttl if settings is not None else DEFAULT_SESSION_TTL
    plugins.dispatch_cache = cached = (*asked, shared, ttl)
    return cached


def _save(session: Session) -> None:
    try:
        session.save()
    except Exception as exc:  # a value JSON cannot hold, or the store: the reply still goes
        log.error("a follower's session was not saved: %s: %s", type(exc).__name__, exc)


def _deliveries(push: Push) -> tuple[tuple[Signal, str, str], ...]:
    """The signals ``push`` goes out on, each with its sender and the name receivers are given it by."""
    if isinstance(push, Message):
        return ((signals.message_received, push.msg_type.lower(), "message"),)
    if not isinstance(push, Event):
        return ()
    name = push.name
    if isinstance(push, MassSendJobFinishEvent):
        return (signals.event_received, name, "event"), (signals.mass_send_finished, name, "event")
    if isinstance(push, TemplateSendJobFinishEvent):
        return (signals.event_received, name, "event"), (signals.template_send_finished, name, "event")
    return ((signals.event_received, name, "event"),)


def _name(receiver: object) -> str:
    return f"{getattr(receiver, '__module__', '?')}.{getattr(receiver, '__qualname__', repr(receiver))}"
