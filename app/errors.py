"""Errors from WeChat's API, one class per thing a caller acts on differently."""

from __future__ import annotations


class WeChatError(Exception):
    """WeChat answered a call with a non-zero ``errcode``, or could not be reached.

    ``errcode`` is ``None`` when there was no WeChat answer at all (a timeout, a
    refused connection, an HTTP error, a body that is not JSON).
    """

    def __init__(self, errcode: int | None, errmsg: str, endpoint: str, answer: dict | None = None) -> None:
        super().__init__(f"{endpoint}: errcode={errcode} errmsg={errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.endpoint = endpoint
        self.answer = answer or {}  # WeChat's whole JSON answer, where there was one


class TransportError(WeChatError):
    """No usable answer: connection refused or dropped, timeout, HTTP error, not JSON."""


class SystemBusy(WeChatError):
    """errcode -1: WeChat asks to try again."""


class TokenInvalid(WeChatError):
    """40001, 40014, 42001: the access token is wrong or expired."""


class RateLimited(WeChatError):
    """45009 (daily quota), 45011 (per-minute quota), 45047 (customer-service message limit)."""


class OutsideServiceWindow(WeChatError):
    """45015: the follower has not written in the last 48 hours; customer-service sends are refused."""


class NotSubscribed(WeChatError):
    """43004: the openid does not follow the account."""


class InvalidOpenId(WeChatError):
    """40003: the openid is not one of this account's."""


class PartialMassSend(WeChatError):
    """A mass send split into several calls failed part-way.

    ``sent`` holds the msg_ids of the calls that went out.  Sending again with the
    same ``clientmsgid`` lets WeChat drop the calls it already took.
    """

    def __init__(self, cause: WeChatError, sent: list[int], clientmsgid: str) -> None:
        super().__init__(cause.errcode, cause.errmsg, cause.endpoint, cause.answer)
        self.cause = cause
        self.sent = sent
        self.clientmsgid = clientmsgid


ERRORS_BY_CODE: dict[int, type[WeChatError]] = {
    -1: SystemBusy,
    40001: TokenInvalid,
    40014: TokenInvalid,
    42001: TokenInvalid,
    45009: RateLimited,
    45011: RateLimited,
    45047: RateLimited,
    45015: OutsideServiceWindow,
    43004: NotSubscribed,
    40003: InvalidOpenId,
}


def error_for(errcode: int, errmsg: str, endpoint: str, answer: dict | None = None) -> WeChatError:
    return ERRORS_BY_CODE.get(errcode, WeChatError)(errcode, errmsg, endpoint, answer)
