"""Loading handler plugins: modules named in ``WECHAT_PLUGINS`` or registered
under the entry-point group ``wechat_callback.plugins``.

A plugin is an ordinary module (or package) that connects receivers to
:mod:`app.signals` when it is imported.  Signals are process-wide, so the
dispatcher runs a receiver that belongs to a plugin (it is defined in the
plugin's module or below its package) only in the apps that loaded that plugin.
The plugins shipped in ``app.plugins`` count as plugins even when merely
imported.  Receivers connected from anywhere else always run.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ..settings import SettingsError

ENTRY_POINT_GROUP = "wechat_callback.plugins"

# Every module any app in this process loaded as a plugin, and the shipped ones.
_loaded_anywhere: set[str] = {__name__}


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
    _loaded_anywhere.update(loaded)
    return tuple(loaded)


def plugin_of(module: str | None, plugins: tuple[str, ...] | set[str]) -> str | None:
    """The plugin among ``plugins`` that ``module`` belongs to: the plugin itself or a module below it."""
    if module is None:
        return None
    for plugin in plugins:
        if module == plugin or module.startswith(plugin + "."):
            return plugin
    return None


def is_plugin_module(module: str | None) -> bool:
    """Whether ``module`` belongs to a plugin some app in this process loaded, or to a shipped one."""
    return plugin_of(module, _loaded_anywhere) is not None
