"""The WSGI entry point: ``gunicorn wsgi:app`` or ``flask --app wsgi ...``."""

import sys

from app import SettingsError, create_app

try:
    app = create_app()
except SettingsError as exc:
    sys.exit(f"wechat-callback: {exc}")
