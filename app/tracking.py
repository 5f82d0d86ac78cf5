"""Finish events complete the send jobs the client recorded.

``create_app`` registers :func:`receivers` for its own store, so a
MASSSENDJOBFINISH or TEMPLATESENDJOBFINISH event updates the jobs of the app that
received it, and no other app's.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from blinker import ANY

from .jobs import MASS, TEMPLATE, Job, status_of
from .messages import MassSendJobFinishEvent, TemplateSendJobFinishEvent
from .plugins import Connection
from .signals import mass_send_finished, template_send_finished

if TYPE_CHECKING:
    from .store import Store

FinishEvent = MassSendJobFinishEvent | TemplateSendJobFinishEvent


def receivers(store: Store) -> list[Connection]:
    """The receivers that write the finish events' results into ``store``."""

    def record_finish(sender: str, event: FinishEvent, **extra: Any) -> None:
        """Complete the job a finish event names (creating it if the send's record is not written yet)."""
        job = finish_from_event(event)
        if job is not None:
            store.finish_job(job)

    return [Connection(mass_send_finished, ANY, record_finish), Connection(template_send_finished, ANY, record_finish)]


def finish_from_event(event: FinishEvent) -> Job | None:
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
