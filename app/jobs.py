"""Mass and template send jobs: what the store keeps about each, from the send until WeChat's finish event.

Pure data.  The client reports a :class:`Job` for every ``msg_id`` WeChat accepts
(:mod:`app.client`); the callback's MASSSENDJOBFINISH and TEMPLATESENDJOBFINISH
events complete it (:mod:`app.tracking`).  A finish event can arrive before the
send's record is written (WeChat is fast and the send's answer slow), so both
sides write with an upsert and neither overwrites what only the other knows.
A withdrawal (``message/mass/delete``) is noted beside the status, which it leaves
as it was: WeChat sends no event for it, and the send did go out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

SUBMITTED, SUCCEEDED, FAILED = "submitted", "succeeded", "failed"
STATUSES = (SUBMITTED, SUCCEEDED, FAILED)

MASS, TEMPLATE = "mass", "template"
KINDS = (MASS, TEMPLATE)


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
    deleted_at: float | None = None  # when ``mass delete`` withdrew it (its status stays as it was)
    deleted_article: int | None = None  # the article withdrawn (1-based), or None for the whole send


def status_of(finish_status: str | None) -> str:
    """``succeeded`` for WeChat's ``send success``, ``sendsuccess`` or ``success``; ``failed`` otherwise.

    The Send Message API page's own MASSSENDJOBFINISH example says ``sendsuccess``.
    """
    if finish_status is None:
        return SUBMITTED
    return SUCCEEDED if finish_status.strip().lower() in ("send success", "sendsuccess", "success") else FAILED
