"""``send``: customer-service messages, within 48 hours of the follower's last message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from flask.cli import with_appcontext

from .common import client, read_articles, reports_errors


@click.group()
def send() -> None:
    """Send a customer-service message (within 48 hours of the follower's last message).

    Each takes --kf-account: the customer-service account shown as the sender.
    """


def send_command(name: str) -> Callable[[Callable[..., Any]], click.Command]:
    """``send NAME``, with ``--kf-account``, in the app's context, reporting errors in one line."""

    def decorate(function: Callable[..., Any]) -> click.Command:
        function = reports_errors(function)
        function = with_appcontext(function)
        function = click.option(
            "--kf-account", help="Send as this customer-service account (customservice.kf_account), e.g. a@account."
        )(function)
        return send.command(name)(function)

    return decorate


def sent(what: str, openid: str, kf_account: str | None) -> None:
    click.echo(f"sent {what} to {openid}" + (f" as {kf_account}" if kf_account else ""))


@send_command("text")
@click.argument("openid")
@click.argument("content")
def send_text(openid: str, content: str, kf_account: str | None) -> None:
    """Send CONTENT as text to OPENID."""
    client().send_text(openid, content, kf_account=kf_account)
    sent("text", openid, kf_account)


@send_command("image")
@click.argument("openid")
@click.argument("media_id")
def send_image(openid: str, media_id: str, kf_account: str | None) -> None:
    """Send the image MEDIA_ID to OPENID."""
    client().send_image(openid, media_id, kf_account=kf_account)
    sent("image", openid, kf_account)


@send_command("voice")
@click.argument("openid")
@click.argument("media_id")
def send_voice(openid: str, media_id: str, kf_account: str | None) -> None:
    """Send the voice MEDIA_ID to OPENID."""
    client().send_voice(openid, media_id, kf_account=kf_account)
    sent("voice", openid, kf_account)


@send_command("video")
@click.argument("openid")
@click.argument("media_id")
@click.argument("thumb_media_id")
@click.option("--title")
@click.option("--description")
def send_video(
    openid: str, media_id: str, thumb_media_id: str, title: str | None, description: str | None, kf_account: str | None
) -> None:
    """Send the video MEDIA_ID with its THUMB_MEDIA_ID to OPENID."""
    client().send_video(openid, media_id, thumb_media_id, title=title, description=description, kf_account=kf_account)
    sent("video", openid, kf_account)


@send_command("music")
@click.argument("openid")
@click.argument("music_url")
@click.argument("hq_music_url")
@click.argument("thumb_media_id")
@click.option("--title")
@click.option("--description")
def send_music(
    openid: str,
    music_url: str,
    hq_music_url: str,
    thumb_media_id: str,
    title: str | None,
    description: str | None,
    kf_account: str | None,
) -> None:
    """Send a music message to OPENID."""
    client().send_music(
        openid, music_url, hq_music_url, thumb_media_id, title=title, description=description, kf_account=kf_account
    )
    sent("music", openid, kf_account)


@send_command("news")
@click.argument("openid")
@click.argument("articles", type=click.Path(dir_okay=False))
def send_news(openid: str, articles: str, kf_account: str | None) -> None:
    """Send the article in ARTICLES.json to OPENID.

    ARTICLES.json is an array of one object with title, description, url, picurl (each optional).
    """
    client().send_news(openid, read_articles(articles), kf_account=kf_account)
    sent("news", openid, kf_account)


@send_command("mpnews")
@click.argument("openid")
@click.argument("media_id")
def send_mpnews(openid: str, media_id: str, kf_account: str | None) -> None:
    """Send the articles MEDIA_ID (from upload-news or the material library) to OPENID."""
    client().send_mpnews(openid, media_id, kf_account=kf_account)
    sent("mpnews", openid, kf_account)


@send_command("mpnewsarticle")
@click.argument("openid")
@click.argument("article_id")
def send_mpnewsarticle(openid: str, article_id: str, kf_account: str | None) -> None:
    """Send the published article ARTICLE_ID to OPENID."""
    client().send_mpnewsarticle(openid, article_id, kf_account=kf_account)
    sent("mpnewsarticle", openid, kf_account)


@send_command("msgmenu")
@click.argument("openid")
@click.option(
    "--item", "items", nargs=2, multiple=True, required=True, metavar="ID CONTENT", help="A menu item; repeat it."
)
@click.option("--head", "head_content", help="Text above the items.")
@click.option("--tail", "tail_content", help="Text below the items.")
def send_msgmenu(
    openid: str,
    items: tuple[tuple[str, str], ...],
    head_content: str | None,
    tail_content: str | None,
    kf_account: str | None,
) -> None:
    """Send a menu to OPENID; a tap on an item sends its ID back as a text push (bizmsgmenuid)."""
    client().send_msgmenu(openid, list(items), head_content, tail_content, kf_account=kf_account)
    sent("msgmenu", openid, kf_account)


@send_command("wxcard")
@click.argument("openid")
@click.argument("card_id")
def send_wxcard(openid: str, card_id: str, kf_account: str | None) -> None:
    """Send the card or coupon CARD_ID to OPENID."""
    client().send_wxcard(openid, card_id, kf_account=kf_account)
    sent("wxcard", openid, kf_account)


@send_command("miniprogrampage")
@click.argument("openid")
@click.argument("appid")
@click.argument("pagepath")
@click.argument("thumb_media_id")
@click.option("--title")
def send_miniprogrampage(
    openid: str, appid: str, pagepath: str, thumb_media_id: str, title: str | None, kf_account: str | None
) -> None:
    """Send a card of the mini program APPID opening PAGEPATH, with the image THUMB_MEDIA_ID, to OPENID."""
    client().send_miniprogrampage(openid, appid, pagepath, thumb_media_id, title=title, kf_account=kf_account)
    sent("miniprogrampage", openid, kf_account)


@send_command("link")
@click.argument("openid")
@click.argument("title")
@click.argument("url")
@click.argument("thumb_url")
@click.option("--description")
def send_link(
    openid: str, title: str, url: str, thumb_url: str, description: str | None, kf_account: str | None
) -> None:
    """Send a link card (TITLE, URL, the image at THUMB_URL) to OPENID."""
    client().send_link(openid, title, url, thumb_url, description=description, kf_account=kf_account)
    sent("link", openid, kf_account)


@send.command("typing")
@click.argument("openid")
@click.option("--cancel", is_flag=True, help="Stop showing it.")
@with_appcontext
@reports_errors
def send_typing(openid: str, cancel: bool) -> None:
    """Show OPENID "typing…" (for up to 15 s), or stop with --cancel."""
    client().send_typing(openid, typing=not cancel)
    click.echo(f"{'cancelled' if cancel else 'sent'} typing to {openid}")
