"""The operator's commands: ``flask --app wsgi wechat ...``, one module per group.

The group is registered under the ``flask.commands`` entry point as well as by
``create_app``, so ``flask wechat --help`` (and any subcommand's ``--help``) works
before any setting is made: a command loads the app, and so its settings, only
when it runs.
"""

from __future__ import annotations

import click

from .journal import pushes
from .mass import mass, upload_news, upload_video
from .replay import replay
from .sends import send
from .status import list_jobs, show_job, token
from .template import template


@click.group("wechat")
def wechat_cli() -> None:
    """Operate the WeChat official account: replay pushes, send messages, inspect jobs, pushes and the token."""


for command in (replay, send, upload_news, upload_video, mass, template, pushes, list_jobs, show_job, token):
    wechat_cli.add_command(command)
