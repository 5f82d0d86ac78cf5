"""``upload-news``, ``upload-video`` and ``mass``: what a mass send needs, the send, its preview,
withdrawal and status, and the account's mass-send speed."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext

from .. import jobs
from ..client.mass import MASS_OPENIDS_MAX
from ..state import get_state
from .common import client, progress_bar, read_articles, reports_errors

CONTENTS = ("--text", "--mpnews", "--image", "--voice", "--mpvideo", "--wxcard")


@click.command("upload-news")
@click.argument("articles", type=click.Path(dir_okay=False))
@with_appcontext
@reports_errors
def upload_news(articles: str) -> None:
    """Upload ARTICLES.json for a mass send (media/uploadnews); prints the media_id."""
    result = client().upload_news(read_articles(articles))
    click.echo(result["media_id"])


@click.command("upload-video")
@click.argument("media_id")
@click.option("--title", help="The title followers see.")
@click.option("--description", help="The description followers see.")
@with_appcontext
@reports_errors
def upload_video(media_id: str, title: str | None, description: str | None) -> None:
    """Make the uploaded video MEDIA_ID ready for a mass send (media/uploadvideo); prints the media_id for --mpvideo."""
    click.echo(client().upload_video(media_id, title=title, description=description)["media_id"])


@click.group()
def mass() -> None:
    """Mass sends: by tag, to all followers, or to a list of openids; preview, withdraw, status, speed."""


def content_options(function: Any) -> Any:
    """The options that choose what a mass send or preview carries."""
    for option in reversed(
        [
            click.option("--text", help="Text content."),
            click.option("--mpnews", help="media_id from upload-news."),
            click.option("--image", help="Image media_id."),
            click.option("--voice", help="Voice media_id."),
            click.option("--mpvideo", help="Video media_id from upload-video."),
            click.option("--wxcard", help="Card or coupon card_id."),
            click.option("--title", help="With --mpvideo: the video's title."),
            click.option("--description", help="With --mpvideo: the video's description."),
        ]
    ):
        function = option(function)
    return function


def chosen_content(contents: dict[str, str | None]) -> tuple[str, str]:
    chosen = [(msgtype, value) for msgtype, value in contents.items() if value is not None]
    if len(chosen) != 1:
        raise click.UsageError(f"give exactly one of {', '.join(CONTENTS)}")
    return chosen[0]


def video_text(msgtype: str, title: str | None, description: str | None) -> dict[str, str | None]:
    if (title is not None or description is not None) and msgtype != "mpvideo":
        raise click.UsageError("--title and --description go only with --mpvideo")
    return {"title": title, "description": description}


@mass.command("send")
@click.option("--tag", "tag_id", type=int, help="Send to the followers with this tag id.")
@click.option(
    "--group",
    "group_id",
    type=int,
    help="The API page's filter.group_id: user groups became tags, so this is sent as the tag id.",
)
@click.option("--all", "to_all", is_flag=True, help="Send to every follower.")
@click.option(
    "--openids", "openids_file", type=click.Path(dir_okay=False), help="Send to the openids in FILE, one a line."
)
@content_options
@click.option("--send-ignore-reprint", is_flag=True, help="Send even if an article is judged a reprint.")
@click.option("--clientmsgid", help="Your id for this send; WeChat drops a repeat with the same id.")
@with_appcontext
@reports_errors
def mass_send(
    tag_id: int | None,
    group_id: int | None,
    to_all: bool,
    openids_file: str | None,
    title: str | None,
    description: str | None,
    send_ignore_reprint: bool,
    clientmsgid: str | None,
    **contents: str | None,
) -> None:
    """Mass send; prints the msg_id (one per call for a long openid list).

    A list of more than 10,000 openids goes out in several calls, with a progress bar on a terminal.
    """
    given = (("--tag", tag_id), ("--group", group_id), ("--all", to_all or None), ("--openids", openids_file))
    targets = [name for name, value in given if value is not None]
    if len(targets) != 1:
        raise click.UsageError("give exactly one of --tag ID, --all, --openids FILE")
    msgtype, content = chosen_content(contents)
    options = {"send_ignore_reprint": send_ignore_reprint, "clientmsgid": clientmsgid}
    options.update(video_text(msgtype, title, description))
    api = client()
    if openids_file:
        try:
            lines = Path(openids_file).read_text(encoding="utf-8-sig").splitlines()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {openids_file}: {exc.strerror}") from None
        with contextlib.ExitStack() as stack:
            progress = progress_bar(stack, "mass send", at_least=MASS_OPENIDS_MAX + 1)
            msg_ids = api.mass_send_to_openids(lines, msgtype, content, progress=progress, **options)
    else:
        msg_ids = [api.mass_send_to_tag(msgtype, content, tag_id if group_id is None else group_id, **options)]
    for msg_id in msg_ids:
        click.echo(msg_id)


@mass.command("preview")
@click.option("--openid", help="Preview to this follower.")
@click.option("--wxname", help="Preview to this WeChat ID (towxname).")
@content_options
@with_appcontext
@reports_errors
def mass_preview(
    openid: str | None, wxname: str | None, title: str | None, description: str | None, **contents: str | None
) -> None:
    """Send one follower a mass message as followers would see it (message/mass/preview); not a mass send."""
    if (openid is None) == (wxname is None):
        raise click.UsageError("give exactly one of --openid OPENID, --wxname NAME")
    msgtype, content = chosen_content(contents)
    msg_id = client().mass_preview(
        msgtype, content, openid=openid, wxname=wxname, **video_text(msgtype, title, description)
    )
    click.echo(f"previewed {msgtype} to {openid or wxname}" + (f" (msg_id {msg_id})" if msg_id is not None else ""))


@mass.command("delete")
@click.argument("msg_id", type=int)
@click.option("--article-idx", type=click.IntRange(min=1), help="Delete only this article (1-based).")
@with_appcontext
@reports_errors
def mass_delete(msg_id: int, article_idx: int | None) -> None:
    """Withdraw the mass send MSG_ID; `jobs` then shows `deleted <time>` beside its status."""
    client().mass_delete(msg_id, article_idx)
    tracked = get_state().store.mark_job_deleted(jobs.MASS, str(msg_id), time.time(), article_idx)
    click.echo(f"deleted {msg_id}" + ("" if tracked else " (no tracked job of it to mark)"))


@mass.command("status")
@click.argument("msg_id", type=int)
@with_appcontext
@reports_errors
def mass_status(msg_id: int) -> None:
    """WeChat's status of the mass send MSG_ID (message/mass/get), e.g. SEND_SUCCESS."""
    click.echo(client().mass_status(msg_id))


@mass.command("speed")
@click.option("--set", "speed", type=click.IntRange(0, 4), help="Set it: 0 (fastest) to 4 (slowest).")
@with_appcontext
@reports_errors
def mass_speed(speed: int | None) -> None:
    """The account's mass-send speed (message/mass/speed/get), or set it."""
    api = client()
    if speed is not None:
        api.set_mass_speed(speed)
    current = api.mass_speed()
    real = current["realspeed"]
    click.echo(f"speed {current['speed']}" + ("" if real is None else f" ({int(real) * 10_000:,} followers a minute)"))
