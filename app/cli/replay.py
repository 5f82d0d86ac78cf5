"""``replay``: post recorded pushes as WeChat would, and print the replies.

A recorded push is posted as a new one unless ``--as-retry`` is given: the server
answers a repeat of a push it has seen from its journal, without running a handler,
so replaying a file unchanged after changing a plugin would show the old reply.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import click
import requests
from flask import current_app
from flask.cli import with_appcontext
from lxml import etree

from ..settings import SAFE
from ..state import AppState, get_state
from ..testing import encrypt_push, fresh_push, open_reply, signed_query

SUMMARY_WIDTH = 80  # a MediaId is 64 characters


class ReplayFailed(Exception):
    """One push could not be replayed: the message says why, in a line; ``status`` is the callback's, if it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Poster:
    """Posts pushes, signed (and encrypted) as WeChat would, to ``url`` or to the local app."""

    state: AppState
    url: str | None
    encrypt: bool
    as_retry: bool

    def post(self, xml: bytes) -> bytes:
        """The reply to ``xml``, decrypted; :class:`ReplayFailed` for anything but a 200 with a readable reply."""
        if not self.as_retry:
            xml = fresh_push(xml)
        token = self.state.settings.signing_token
        query = signed_query(token)
        body = xml
        if self.encrypt:
            body, query = encrypt_push(xml, token, self.state.envelope, query)
        status, raw = self._send(body, query)
        if status != 200:
            raise ReplayFailed(f"callback answered {status}: {raw.decode(errors='replace').strip()}", status)
        try:
            return open_reply(raw, token, self.state.envelope) if self.encrypt else raw
        except Exception as exc:
            raise ReplayFailed(f"reply does not decrypt: {exc}", status) from None

    def _send(self, body: bytes, query: dict[str, str]) -> tuple[int, bytes]:
        if self.url:
            try:
                response = requests.post(
                    self.url, params=query, data=body, headers={"Content-Type": "text/xml"}, timeout=10
                )
            except requests.RequestException as exc:
                raise ReplayFailed(f"cannot reach {self.url}: {exc}") from None
            return response.status_code, response.content
        response = current_app.test_client().post(
            f"{self.state.settings.callback_path}?{urlencode(query)}", data=body, content_type="text/xml"
        )
        return response.status_code, response.get_data()


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=True, dir_okay=True))
@click.option("--url", help="Post to this callback URL instead of the local app.")
@click.option("--encrypt", is_flag=True, help="Send in safe mode (needs WECHAT_ENCODING_AES_KEY and WECHAT_APP_ID).")
@click.option(
    "--as-retry",
    is_flag=True,
    help="Post the push exactly as recorded, as WeChat's retry of it would be (a push the server has seen is "
    "answered from its journal). Default: as a new push, a message with a fresh MsgId, an event with a fresh "
    "CreateTime.",
)
@with_appcontext
def replay(path: str, url: str | None, encrypt: bool, as_retry: bool) -> None:
    """Sign (and encrypt) a recorded push, post it as WeChat would, and print the reply.

    PATH is a push's XML file, or a folder: then every *.xml in it is posted in name
    order, with a line per file (file, HTTP status, the reply in short) and a progress
    bar on stderr; one that fails is reported and the rest still go.

    In safe mode (WECHAT_MESSAGE_MODE=safe) the push is always encrypted, as WeChat's would be.
    """
    state = get_state()
    encrypt = encrypt or state.settings.message_mode == SAFE
    if encrypt and state.envelope is None:
        raise click.ClickException("--encrypt needs WECHAT_ENCODING_AES_KEY and WECHAT_APP_ID")
    poster = Poster(state, url, encrypt, as_retry)
    if Path(path).is_dir():
        _replay_folder(Path(path), poster)
        return
    try:
        reply = poster.post(_read(Path(path)))
    except ReplayFailed as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(reply.decode("utf-8", errors="replace"))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ReplayFailed(f"cannot read {path}: {exc.strerror}") from None


def _replay_folder(folder: Path, poster: Poster) -> None:
    files = sorted(path for path in folder.glob("*.xml") if path.is_file())
    if not files:
        raise click.ClickException(f"no *.xml file in {folder}")
    failed = 0
    width = max(len(path.name) for path in files)
    # On a terminal the bar shares the screen with the lines: clear it before each line.
    shared_terminal = sys.stdout.isatty() and sys.stderr.isatty()
    with click.progressbar(
        files, label="replaying", file=sys.stderr, show_pos=True, item_show_func=lambda path: path and path.name
    ) as bar:
        for path in bar:
            try:
                line = f"200  {summary(poster.post(_read(path)))}"
            except ReplayFailed as exc:
                failed += 1
                line = f"{exc.status or '-'}  FAILED {_short(str(exc))}"
            if shared_terminal:
                click.echo("\r\x1b[K", nl=False, err=True)
            click.echo(f"{path.name:<{width}}  {line}")
    if failed:
        raise click.ClickException(f"{failed} of {len(files)} pushes failed")


def summary(reply: bytes) -> str:
    """A reply in a few words: ``success``, or its type and what it says (``text: Hello``)."""
    if reply.strip() == b"success":
        return "success"
    try:
        root = etree.fromstring(reply, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return _short(reply.decode("utf-8", errors="replace"))
    msg_type = (root.findtext("MsgType") or "?").strip()
    said = {
        "text": root.findtext("Content"),
        "image": root.findtext("Image/MediaId"),
        "voice": root.findtext("Voice/MediaId"),
        "video": root.findtext("Video/MediaId"),
        "music": root.findtext("Music/Title"),
        "news": root.findtext("Articles/item/Title"),
    }.get(msg_type)
    if msg_type == "news":
        said = f"{root.findtext('ArticleCount') or '?'} article(s), {said or ''}".rstrip(", ")
    return _short(f"{msg_type}: {said}" if said else msg_type)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_WIDTH else text[: SUMMARY_WIDTH - 1] + "…"
