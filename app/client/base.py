"""What every API group of the client stands on: the HTTP call, its retries and
decoding, the access token's fetch, redaction, and the checks that shape a body.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import requests
import requests.adapters

from ..access_token import TokenCache
from ..errors import SystemBusy, TokenInvalid, TransportError, WeChatError, error_for
from ..jobs import Job
from ..metrics import api_called
from ..settings import Settings

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # for system-busy answers and failed connections

_SECRET_IN_TEXT = re.compile(r"((?:access_token|secret)=)[^&\s'\"]+")


def redact(text: str) -> str:
    """``text`` with any access token or appsecret in a URL replaced by ``***``."""
    return _SECRET_IN_TEXT.sub(r"\1***", text)


class _RedactFilter(logging.Filter):
    """Masks the token in urllib3's own log lines: at DEBUG it logs every URL it requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "access_token=" in message or "secret=" in message:
            record.msg, record.args = redact(message), ()
        return True


for _name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_RedactFilter())


class ClientBase:
    """The HTTP side of :class:`app.client.WeChatClient`.

    ``token_store`` caches the access token (and nothing else); ``on_send`` is
    handed a :class:`app.jobs.Job` for every mass or template send WeChat accepts.
    """

    def __init__(
        self,
        settings: Settings,
        token_store: Store,
        session: requests.Session | None = None,
        backoff: float = 0.2,
        on_send: Callable[[Job], None] | None = None,
    ) -> None:
        self.settings = settings
        self.session = session or _new_session()
        self.backoff = backoff
        self.on_send = on_send
        # One token fetch takes at most MAX_ATTEMPTS timeouts plus the backoff between them.
        worst_fetch = MAX_ATTEMPTS * (settings.connect_timeout + settings.read_timeout) + 8 * backoff
        self.tokens = TokenCache(token_store, self._fetch_token, fetch_timeout=worst_fetch)

    # --- HTTP -------------------------------------------------------------------

    def call(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        method: str = "POST",
        idempotent: bool = False,
    ) -> dict[str, Any]:
        """Call ``/cgi-bin/<path>`` with the access token; return WeChat's JSON answer.

        A refused token is replaced and the call retried once; system-busy answers
        and failed connections are retried with backoff, ``MAX_ATTEMPTS`` in all.
        A timed-out read is retried only when ``idempotent`` (WeChat may have acted).
        """
        token = self.tokens.get()
        try:
            return self._request(method, path, body, {**(params or {}), "access_token": token}, idempotent)
        except TokenInvalid:
            log.warning("%s refused the access token; fetching a new one and retrying once", path)
            self.tokens.invalidate(token)
            token = self.tokens.refresh(failed_token=token)
            return self._request(method, path, body, {**(params or {}), "access_token": token}, idempotent)

    def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None, params: Mapping[str, Any], idempotent: bool
    ) -> dict[str, Any]:
        url = f"{self.settings.api_base_url}/cgi-bin/{path}"
        data = None if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"} if data is not None else None
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            error: WeChatError | None = None
            try:
                response = self.session.request(method, url, params=params, data=data, headers=headers, timeout=timeout)
                answer = self._decode(path, response)
            except requests.ConnectionError as exc:
                # Failed before WeChat saw the request (or, for a dropped connection, maybe not):
                # retried like a timeout, so only idempotent calls retry a dropped connection.
                error = TransportError(None, f"connection failed: {redact(str(exc))}", path)
                retry = isinstance(exc, requests.ConnectTimeout) or _never_sent(exc) or idempotent
            except requests.Timeout:
                error = TransportError(None, f"no answer within {self.settings.read_timeout}s", path)
                retry = idempotent
            except requests.RequestException as exc:  # e.g. the connection dropped halfway through the answer
                error = TransportError(None, f"request failed: {redact(str(exc))}", path)
                retry = idempotent
            except SystemBusy as exc:
                error, retry = exc, True
            except TransportError as exc:
                error, retry = exc, idempotent
            except WeChatError as exc:  # any other errcode: the caller decides
                error, retry = exc, False
            api_called.send(self, endpoint=path, errcode=0 if error is None else error.errcode)
            if error is None:
                return answer
            if not retry or attempt == MAX_ATTEMPTS:
                raise error
            delay = self.backoff * 2 ** (attempt - 1)
            delay += random.uniform(0, delay)
            log.warning(
                "%s failed (%s); attempt %d of %d in %.2fs", path, error.errmsg, attempt + 1, MAX_ATTEMPTS, delay
            )
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _decode(path: str, response: requests.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise TransportError(None, f"HTTP {response.status_code}", path)
        try:
            answer = response.json()
        except ValueError:
            raise TransportError(None, f"answer is not JSON: {response.text[:80]!r}", path) from None
        if not isinstance(answer, dict):
            raise TransportError(None, f"answer is not a JSON object: {response.text[:80]!r}", path)
        errcode = answer.get("errcode", 0)
        if errcode:
            try:
                code = int(errcode)
            except (TypeError, ValueError):
                raise TransportError(None, f"errcode is not a number: {errcode!r}", path) from None
            raise error_for(code, str(answer.get("errmsg", "")), path, answer)
        return answer

    # --- access token ---------------------------------------------------------

    def _fetch_token(self, force: bool) -> tuple[str, int]:
        settings = self.settings
        if not settings.app_id or not settings.app_secret:
            raise WeChatError(None, "WECHAT_APP_ID and WECHAT_APP_SECRET are needed for the API", "token")
        if settings.token_endpoint == "stable_token":
            body = {
                "grant_type": "client_credential",
                "appid": settings.app_id,
                "secret": settings.app_secret,
                "force_refresh": force,
            }
            answer = self._request("POST", "stable_token", body, {}, idempotent=True)
        else:
            params = {"grant_type": "client_credential", "appid": settings.app_id, "secret": settings.app_secret}
            answer = self._request("GET", "token", None, params, idempotent=True)
        try:
            return str(answer["access_token"]), int(answer["expires_in"])
        except (KeyError, ValueError, TypeError):
            raise TransportError(
                None, "token answer lacks access_token or expires_in", settings.token_endpoint
            ) from None

    # --- sends WeChat tracks as jobs ------------------------------------------

    def _report_send(self, kind: str, msg_id: str, target: str, detail: dict[str, Any]) -> None:
        """Hand the accepted send's job to ``on_send``."""
        if self.on_send is None:
            return
        try:
            self.on_send(Job(msg_id=msg_id, kind=kind, target=target, detail=drop_none(detail)))
        except Exception:  # the send went out; losing its record must not look like a failed send
            log.exception("could not record %s job %s", kind, msg_id)


# --- answers and request bodies ------------------------------------------------------


def answer_field(answer: dict[str, Any], name: str, path: str) -> Any:
    """A field WeChat's success answer must carry; its absence is a TransportError, not a KeyError."""
    if answer.get(name) is None:
        raise TransportError(None, f"answer lacks {name}", path)
    return answer[name]


def pick(item: Mapping[str, Any], fields: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
    """``item``'s ``fields`` that are set, checked: ``required`` ones present, no unknown ones."""
    if not isinstance(item, Mapping):
        raise ValueError(f"expected an object with {', '.join(fields)}, got {type(item).__name__}")
    for name in required:
        if item.get(name) in (None, ""):
            raise ValueError(f"field {name!r} is required")
    unknown = set(item) - set(fields)
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)[0]!r}; expected {', '.join(fields)}")
    return {name: item[name] for name in fields if item.get(name) is not None}


def pick_articles(
    articles: Sequence[Mapping[str, Any]], fields: Sequence[str], required: Sequence[str]
) -> list[dict[str, Any]]:
    """Each article checked by :func:`pick`; an error names the article (1-based)."""
    checked = []
    for number, article in enumerate(articles, 1):
        try:
            checked.append(pick(article, fields, required))
        except ValueError as exc:
            raise ValueError(f"article {number}: {exc}") from None
    return checked


def drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def new_client_id() -> str:
    return uuid.uuid4().hex


# --- connections -------------------------------------------------------------------


def _new_session() -> requests.Session:
    """A session whose pool keeps a connection for each of many threads (urllib3's default is 10)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection failed before the request went out (refused, unreachable, DNS)."""
    text = str(exc)
    return any(
        word in text
        for word in ("Connection refused", "NewConnectionError", "Name or service not known", "Failed to resolve")
    )
