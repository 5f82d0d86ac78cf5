"""The outbound commands: customer-service sends, ``upload-news``, mass and template sends."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import with_appcontext

from .common import client, read_articles, read_json, reports_errors

# --- customer-service sends --------------------------------------------------


@click.group()
def send() -> None:
    """Send a customer-service message (within 48 hours of the follower's last message)."""


@send.command("text")
@click.argument("openid")
@click.argument("content")
@with_appcontext
@reports_errors
def send_text(openid: str, content: str) -> None:
    """Send CONTENT as text to OPENID."""
    client().send_text(openid, content)
    click.echo(f"sent text to {openid}")


@send.command("image")
@click.argument("openid")
@click.argument("media_id")
@with_appcontext
@reports_errors
def send_image(openid: str, media_id: str) -> None:
    """Send the image MEDIA_ID to OPENID."""
    client().send_image(openid, media_id)
    click.echo(f"sent image to {openid}")


@send.command("voice")
@click.argument("openid")
@click.argument("media_id")
@with_appcontext
@reports_errors
def send_voice(openid: str, media_id: str) -> None:
    """Send the voice MEDIA_ID to OPENID."""
    client().send_voice(openid, media_id)
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
    client().send_video(openid, media_id, thumb_media_id, title=title, description=description)
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
    client().send_music(openid, music_url, hq_music_url, thumb_media_id, title=title, description=description)
    click.echo(f"sent music to {openid}")


@send.command("news")
@click.argument("openid")
@click.argument("articles", type=click.Path(dir_okay=False))
@with_appcontext
@reports_errors
def send_news(openid: str, articles: str) -> None:
    """Send the article in ARTICLES.json (an array of title, description, url, picurl) to OPENID."""
    client().send_news(openid, read_articles(articles))
    click.echo(f"sent news to {openid}")


# --- articles and mass sends -------------------------------------------------


@click.command("upload-news")
@click.argument("articles", type=click.Path(dir_okay=False))
@with_appcontext
@reports_errors
def upload_news(articles: str) -> None:
    """Upload ARTICLES.json for a mass send (media/uploadnews); prints the media_id."""
    result = client().upload_news(read_articles(articles))
    click.echo(result["media_id"])


@click.group()
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
    api = client()
    if openids_file:
        try:
            lines = Path(openids_file).read_text(encoding="utf-8-sig").splitlines()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {openids_file}: {exc.strerror}") from None
        msg_ids = api.mass_send_to_openids(
            lines, msgtype, content, send_ignore_reprint=send_ignore_reprint, clientmsgid=clientmsgid
        )
    else:
        msg_ids = [
            api.mass_send_to_tag(
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
    client().mass_delete(msg_id, article_idx)
    click.echo(f"deleted {msg_id}")


# --- template messages -------------------------------------------------------


@click.group()
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
    click.echo(client().send_template(openid, template_id, payload, url=url))
