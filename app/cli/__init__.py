"""The operator's commands: ``flask --app wsgi wechat ...``, one module per group."""

from __future__ import annotations

import click

from .journal import pushes
from .replay import replay
from .sends import mass, send, template, upload_news
from .status import list_jobs, token


@click.group("wechat")
def wechat_cli() -> None:
    """Operate the WeChat official account: replay pushes, send messages, inspect jobs, pushes and the token."""


for command in (replay, send, upload_news, mass, template, pushes, list_jobs, token):
    wechat_cli.add_command(command)
