"""The WeChat API client: the only module that talks HTTP to WeChat.

One ``requests.Session`` per client (connections are reused), a timeout on every
call, JSON sent as UTF-8 without ``\\u`` escapes (WeChat shows escapes literally),
and every failure raised as a :class:`app.errors.WeChatError`.  The access token
comes from :class:`app.token.TokenCache` and never appears in a log line or an
error message.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import requests
import requests.adapters

from . import jobs
from .errors import PartialMassSend, SystemBusy, TokenInvalid, TransportError, WeChatError, error_for
from .settings import Settings
from .store import Store
from .token import TokenCache

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # for system-busy answers and failed connections
MASS_OPENIDS_MIN, MASS_OPENIDS_MAX = 2, 10_000
MAX_CUSTOM_NEWS_ARTICLES = 1
MAX_UPLOAD_NEWS_ARTICLES = 8
CLIENTMSGID_EXISTS = 45065  # WeChat's answer to a repeated clientmsgid, with the first send's msg_id
MASS_TYPES = ("mpnews", "text", "voice", "image", "mpvideo")

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


class WeChatClient:
    def __init__(
        self, settings: Settings, store: Store, session: requests.Session | None = None, backoff: float = 0.2
    ) -> None:
        self.settings = settings
        self.store = store
        self.session = session or _new_session()
        self.backoff = backoff
        # One token fetch takes at most MAX_ATTEMPTS timeouts plus the backoff between them.
        worst_fetch = MAX_ATTEMPTS * (settings.connect_timeout + settings.read_timeout) + 8 * backoff
        self.tokens = TokenCache(store, self._fetch_token, fetch_timeout=worst_fetch)

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
            try:
                response = self.session.request(method, url, params=params, data=data, headers=headers, timeout=timeout)
                return self._decode(path, response)
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

    # --- customer-service messages: message/custom/send ---------------------

    def send_text(self, openid: str, content: str, kf_account: str | None = None) -> None:
        """``message/custom/send``, a text message."""
        self._custom(openid, "text", {"content": content}, kf_account)

    def send_image(self, openid: str, media_id: str, kf_account: str | None = None) -> None:
        """``message/custom/send``, an image by ``media_id``."""
        self._custom(openid, "image", {"media_id": media_id}, kf_account)

    def send_voice(self, openid: str, media_id: str, kf_account: str | None = None) -> None:
        """``message/custom/send``, a voice message by ``media_id``."""
        self._custom(openid, "voice", {"media_id": media_id}, kf_account)

    def send_video(
        self,
        openid: str,
        media_id: str,
        thumb_media_id: str,
        title: str | None = None,
        description: str | None = None,
        kf_account: str | None = None,
    ) -> None:
        """``message/custom/send``, a video."""
        video = _drop_none(
            {"media_id": media_id, "thumb_media_id": thumb_media_id, "title": title, "description": description}
        )
        self._custom(openid, "video", video, kf_account)

    def send_music(
        self,
        openid: str,
        music_url: str,
        hq_music_url: str,
        thumb_media_id: str,
        title: str | None = None,
        description: str | None = None,
        kf_account: str | None = None,
    ) -> None:
        """``message/custom/send``, a music message."""
        music = _drop_none(
            {
                "title": title,
                "description": description,
                "musicurl": music_url,
                "hqmusicurl": hq_music_url,
                "thumb_media_id": thumb_media_id,
            }
        )
        self._custom(openid, "music", music, kf_account)

    def send_news(self, openid: str, articles: Sequence[Mapping[str, str]], kf_account: str | None = None) -> None:
        """``message/custom/send``, a news message; WeChat takes one article (title, description, url, picurl)."""
        articles = list(articles)
        if not 1 <= len(articles) <= MAX_CUSTOM_NEWS_ARTICLES:
            raise ValueError(f"a customer-service news message takes 1 article, got {len(articles)}")
        fields = ("title", "description", "url", "picurl")
        self._custom(openid, "news", {"articles": _pick_articles(articles, fields, required=("title",))}, kf_account)

    def send_mpnews(self, openid: str, media_id: str, kf_account: str | None = None) -> None:
        """``message/custom/send``, an article message by ``media_id``."""
        self._custom(openid, "mpnews", {"media_id": media_id}, kf_account)

    def _custom(self, openid: str, msgtype: str, content: dict[str, Any], kf_account: str | None) -> None:
        body: dict[str, Any] = {"touser": openid, "msgtype": msgtype, msgtype: content}
        if kf_account:
            body["customservice"] = {"kf_account": kf_account}
        self.call("message/custom/send", body)

    # --- articles: media/uploadnews -------------------------------------------

    def upload_news(self, articles: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``media/uploadnews``: up to 8 articles for a mass send; returns type, media_id, created_at."""
        articles = list(articles)
        if not 1 <= len(articles) <= MAX_UPLOAD_NEWS_ARTICLES:
            raise ValueError(f"media/uploadnews takes 1 to {MAX_UPLOAD_NEWS_ARTICLES} articles, got {len(articles)}")
        fields = (
            "thumb_media_id",
            "author",
            "title",
            "content_source_url",
            "content",
            "digest",
            "show_cover_pic",
            "need_open_comment",
            "only_fans_can_comment",
        )
        body = {"articles": _pick_articles(articles, fields, required=("thumb_media_id", "title", "content"))}
        answer = self.call("media/uploadnews", body)
        return {"type": answer.get("type"), "media_id": answer.get("media_id"), "created_at": answer.get("created_at")}

    # --- mass sends -------------------------------------------------------------

    def mass_send_to_tag(
        self,
        msgtype: str,
        content: str,
        tag_id: int | None = None,
        *,
        send_ignore_reprint: bool = False,
        clientmsgid: str | None = None,
    ) -> int:
        """``message/mass/sendall`` to the followers with ``tag_id``, or to all followers when it is None.

        ``content`` is the text for ``text`` and the media_id otherwise.  Returns the msg_id.
        """
        target_filter: dict[str, Any] = (
            {"is_to_all": True} if tag_id is None else {"is_to_all": False, "tag_id": int(tag_id)}
        )
        body = {
            "filter": target_filter,
            **_mass_content(msgtype, content),
            "send_ignore_reprint": int(send_ignore_reprint),
            "clientmsgid": clientmsgid or _new_client_id(),
        }
        answer = self._mass_call("message/mass/sendall", body)
        msg_id = str(_answer_field(answer, "msg_id", "message/mass/sendall"))
        target = "all" if tag_id is None else f"tag:{tag_id}"
        self._record(
            jobs.MASS,
            msg_id,
            target,
            {"msgtype": msgtype, "content": content, "msg_data_id": answer.get("msg_data_id")},
        )
        return int(msg_id)

    def mass_send_to_all(self, msgtype: str, content: str, **options: Any) -> int:
        """``message/mass/sendall`` with ``is_to_all``: every follower."""
        return self.mass_send_to_tag(msgtype, content, None, **options)

    def mass_send_to_openids(
        self,
        openids: Iterable[str],
        msgtype: str,
        content: str,
        *,
        send_ignore_reprint: bool = False,
        clientmsgid: str | None = None,
    ) -> list[int]:
        """``message/mass/send`` to a list of openids; returns one msg_id per call.

        Repeats are sent once.  WeChat takes 2 to 10,000 openids a call, so a longer
        list is split into balanced calls (10,001 openids make two calls of ~5,000).
        """
        unique = list(dict.fromkeys(o.strip() for o in openids if o and o.strip()))
        if len(unique) < MASS_OPENIDS_MIN:
            raise ValueError(
                f"a mass send by openid needs at least {MASS_OPENIDS_MIN} distinct openids, got {len(unique)}"
            )
        base_id = clientmsgid or _new_client_id()
        chunks = balanced_chunks(unique, MASS_OPENIDS_MAX)
        msg_ids: list[int] = []
        for index, chunk in enumerate(chunks):
            body = {
                "touser": chunk,
                **_mass_content(msgtype, content),
                "send_ignore_reprint": int(send_ignore_reprint),
                "clientmsgid": base_id if len(chunks) == 1 else f"{base_id}-{index + 1}",
            }
            try:
                answer = self._mass_call("message/mass/send", body)
            except WeChatError as exc:
                if not msg_ids:
                    raise
                raise PartialMassSend(exc, msg_ids, base_id) from exc
            msg_id = str(_answer_field(answer, "msg_id", "message/mass/send"))
            self._record(
                jobs.MASS,
                msg_id,
                f"openids:{len(chunk)}",
                {"msgtype": msgtype, "content": content, "msg_data_id": answer.get("msg_data_id")},
            )
            msg_ids.append(int(msg_id))
        return msg_ids

    def _mass_call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A mass send; one WeChat already took under this clientmsgid counts as sent."""
        try:
            return self.call(path, body)
        except WeChatError as exc:
            if exc.errcode == CLIENTMSGID_EXISTS and exc.answer.get("msg_id"):
                log.info(
                    "%s: clientmsgid %s was sent before as msg_id %s", path, body["clientmsgid"], exc.answer["msg_id"]
                )
                return exc.answer
            raise

    def mass_delete(self, msg_id: int, article_idx: int | None = None) -> None:
        """``message/mass/delete``: withdraw a mass send (all articles, or the one at ``article_idx``)."""
        self.call("message/mass/delete", _drop_none({"msg_id": int(msg_id), "article_idx": article_idx}))

    def mass_status(self, msg_id: int) -> str:
        """``message/mass/get``: the send's status, e.g. ``SEND_SUCCESS``."""
        return str(self.call("message/mass/get", {"msg_id": int(msg_id)}, idempotent=True).get("msg_status"))

    # --- template messages ----------------------------------------------------

    def send_template(
        self,
        openid: str,
        template_id: str,
        data: Mapping[str, Any],
        url: str | None = None,
        miniprogram: Mapping[str, str] | None = None,
        client_msg_id: str | None = None,
    ) -> int:
        """``message/template/send``; returns the msgid.  ``data`` maps each key to ``{"value", "color"}``."""
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": template_data(data),
            "client_msg_id": client_msg_id or _new_client_id(),
        }
        if url:
            body["url"] = url
        if miniprogram:
            body["miniprogram"] = _pick(miniprogram, ("appid", "pagepath"), required=("appid",))
        answer = self.call("message/template/send", body)
        msgid = str(_answer_field(answer, "msgid", "message/template/send"))
        self._record(jobs.TEMPLATE, msgid, f"openid:{openid}", {"template_id": template_id})
        return int(msgid)

    def _record(self, kind: str, msg_id: str, target: str, detail: dict[str, Any]) -> None:
        try:
            self.store.save_job(jobs.Job(msg_id=msg_id, kind=kind, target=target, detail=_drop_none(detail)))
        except Exception:  # the send went out; losing its record must not look like a failed send
            log.exception("could not record %s job %s", kind, msg_id)


