"""``jobs`` and ``token``: the state of the tracked sends and of the access token."""

from __future__ import annotations

import time

import click
from flask.cli import with_appcontext

from .. import jobs
from ..state import get_state
from .common import client, iso, reports_errors

# --- jobs and token ------------------------------------------------------------


@click.command("jobs")
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
        shown = f"{job.status}  {job.finish_status}" if job.finish_status else job.status  # the word, then WeChat's
        counts = " ".join(
            f"{name}={job.counts[name]}" for name in ("total", "filter", "sent", "error") if name in job.counts
        )
        click.echo(f"{job.msg_id}\t{job.kind}\t{job.target or '-'}\t{iso(job.created_at)}\t{shown}\t{counts}".rstrip())


@click.command("token")
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
    api = client()
    if refresh:
        api.tokens.refresh(now=True, force=force)
    cached = api.tokens.cached()
    endpoint = api.settings.token_endpoint
    if cached is None:
        click.echo(f"access token: none cached (endpoint {endpoint})")
        return
    left = cached.expires_at - time.time()
    state = "fresh" if cached.fresh else "due for refresh"
    click.echo(
        f"access token: {state}, expires in {left:.0f}s at {iso(cached.expires_at)}, "
        f"fetched at {iso(cached.fetched_at)} from {endpoint}"
    )
