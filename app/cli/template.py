"""``template``: template messages."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .common import client, read_json, reports_errors


@click.group()
def template() -> None:
    """Template messages."""


@template.command("send")
@click.argument("openid")
@click.argument("template_id")
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--url", help="Page opened when the follower taps the message.")
@click.option("--miniprogram", "appid", metavar="APPID", help="Mini program opened on a tap (before --url).")
@click.option("--pagepath", help="With --miniprogram: the page it opens.")
@click.option("--topcolor", help="Colour of the message's top bar, e.g. #FF0000.")
@click.option("--client-msg-id", help="Your id for this send; WeChat drops a repeat with the same id.")
@with_appcontext
@reports_errors
def template_send(
    openid: str,
    template_id: str,
    data: str,
    url: str | None,
    appid: str | None,
    pagepath: str | None,
    topcolor: str | None,
    client_msg_id: str | None,
) -> None:
    """Send template TEMPLATE_ID to OPENID with DATA.json; prints the msgid."""
    if pagepath is not None and appid is None:
        raise click.UsageError("--pagepath goes with --miniprogram APPID")
    payload = read_json(data, dict, 'the template data object, e.g. {"first": {"value": "..."}}')
    miniprogram = None if appid is None else {"appid": appid, **({"pagepath": pagepath} if pagepath else {})}
    msgid = client().send_template(
        openid, template_id, payload, url=url, miniprogram=miniprogram, client_msg_id=client_msg_id, topcolor=topcolor
    )
    click.echo(msgid)