def _answer_field(answer: dict[str, Any], name: str, path: str) -> Any:
    """A field WeChat's success answer must carry; its absence is a TransportError, not a KeyError."""
    if answer.get(name) is None:
        raise TransportError(None, f"answer lacks {name}", path)
    return answer[name]


def _new_session() -> requests.Session:
    """A session whose pool keeps a connection for each of many threads (urllib3's default is 10)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def balanced_chunks(items: Sequence[str], most: int) -> list[list[str]]:
    """``items`` in the fewest chunks of at most ``most``, their sizes differing by at most one."""
    count = math.ceil(len(items) / most)
    size, extra = divmod(len(items), count)
    chunks, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        chunks.append(list(items[start:end]))
        start = end
    return chunks


def template_data(data: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Template ``data`` checked: each key maps to ``{"value": ..., "color": ...}`` (color optional)."""
    if not isinstance(data, Mapping) or not data:
        raise ValueError("template data must be a non-empty object of {key: {value, color}}")
    checked = {}
    for key, item in data.items():
        if isinstance(item, str):
            item = {"value": item}
        if not isinstance(item, Mapping) or "value" not in item:
            raise ValueError(f'template data field {key!r} needs a "value"')
        checked[key] = _pick(item, ("value", "color"), required=("value",))
    return checked


