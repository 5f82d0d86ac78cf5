"""The WSGI entry point: ``gunicorn wsgi:app`` or ``flask --app wsgi ...``.

A bad setting stops gunicorn with one line naming the variable.  Under the ``flask``
command the same line is Flask's own error for an app that cannot load, so
``flask --app wsgi --help`` still lists the commands (each ``--help`` works without
settings; a command that runs needs them).
"""

import sys

import click

from app import SettingsError, create_app

try:
    app = create_app()
except SettingsError as exc:
    if click.get_current_context(silent=True) is not None:  # imported by the flask command line
        from flask.cli import NoAppException

        raise NoAppException(f"wechat-callback: {exc}") from None
    sys.exit(f"wechat-callback: {exc}")
