"""``jobs``, ``job`` and ``token``: the state of the tracked sends and of the access token."""

from __future__ import annotations

import json
import time

import click
from flask.cli import with_appcontext

from .. import jobs
from ..state import get_state
from .common import client, iso, reports_errors

JOBS_HEADER = ("MSG_ID", "KIND", "TARGET", "CREATED", "STATUS", "COUNTS")
COUNT_NAMES = ("total", "filter", "sent", "error")


def shown_status(job: jobs.Job) -> str:
    """The status word, then WeChat's own words for a finished job, then the withdrawal, if any."""
    shown = f"{job.status}  {job.finish_status}" if job.finish_status else job.status
    if job.deleted_at is not None:
        article = f"article {job.deleted_article} " if job.deleted_article else ""
        shown += f"  deleted {article}{iso(job.deleted_at)}"
    return shown


@click.command("jobs")
@click.option("--status", type=click.Choice(jobs.STATUSES), help="Only jobs with this status.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--no-header", is_flag=True, help="Leave out the header line (for scripts).")
@with_appcontext
@reports_errors
def list_jobs(status: str | None, limit: int, no_header: bool) -> None:
    """The tracked mass and template sends and their finish results, newest first, tab-separated."""
    rows = get_state().store.list_jobs(status, limit)
    if not rows:
        click.echo("no jobs" + (f" with status {status}" if status else ""))
        return
    if not no_header:
        click.echo("\t".join(JOBS_HEADER))
    for job in rows:
        counts = " ".join(f"{name}={job.counts[name]}" for name in COUNT_NAMES if name in job.counts)
        row = (job.msg_id, job.kind, job.target or "-", iso(job.created_at), shown_status(job), counts)
        click.echo("\t".join(row).rstrip())


@click.command("job")
@click.argument("msg_id")
@click.option("--kind", type=click.Choice(jobs.KINDS), help="Only the job of this kind.")
@with_appcontext
@reports_errors
def show_job(msg_id: str, kind: str | None) -> None:
    """Every field of the tracked send MSG_ID, with the finish event's copyright and article URL results."""
    store = get_state().store
    kinds = (kind,) if kind else jobs.KINDS
    found = [job for name in kinds if (job := store.get_job(name, msg_id)) is not None]
    if not found:
        raise click.ClickException(f"no tracked job {msg_id}" + (f" of kind {kind}" if kind else ""))
    for number, job in enumerate(found):
        if number:
            click.echo()
        click.echo(f"msg_id:      {job.msg_id}")
        click.echo(f"kind:        {job.kind}")
        click.echo(f"target:      {job.target or '-'}")
        click.echo(f"created:     {iso(job.created_at)}")
        click.echo(f"status:      {shown_status(job)}")
        click.echo(f"finished:    {iso(job.finished_at)}")
        click.echo(f"counts:      {' '.join(f'{name}={value}' for name, value in job.counts.items()) or '-'}")
        for name, value in sorted(job.detail.items()):
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            click.echo(f"{name}: {shown}")


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
