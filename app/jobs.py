"""Mass and template send jobs, tracked from the send until WeChat's finish event.

The client records a :class:`Job` for every ``msg_id`` WeChat accepts; the
callback's MASSSENDJOBFINISH and TEMPLATESENDJOBFINISH events complete it.  A
finish event can arrive before the send's record is written (WeChat is fast and
the send's answer slow), so both sides write with an upsert and neither
overwrites what only the other knows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .messages import MassSendJobFinishEvent, TemplateSendJobFinishEvent
from .signals import mass_send_finished, template_send_finished

SUBMITTED, SUCCEEDED, FAILED = "submitted", "succeeded", "failed"
STATUSES = (SUBMITTED, SUCCEEDED, FAILED)

MASS, TEMPLATE = "mass", "template"


@dataclass(frozen=True)
class Job:
    msg_id: str
    kind: str  # "mass" or "template"
    target: str = ""  # "tag:2", "all", "openids:1200", "openid:oXYZ"
    created_at: float = field(default_factory=time.time)
    status: str = SUBMITTED
    finish_status: str | None = None  # WeChat's own words, e.g. "send success", "failed:user block"
    counts: dict[str, int] = field(default_factory=dict)  # total, filter, sent, error
    detail: dict[str, Any] = field(default_factory=dict)  # what was sent; copyright results
    finished_at: float | None = None


def status_of(finish_status: str | None) -> str:
    """``succeeded`` for WeChat's ``send success`` / ``success``; ``failed`` otherwise."""
    if finish_status is None:
        return SUBMITTED
    return SUCCEEDED if finish_status.strip().lower() in ("send success", "success") else FAILED


def finish_from_event(event: MassSendJobFinishEvent | TemplateSendJobFinishEvent) -> Job | None:
    """The job update a finish event carries, or ``None`` if it names no msg_id."""
    if event.msg_id is None:
        return None
    if isinstance(event, MassSendJobFinishEvent):
        counts = {
            name: value
            for name, value in (
                ("total", event.total_count),
                ("filter", event.filter_count),
                ("sent", event.sent_count),
                ("error", event.error_count),
            )
            if value is not None
        }
        detail: dict[str, Any] = {}
        if event.copyright_check_results or event.copyright_check_state is not None:
            detail["copyright_check_state"] = event.copyright_check_state
            detail["copyright_check_results"] = [vars_of(item) for item in event.copyright_check_results]
        if event.article_url_results:
            detail["article_url_results"] = [vars_of(item) for item in event.article_url_results]
        kind = MASS
    else:
        counts, detail, kind = {}, {}, TEMPLATE
    return Job(
        msg_id=str(event.msg_id),
        kind=kind,
        created_at=float(event.create_time),
        status=status_of(event.status),
        finish_status=event.status,
        counts=counts,
        detail=detail,
        finished_at=time.time(),
    )


def vars_of(item: object) -> dict[str, Any]:
    return {name: getattr(item, name) for name in item.__slots__}  # type: ignore[attr-defined]


# --- finish events update the job records ------------------------------------


@mass_send_finished.connect
@template_send_finished.connect
def record_finish(sender: str, event: MassSendJobFinishEvent | TemplateSendJobFinishEvent, store, **extra: Any) -> None:
    """Complete the job a finish event names (creating it if the send's record is not written yet)."""
    job = finish_from_event(event)
    if job is not None:
        store.finish_job(job)
