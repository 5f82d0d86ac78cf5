"""The layers import one way: the parser and the store stand on their own.

Each check runs in a fresh interpreter where the ``app`` package is bare (its
``__init__``, which builds the whole app, is not run), imports the low layer, and
lists what came in with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parent.parent / "app"

ABOVE = (
    "app.client",
    "app.plugins",
    "app.dispatch",
    "app.signals",
    "app.pipeline",
    "app.callback",
    "app.state",
    "app.tracking",
)
ABOVE += ("app.cli", "app.health", "flask", "blinker", "requests")

IMPORTED_WITH = """
import json, sys, types
package = types.ModuleType("app")
package.__path__ = [{app_dir!r}]
sys.modules["app"] = package
for name in {modules!r}:
    __import__(name)
print(json.dumps(sorted(sys.modules)))
"""


def imported_with(*modules: str) -> set[str]:
    code = IMPORTED_WITH.format(app_dir=str(APP_DIR), modules=modules)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(result.stdout))


def reached(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(name for name in loaded if any(name == n or name.startswith(n + ".") for n in names))


@pytest.mark.parametrize(
    ("low", "also_not"),
    [
        (("app.jobs",), ("app.store", "app.messages", "lxml")),
        (("app.store", "app.store.sqlite", "app.store.redis"), ("app.messages", "lxml")),
        (("app.messages",), ("app.store", "app.jobs")),
    ],
)
def test_the_parser_and_the_store_import_nothing_above_them(low, also_not):
    loaded = imported_with(*low)
    assert set(low) <= loaded
    assert reached(loaded, ABOVE + also_not) == []


def test_the_check_sees_what_a_higher_module_brings_in():
    assert {"app.tracking", "app.plugins", "app.signals", "blinker"} <= set(
        reached(imported_with("app.tracking"), ABOVE)
    )