def _mass_content(msgtype: str, content: str) -> dict[str, Any]:
    if msgtype not in MASS_TYPES:
        raise ValueError(f"mass send type must be one of {', '.join(MASS_TYPES)}, got {msgtype!r}")
    key = "content" if msgtype == "text" else "media_id"
    return {msgtype: {key: content}, "msgtype": msgtype}


def _pick(item: Mapping[str, Any], fields: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise ValueError(f"expected an object with {', '.join(fields)}, got {type(item).__name__}")
    for name in required:
        if item.get(name) in (None, ""):
            raise ValueError(f"field {name!r} is required")
    unknown = set(item) - set(fields)
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)[0]!r}; expected {', '.join(fields)}")
    return {name: item[name] for name in fields if item.get(name) is not None}


def _pick_articles(
    articles: Sequence[Mapping[str, Any]], fields: Sequence[str], required: Sequence[str]
) -> list[dict[str, Any]]:
    """Each article checked by :func:`_pick`; an error names the article (1-based)."""
    checked = []
    for number, article in enumerate(articles, 1):
        try:
            checked.append(_pick(article, fields, required))
        except ValueError as exc:
            raise ValueError(f"article {number}: {exc}") from None
    return checked


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _new_client_id() -> str:
    return uuid.uuid4().hex


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection failed before the request went out (refused, unreachable, DNS)."""
    text = str(exc)
    return any(
        word in text
        for word in ("Connection refused", "NewConnectionError", "Name or service not known", "Failed to resolve")
    )
