"""Loading handler plugins, and knowing which receivers belong to which app.

A plugin is an ordinary module (or package) named in ``WECHAT_PLUGINS`` or
registered under the entry-point group ``wechat_callback.plugins``; importing it
connects receivers to :mod:`app.signals`.  Signals are process-wide, so blinker
alone cannot say which app a receiver is for.  The ledger here can: it listens to
each signal's ``receiver_connected`` (blinker's public hook) and files every
receiver connected while a module is being imported under that module and under
each module importing it at that moment: a package plugin owns what its
submodules connect, a plugin what a helper module it imports connects.  The
ledger lasts as long as the process, so an app that loads a module imported
before (by another app, or by a test that wanted a constant from it) gets the
same receivers.

Each app holds a :class:`Plugins`: the receivers filed under its plugins, in
plugin order, then the ones ``create_app`` registered for it alone.  A receiver
connected while some other module was imported runs in no app.  A receiver
connected at run time, outside any import (a test's ``connected_to``, a
console), runs in every app, after the app's own.

A receiver takes only what it names: its signature is read once, when the app's
table is built (or when it is connected at run time), into a :class:`Plan` that
says what to pass it.  A receiver naming something no receiver is given stops
start-up with one line naming both.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import math
import sys
import threading
import weakref
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, NamedTuple

from blinker import ANY, Signal

from .. import signals
from ..settings import SettingsError

if TYPE_CHECKING:
    from ..store import Store

ENTRY_POINT_GROUP = "wechat_callback.plugins"
PLUGIN_KEY_PREFIX = "plugin:"

Receiver = Callable[..., Any]


# What dispatch gives every receiver, besides the push itself (see app/signals.py).
GIVEN = ("client", "store", "session", "settings")


class Connection(NamedTuple):
    """``receiver`` connected to ``signal`` for ``sender`` (blinker's ``ANY``: every sender)."""

    signal: Signal
    sender: Any
    receiver: Receiver


def load_plugins(names: tuple[str, ...]) -> tuple[str, ...]:
    """Import the named plugins, then the registered ones; return their module names in order."""
    loaded: list[str] = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise SettingsError(f"WECHAT_PLUGINS: cannot import {name!r}: {type(exc).__name__}: {exc}") from None
        loaded.append(module.__name__)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            module = importlib.import_module(entry_point.module)
        except Exception as exc:
            raise SettingsError(
                f"plugin entry point {entry_point.name!r} ({entry_point.value}) cannot be imported: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if module.__name__ not in loaded:
            loaded.append(module.__name__)
    return tuple(loaded)


class Plugins:
    """The receivers one app runs, in the order their replies win.

    First those filed under ``modules`` (the app's plugins, in order; each plugin's
    in the order it connected them), then ``own`` (registered by ``create_app`` for
    this app alone), then those connected at run time outside any import.  The
    table (signal, sender) -> receivers is built once, at start-up, and again only
    if a filed receiver is disconnected.
    """

    def __init__(self, modules: tuple[str, ...], own: Iterable[Connection] = ()) -> None:
        self.modules = modules
        self.own = tuple(own)
        self.dispatch_cache: tuple | None = None  # what app.dispatch gives every receiver of this app
        self._build()

    def calls_of(self, signal: Signal, sender: str) -> Sequence[tuple[Receiver, Plan]]:
        """The receivers of ``sender`` (in lower case) on ``signal``, in order, each with how to call it."""
        if self._version != _ledger_version:
            self._build()
        calls = self._table.get((signal, sender))
        if calls is None:
            calls = self._table.get((signal, ANY), ())
        if not _at_run_time.get(signal):
            return calls
        late = connected_at_run_time(signal, sender)
        return [*calls, *late] if late else calls

    def receivers_of(self, signal: Signal, sender: str) -> list[Receiver]:
        return [receiver for receiver, _ in self.calls_of(signal, sender)]

    def _build(self) -> None:
        """The table; raises :class:`SettingsError` for a receiver that names something it is not given."""
        self._version = _ledger_version
        connected: dict[Signal, list[tuple[Hashable, Receiver]]] = defaultdict(list)
        for signal, sender, receiver in [*filed_under(self.modules), *self.own]:
            connected[signal].append((_sender_key(sender), receiver))
        table: dict[tuple[Signal, Hashable], tuple[tuple[Receiver, Plan], ...]] = {}
        for signal, pairs in connected.items():
            plans: dict[Hashable, Plan] = {}
            for _, receiver in pairs:
                if receiver_id(receiver) not in plans:
                    plan = plans[receiver_id(receiver)] = plan_for(receiver, signal)
                    if plan.error:
                        raise SettingsError(f"WECHAT_PLUGINS: {plan.error}")
            for sender in {sender for sender, _ in pairs}:  # ANY's row holds only the ANY receivers
                receivers = _unique(receiver for key, receiver in pairs if key in (sender, ANY))
                table[signal, sender] = tuple((receiver, plans[receiver_id(receiver)]) for receiver in receivers)
        self._table = table


class Plan(NamedTuple):
    """How to call a receiver: with the sender first or not, and which keyword arguments.

    ``names`` None: every keyword argument (it takes ``**extra``).  ``session``: it
    names the session, which only the receivers that name it are given.  ``error``:
    it cannot be called (it names something it is not given), and says so.
    """

    sender: bool
    names: tuple[str, ...] | None
    session: bool = False
    error: str = ""

    def call(self, receiver: Receiver, sender: Any, given: dict[str, Any], session: Any = None) -> Any:
        """Call ``receiver`` with what it takes of ``given`` (and ``session``)."""
        if self.error:
            raise TypeError(self.error)
        if self.names is not None:
            given = {name: given[name] for name in self.names if name in given}
        if self.session and session is not None:
            given = {**given, "session": session}
        return receiver(sender, **given) if self.sender else receiver(**given)


EVERYTHING = Plan(True, None)  # blinker's own way: the sender, then every keyword argument


def plan_for(receiver: Receiver, signal: Signal, also: Iterable[str] = ()) -> Plan:
    """How to call ``receiver`` on ``signal``, which gives it :data:`GIVEN`, what the signal sends, and ``also``.

    The sender goes in its first positional parameter, unless that parameter is named
    after one of the keyword arguments (``def help(message): ...``).  A parameter with
    a default may name anything; one without must name a keyword argument it is given.
    """
    known = (*_SENDS.get(signal, ()), *also, *GIVEN)
    try:
        parameters = list(inspect.signature(receiver).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a builtin): blinker's way
        return EVERYTHING
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    takes_sender = bool(parameters) and (
        parameters[0].kind is inspect.Parameter.VAR_POSITIONAL
        or (parameters[0].kind in positional and (parameters[0].name == "sender" or parameters[0].name not in known))
    )
    names: list[str] = []
    every = False
    for index, parameter in enumerate(parameters):
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            every = True
        elif (index == 0 and takes_sender) or parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        elif parameter.name in known and parameter.kind is not inspect.Parameter.POSITIONAL_ONLY:
            names.append(parameter.name)
        elif parameter.default is inspect.Parameter.empty:
            signal_name = str(getattr(signal, "name", "the signal")).replace("-", "_")
            error = (
                f"receiver {_qualified_name(receiver)} takes {parameter.name!r}, which {signal_name} does not give; "
                f"a receiver may take the sender first, then any of {', '.join(known)}"
            )
            return Plan(False, None, error=error)
    session = "session" in names
    if takes_sender and every and not session:
        return EVERYTHING
    return Plan(takes_sender, None if every else tuple(names), session)


class PluginStore:
    """The store as a plugin sees it: short values with an expiry, under keys that start with ``plugin:``.

    The access token, its refresh lock, the push journal and the jobs are out of reach.
    """

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, key: str) -> str | None:
        """The live value under ``key``."""
        return self._store.get_value(PLUGIN_KEY_PREFIX + key)

    def set(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds."""
        self._store.set_value(PLUGIN_KEY_PREFIX + key, value, ttl)

    def add(self, key: str, value: str, ttl: float) -> bool:
        """Keep ``value`` only if ``key`` holds no live value; True if it did."""
        return self._store.add_value(PLUGIN_KEY_PREFIX + key, value, ttl)

    def delete(self, key: str, expected: str | None = None) -> bool:
        """Delete ``key`` (only if it still holds ``expected``, when given)."""
        return self._store.delete_value(PLUGIN_KEY_PREFIX + key, expected)


# --- the ledger: who connected what -------------------------------------------------

_lock = threading.Lock()
# module -> (signal, sender, receiver or a weak reference to it), in connection order
_filed: dict[str, list[tuple[Signal, Any, Any]]] = defaultdict(list)
_owned: set[tuple[Signal, Hashable]] = set()  # (signal, receiver id) of every filed receiver
# receiver id -> (connection order, plan)
_at_run_time: dict[Signal, dict[Hashable, tuple[int, Plan]]] = defaultdict(dict)
_order = itertools.count()
_ledger_version = 0  # moves when a filed receiver is disconnected


def filed_under(modules: Iterable[str]) -> list[Connection]:
    """The live receivers filed under ``modules``, module by module, each in connection order."""
    with _lock:
        filed = [entry for module in modules for entry in _filed.get(module, ())]
    connections = []
    for signal, sender, held in filed:
        receiver = held() if isinstance(held, weakref.ref) else held
        if receiver is not None:
            connections.append(Connection(signal, sender, receiver))
    return connections


def connected_at_run_time(signal: Signal, sender: str) -> list[tuple[Receiver, Plan]]:
    """The receivers of ``sender`` connected outside any import, in connection order, with their plans."""
    connected = _at_run_time.get(signal)
    if not connected:
        return []
    found = []
    for receiver in signal.receivers_for(sender):
        key = receiver_id(receiver)
        if (signal, key) not in _owned:
            order, plan = connected.get(key) or (math.inf, plan_for(receiver, signal))
            found.append((order, receiver, plan))
    found.sort(key=lambda entry: entry[0])
    return [(receiver, plan) for _, receiver, plan in found]


def receiver_id(receiver: Receiver) -> Hashable:
    """The receiver's identity as blinker keeps it: a bound method is its function and instance."""
    if inspect.ismethod(receiver):
        return id(receiver.__func__), id(receiver.__self__)
    return id(receiver)


def _on_connect(signal: Signal, *, receiver: Receiver, sender: Any, weak: bool, **_: Any) -> None:
    importing = _modules_being_imported()
    key = receiver_id(receiver)
    with _lock:
        if importing:
            held = _weak_ref(receiver, (signal, key)) if weak else receiver
            for module in importing:
                _filed[module].append((signal, sender, held))
            _owned.add((signal, key))
        elif key not in _at_run_time[signal]:
            _at_run_time[signal][key] = (next(_order), plan_for(receiver, signal))


def _on_disconnect(signal: Signal, *, receiver: Receiver, sender: Any, **_: Any) -> None:
    global _ledger_version
    key = receiver_id(receiver)
    with _lock:
        if (signal, key) in _owned:
            for entries in _filed.values():
                entries[:] = [
                    (filed_signal, filed_sender, held)
                    for filed_signal, filed_sender, held in entries
                    if not (
                        filed_signal is signal
                        and (sender is ANY or filed_sender == sender)
                        and receiver_id(held() if isinstance(held, weakref.ref) else held) == key
                    )
                ]
            if sender is ANY:
                _owned.discard((signal, key))
            _ledger_version += 1
        elif sender is ANY:
            _at_run_time[signal].pop(key, None)


def _modules_being_imported() -> list[str]:
    """The modules whose top-level code is running in this thread, innermost first."""
    names = []
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            name = frame.f_globals.get("__name__")
            module = sys.modules.get(name) if name != "__main__" else None
            if module is not None and getattr(module, "__dict__", None) is frame.f_globals:
                names.append(name)
        frame = frame.f_back
    return names


def _weak_ref(receiver: Receiver, owned: tuple[Signal, Hashable]) -> weakref.ref:
    """A weak reference that forgets the receiver's ownership when it dies: its id may be reused."""

    def forget(_: weakref.ref) -> None:
        _owned.discard(owned)  # no lock: the collector may run this while the lock is held

    if inspect.ismethod(receiver):
        return weakref.WeakMethod(receiver, forget)
    return weakref.ref(receiver, forget)


def _qualified_name(receiver: Receiver) -> str:
    return f"{getattr(receiver, '__module__', '?')}.{getattr(receiver, '__qualname__', repr(receiver))}"


def _sender_key(sender: Any) -> Hashable:
    """The table's key for ``sender``: a name in lower case, as the dispatcher sends them, so that
    ``connect_via("CLICK")`` fires on a CLICK event as ``connect_via("click")`` does."""
    if isinstance(sender, str):
        return sender.lower()
    return sender if sender is ANY or isinstance(sender, int) else id(sender)


def _unique(receivers: Iterable[Receiver]) -> tuple[Receiver, ...]:
    seen: set[Hashable] = set()
    unique = []
    for receiver in receivers:
        key = receiver_id(receiver)
        if key not in seen:
            seen.add(key)
            unique.append(receiver)
    return tuple(unique)


# The push each signal sends its receivers, by name.
_SENDS: dict[Signal, tuple[str, ...]] = {
    signals.message_received: ("message",),
    signals.event_received: ("event",),
    signals.mass_send_finished: ("event",),
    signals.template_send_finished: ("event",),
}

for _signal in (
    signals.message_received,
    signals.event_received,
    signals.mass_send_finished,
    signals.template_send_finished,
):
    _signal.receiver_connected.connect(_on_connect, weak=False)
    _signal.receiver_disconnected.connect(_on_disconnect, weak=False)
