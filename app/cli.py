"""The operator's commands: ``flask --app wsgi wechat ...``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click
import requests
from flask.cli import with_appcontext

from . import jobs, late
from .client import WeChatClient
from .errors import PartialMassSend, WeChatError
from .messages import parse
from .state import get_state
from .store.base import ABANDONED, ANSWERED, FAILED, LATE_REPLY_FAILED, RUNNING, UNFINISHED, PushRecord
from .testing import encrypt_push, open_reply, signed_query


def _client() -> WeChatClient:
    return get_state().client


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn WeChat errors and bad input into a one-line message and a non-zero exit."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PartialMassSend as exc:
            for msg_id in exc.sent:
                click.echo(msg_id)
            raise click.ClickException(
                f"WeChat refused a later call of {exc.endpoint}: errcode {exc.errcode}, errmsg {exc.errmsg}; "
                f"the msg_ids above went out. Run the same command with --clientmsgid {exc.clientmsgid} "
                "to send the rest: WeChat drops the calls it already took."
            )
        except WeChatError as exc:
            if exc.errcode is None:  # no WeChat answer: a timeout, a dropped connection, a missing setting
                raise click.ClickException(f"{exc.endpoint} failed: {exc.errmsg}")
            raise click.ClickException(f"WeChat refused {exc.endpoint}: errcode {exc.errcode}, errmsg {exc.errmsg}")
        except (ValueError, TimeoutError) as exc:
            raise click.ClickException(str(exc))
        except click.ClickException:
            raise
        except Exception as exc:  # e.g. the store does not answer: one line, not a traceback
            raise click.ClickException(f"{type(exc).__name__}: {exc}")

    return run


def read_json(path: str, expect: type, what: str) -> Any:
    """A JSON file's content, checked to be a ``expect`` (list or dict)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))  # files saved with a BOM too
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise click.BadParameter(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, expect):
        raise click.BadParameter(f"{path} must hold {what}")
    return data


def read_articles(path: str) -> list[dict[str, Any]]:
    articles = read_json(path, list, "a JSON array of article objects")
    for index, article in enumerate(articles):
        if not isinstance(article, dict):
            raise click.BadParameter(f"{path}: article {index} is not an object")
    return articles


