"""``pushes``: the journal of received pushes, listed, shown, and run again."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .. import late
from ..messages import parse
from ..state import get_state
from ..store.base import HANDLER_FAILED, PUSH_STATUSES, PushRecord
from .common import client, iso, reports_errors

# --- the push journal ---------------------------------------------------------


@click.group()
def pushes() -> None:
    """The journal of the pushes received within WECHAT_DEDUP_TTL: list, show, run again."""


def _journalled(key: str) -> PushRecord:
    record = get_state().store.get_push(key, with_body=True)
    if record is None:
        raise click.ClickException(f"no push {key} in the journal (never received, or older than WECHAT_DEDUP_TTL)")
    return record


def _text(xml: bytes | None) -> str:
    return "-" if xml is None else xml.decode("utf-8", errors="replace")


@pushes.command("list")
@click.option("--status", type=click.Choice(PUSH_STATUSES), help="Only pushes with this status.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@with_appcontext
@reports_errors
def list_pushes(status: str | None, limit: int) -> None:
    """The journalled pushes, newest first."""
    records = get_state().store.list_pushes(status, limit)
    if not records:
        click.echo("no pushes" + (f" with status {status}" if status else ""))
        return
    rows = [("KEY", "KIND", "STATUS", "RECEIVED", "DELIVERIES", "ATTEMPTS", "LATE")]
    for record in records:
        rows.append(
            (
                record.key,
                record.kind,
                record.status,
                iso(record.received_at),
                str(record.deliveries),
                str(record.attempts),
                record.late or "",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@pushes.command("show")
@click.argument("key")
@with_appcontext
@reports_errors
def show_push(key: str) -> None:
    """Every field of the push KEY, its XML and the reply it got."""
    record = _journalled(key)
    click.echo(f"key:         {record.key}")
    click.echo(f"kind:        {record.kind}")
    click.echo(f"status:      {record.status}")
    click.echo(f"received:    {iso(record.received_at)}")
    click.echo(f"deliveries:  {record.deliveries}")
    click.echo(f"attempts:    {record.attempts}")
    click.echo(f"lease until: {iso(record.lease_until) if record.lease_until else '-'}")
    click.echo(f"late:        {record.late or '-'}")
    click.echo("body:")
    click.echo(_text(record.body))
    click.echo("reply:")
    click.echo(_text(record.reply))


@pushes.command("rerun")
@click.argument("key")
@click.option("--send", "deliver", is_flag=True, help="Send the reply to the follower (customer-service API).")
@with_appcontext
@reports_errors
def rerun_push(key: str, deliver: bool) -> None:
    """Run the handlers of the push KEY again and print their reply.

    The re-run is not deduplicated and leaves the journal as it is.  Its reply goes to
    the follower only with --send (within 48 hours of their last message).
    """
    record = _journalled(key)
    if record.body is None:
        raise click.ClickException(f"push {key} has no body in the journal, so it cannot run again")
    try:
        push = parse(record.body)
    except ValueError as exc:
        raise click.ClickException(f"the journalled body of {key} is not a push: {exc}") from None
    handled = get_state().pipeline.run_handlers(push)
    click.echo(_text(handled.reply_xml) if handled.reply_xml is not None else "success")
    if deliver:
        if handled.reply is None:
            click.echo("nothing sent: the handlers gave no reply")
        else:
            try:
                late.send(client(), push.from_user, handled.reply)
            except TypeError as exc:
                raise click.ClickException(f"nothing sent: {exc}") from None
            click.echo(f"sent the {handled.reply.msg_type} reply to {push.from_user}")
    if handled.status == HANDLER_FAILED:
        raise click.ClickException(f"a handler failed on the re-run of {key} (see the log)")
