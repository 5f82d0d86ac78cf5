"""What the operator's commands share: the client, one-line errors, reading files, dates, progress bars."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any

import click

from ..client import WeChatClient
from ..errors import PartialMassSend, WeChatError
from ..state import get_state


def client() -> WeChatClient:
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


def progress_bar(stack: contextlib.ExitStack, label: str, at_least: int) -> Callable[[int, int], None] | None:
    """A ``progress(done, total)`` callback drawing click's progress bar on a terminal's stderr.

    The bar appears at the first call whose ``total`` is ``at_least`` or more, and ends
    when ``stack`` closes.  Off a terminal there is none: stdout and stderr stay as they
    were, for scripts.
    """
    stream = sys.stderr
    if not stream.isatty():
        return None
    bars: list[Any] = []

    def progress(done: int, total: int) -> None:
        if total < at_least:
            return
        if not bars:
            bar = click.progressbar(length=total, label=label, file=stream, show_pos=True, show_eta=True)
            bars.append(stack.enter_context(bar))
        bars[0].update(done - bars[0].pos)

    return progress