def iso(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


@click.group("wechat")
def wechat_cli() -> None:
    """Operate the WeChat official account: replay pushes, send messages, inspect jobs and the token."""


# --- replay -----------------------------------------------------------------


@wechat_cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--url", help="Post to this callback URL instead of the local app.")
@click.option("--encrypt", is_flag=True, help="Send in safe mode (needs WECHAT_ENCODING_AES_KEY and WECHAT_APP_ID).")
@with_appcontext
def replay(file: str, url: str | None, encrypt: bool) -> None:
    """Sign (and encrypt) a recorded push, post it as WeChat would, and print the reply."""
    state = get_state()
    xml = Path(file).read_bytes()
    token = state.settings.token
    query = signed_query(token)
    body = xml
    if encrypt:
        if state.envelope is None:
            raise click.ClickException("--encrypt needs WECHAT_ENCODING_AES_KEY and WECHAT_APP_ID")
        body, query = encrypt_push(xml, token, state.envelope, query)
    if url:
        try:
            response = requests.post(url, params=query, data=body, headers={"Content-Type": "text/xml"}, timeout=10)
        except requests.RequestException as exc:
            raise click.ClickException(f"cannot reach {url}: {exc}") from None
        status, raw = response.status_code, response.content
    else:
        from flask import current_app

        response = current_app.test_client().post(
            f"{state.settings.callback_path}?{urlencode(query)}", data=body, content_type="text/xml"
        )
        status, raw = response.status_code, response.get_data()
    if status != 200:
        raise click.ClickException(f"callback answered {status}: {raw.decode(errors='replace').strip()}")
    try:
        reply = open_reply(raw, token, state.envelope) if encrypt else raw
    except Exception as exc:
        raise click.ClickException(f"reply does not decrypt: {exc}") from None
    click.echo(reply.decode("utf-8", errors="replace"))


# --- customer-service sends --------------------------------------------------


@wechat_cli.group()
def send() -> None:
    """Send a customer-service message (within 48 hours of the follower's last message)."""


@send.command("text")
@click.argument("openid")
@click.argument("content")
@with_appcontext
@reports_errors
def send_text(openid: str, content: str) -> None:
    """Send CONTENT as text to OPENID."""
    _client().send_text(openid, content)
    click.echo(f"sent text to {openid}")


@send.command("image")
@click.argument("openid")
@click.argument("media_id")
@with_appcontext
@reports_errors
def send_image(openid: str, media_id: str) -> None:
    """Send the image MEDIA_ID to OPENID."""
    _client().send_image(openid, media_id)
    click.echo(f"sent image to {openid}")


@send.command("voice")
@click.argument("openid")
@click.argument("media_id")
@with_appcontext
@reports_errors
def send_voice(openid: str, media_id: str) -> None:
    """Send the voice MEDIA_ID to OPENID."""
    _client().send_voice(openid, media_id)
    click.echo(f"sent voice to {openid}")


@send.command("video")
@click.argument("openid")
@click.argument("media_id")
@click.argument("thumb_media_id")
@click.option("--title")
@click.option("--description")
@with_appcontext
@reports_errors
def send_video(openid: str, media_id: str, thumb_media_id: str, title: str | None, description: str | None) -> None:
    """Send the video MEDIA_ID with its THUMB_MEDIA_ID to OPENID."""
    _client().send_video(openid, media_id, thumb_media_id, title=title, description=description)
    click.echo(f"sent video to {openid}")


@send.command("music")
@click.argument("openid")
@click.argument("music_url")
@click.argument("hq_music_url")
@click.argument("thumb_media_id")
@click.option("--title")
@click.option("--description")
@with_appcontext
@reports_errors
def send_music(
    openid: str, music_url: str, hq_music_url: str, thumb_media_id: str, title: str | None, description: str | None
) -> None:
    """Send a music message to OPENID."""
    _client().send_music(openid, music_url, hq_music_url, thumb_media_id, title=title, description=description)
    click.echo(f"sent music to {openid}")


@send.command("news")
@click.argument("openid")
@click.argument("articles", type=click.Path(dir_okay=False))
@with_appcontext
@reports_errors
def send_news(openid: str, articles: str) -> None:
    """Send the article in ARTICLES.json (an array of title, description, url, picurl) to OPENID."""
    _client().send_news(openid, read_articles(articles))
    click.echo(f"sent news to {openid}")


# --- articles and mass sends -------------------------------------------------


@wechat_cli.command("upload-news")
@click.argument("articles", type=click.Path(dir_okay=False))
@with_appcontext
@reports_errors
def upload_news(articles: str) -> None:
    """Upload ARTICLES.json for a mass send (media/uploadnews); prints the media_id."""
    result = _client().upload_news(read_articles(articles))
    click.echo(result["media_id"])


@wechat_cli.group()
def mass() -> None:
    """Mass sends: by tag, to all followers, or to a list of openids."""


@mass.command("send")
@click.option("--tag", "tag_id", type=int, help="Send to the followers with this tag id.")
@click.option("--all", "to_all", is_flag=True, help="Send to every follower.")
@click.option(
    "--openids", "openids_file", type=click.Path(dir_okay=False), help="Send to the openids in FILE, one a line."
)
@click.option("--text", help="Text content.")
@click.option("--mpnews", help="media_id from upload-news.")
@click.option("--image", help="Image media_id.")
@click.option("--voice", help="Voice media_id.")
@click.option("--mpvideo", help="Video media_id.")
@click.option("--send-ignore-reprint", is_flag=True, help="Send even if an article is judged a reprint.")
@click.option("--clientmsgid", help="Your id for this send; WeChat drops a repeat with the same id.")
@with_appcontext
@reports_errors
def mass_send(
    tag_id: int | None,
    to_all: bool,
    openids_file: str | None,
    send_ignore_reprint: bool,
    clientmsgid: str | None,
    **contents: str | None,
) -> None:
    """Mass send; prints the msg_id (one per call for a long openid list)."""
    targets = [
        name for name, given in (("--tag", tag_id is not None), ("--all", to_all), ("--openids", openids_file)) if given
    ]
    if len(targets) != 1:
        raise click.UsageError("give exactly one of --tag ID, --all, --openids FILE")
    chosen = [(msgtype, value) for msgtype, value in contents.items() if value is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --text, --mpnews, --image, --voice, --mpvideo")
    msgtype, content = chosen[0]
    client = _client()
    if openids_file:
        try:
            lines = Path(openids_file).read_text(encoding="utf-8-sig").splitlines()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {openids_file}: {exc.strerror}") from None
        msg_ids = client.mass_send_to_openids(
            lines, msgtype, content, send_ignore_reprint=send_ignore_reprint, clientmsgid=clientmsgid
        )
    else:
        msg_ids = [
            client.mass_send_to_tag(
                msgtype, content, tag_id, send_ignore_reprint=send_ignore_reprint, clientmsgid=clientmsgid
            )
        ]
    for msg_id in msg_ids:
        click.echo(msg_id)


@mass.command("delete")
@click.argument("msg_id", type=int)
@click.option("--article-idx", type=int, help="Delete only this article (1-based).")
@with_appcontext
@reports_errors
def mass_delete(msg_id: int, article_idx: int | None) -> None:
    """Withdraw the mass send MSG_ID."""
    _client().mass_delete(msg_id, article_idx)
    click.echo(f"deleted {msg_id}")


# --- template messages -------------------------------------------------------


@wechat_cli.group()
def template() -> None:
    """Template messages."""


@template.command("send")
@click.argument("openid")
@click.argument("template_id")
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--url", help="Page opened when the follower taps the message.")
@with_appcontext
@reports_errors
def template_send(openid: str, template_id: str, data: str, url: str | None) -> None:
    """Send template TEMPLATE_ID to OPENID with DATA.json; prints the msgid."""
    payload = read_json(data, dict, 'the template data object, e.g. {"first": {"value": "..."}}')
    click.echo(_client().send_template(openid, template_id, payload, url=url))


# --- the push journal ---------------------------------------------------------

PUSH_STATUSES = (FAILED, ABANDONED, UNFINISHED, LATE_REPLY_FAILED, ANSWERED, RUNNING)


@wechat_cli.group()
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
                late.send(_client(), push.from_user, handled.reply)
            except TypeError as exc:
                raise click.ClickException(f"nothing sent: {exc}") from None
            click.echo(f"sent the {handled.reply.msg_type} reply to {push.from_user}")
    if handled.status == FAILED:
        raise click.ClickException(f"a handler failed on the re-run of {key} (see the log)")


# --- jobs and token ------------------------------------------------------------


@wechat_cli.command("jobs")
@click.option("--status", type=click.Choice(jobs.STATUSES), help="Only jobs with this status.")
@click.option("--limit", type=int, default=100, show_default=True)
@with_appcontext
@reports_errors
def list_jobs(status: str | None, limit: int) -> None:
    """The tracked mass and template sends and their finish results."""
    rows = get_state().store.list_jobs(status, limit)
    if not rows:
        click.echo("no jobs" + (f" with status {status}" if status else ""))
        return
    for job in rows:
        shown = job.finish_status if job.status == jobs.FAILED and job.finish_status else job.status
        counts = " ".join(
            f"{name}={job.counts[name]}" for name in ("total", "filter", "sent", "error") if name in job.counts
        )
        click.echo(f"{job.msg_id}\t{job.kind}\t{job.target or '-'}\t{iso(job.created_at)}\t{shown}\t{counts}".rstrip())


@wechat_cli.command("token")
@click.option("--refresh", is_flag=True, help="Ask WeChat for the access token now.")
@click.option(
    "--force",
    is_flag=True,
    help="With --refresh: force_refresh, which revokes the token every other server of this appid "
    "holds (WeChat allows a few a day).",
)
@with_appcontext
@reports_errors
def token(refresh: bool, force: bool) -> None:
    """The access token's state (never the token itself)."""
    client = _client()
    if refresh:
        client.tokens.refresh(now=True, force=force)
    cached = client.tokens.cached()
    endpoint = client.settings.token_endpoint
    if cached is None:
        click.echo(f"access token: none cached (endpoint {endpoint})")
        return
    left = cached.expires_at - time.time()
    state = "fresh" if cached.fresh else "due for refresh"
    click.echo(
        f"access token: {state}, expires in {left:.0f}s at {iso(cached.expires_at)}, "
        f"fetched at {iso(cached.fetched_at)} from {endpoint}"
    )
