"""``replay``: post a recorded push as WeChat would, and print the reply."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import click
import requests
from flask.cli import with_appcontext

from ..settings import SAFE
from ..state import get_state
from ..testing import encrypt_push, open_reply, signed_query

# --- replay -----------------------------------------------------------------


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--url", help="Post to this callback URL instead of the local app.")
@click.option("--encrypt", is_flag=True, help="Send in safe mode (needs WECHAT_ENCODING_AES_KEY and WECHAT_APP_ID).")
@with_appcontext
def replay(file: str, url: str | None, encrypt: bool) -> None:
    """Sign (and encrypt) a recorded push, post it as WeChat would, and print the reply.

    In safe mode (WECHAT_MESSAGE_MODE=safe) the push is always encrypted, as WeChat's would be.
    """
    state = get_state()
    encrypt = encrypt or state.settings.message_mode == SAFE
    xml = Path(file).read_bytes()
    token = state.settings.signing_token
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
