"""WECHAT_ALLOWED_IPS and WECHAT_TRUSTED_PROXIES: a leaked token is not enough from elsewhere.

Every address here is on loopback: 127.0.0.1 is the test client's peer, and
other 127.x addresses stand for callers behind a proxy.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
import requests

from app import SettingsError
from app.allowlist import REFRESH_EVERY, STORE_KEY
from app.testing import PushClient, signed_query, text_push
from tests.conftest import TOKEN, make_app
from tests.servers import serve


def verify(app, headers: dict[str, str] | None = None, **environ: str):
    query = urlencode(signed_query(TOKEN, echostr="ok"))
    return app.test_client().get(f"/wechat?{query}", headers=headers or {}, environ_base=environ)


def test_a_list_that_leaves_out_the_caller_refuses_every_method(tmp_path):
    app = make_app(tmp_path, WECHAT_ALLOWED_IPS="127.0.0.2, 127.0.1.0/24")
    client = app.test_client()
    assert verify(app).status_code == 403
    assert PushClient(app).post(text_push("x")).status == 403
    assert client.post("/wechat").status_code == 403  # even what would be a 400
    assert client.put("/wechat").status_code == 403
    assert client.get("/healthz").status_code == 200  # only the callback path


def test_a_list_with_the_caller_lets_it_through(tmp_path):
    app = make_app(tmp_path, WECHAT_ALLOWED_IPS="127.0.0.0/8")
    assert verify(app).get_data() == b"ok"
    assert PushClient(app).post(text_push("hi")).content == "hi"


def test_ipv6_loopback_is_matched(tmp_path):
    app = make_app(tmp_path, WECHAT_ALLOWED_IPS="::1")
    assert verify(app, REMOTE_ADDR="::1").status_code == 200
    assert verify(app, REMOTE_ADDR="127.0.0.1").status_code == 403


def test_behind_one_trusted_proxy_the_caller_is_the_last_forwarded_hop(tmp_path):
    app = make_app(tmp_path, WECHAT_ALLOWED_IPS="127.0.0.7", WECHAT_TRUSTED_PROXIES="1")
    assert verify(app, {"X-Forwarded-For": "127.0.0.7"}).status_code == 200
    assert verify(app, {"X-Forwarded-For": "127.0.0.8"}).status_code == 403
    # A caller cannot smuggle an allowed address in front of the one the proxy appended.
    assert verify(app, {"X-Forwarded-For": "127.0.0.7, 127.0.0.8"}).status_code == 403
    assert verify(app).status_code == 403  # no header: it did not come through the proxy


def test_without_trusted_proxies_the_forwarded_header_is_ignored(tmp_path):
    app = make_app(tmp_path, WECHAT_ALLOWED_IPS="127.0.0.7")
    assert verify(app, {"X-Forwarded-For": "127.0.0.7"}).status_code == 403


def test_two_trusted_proxies(tmp_path):
    app = make_app(tmp_path, WECHAT_ALLOWED_IPS="127.0.0.7", WECHAT_TRUSTED_PROXIES="2")
    assert verify(app, {"X-Forwarded-For": "127.0.0.9, 127.0.0.7, 127.0.0.5"}).status_code == 200
    assert verify(app, {"X-Forwarded-For": "127.0.0.7"}).status_code == 403


@pytest.mark.parametrize("value", ["127.0.0.300", "localhost", "127.0.0.1/33", ","])
def test_a_bad_list_stops_start_up(tmp_path, value):
    with pytest.raises(SettingsError, match="WECHAT_ALLOWED_IPS"):
        make_app(tmp_path, WECHAT_ALLOWED_IPS=value)


def test_the_denial_over_real_http(tmp_path):
    with serve(tmp_path, WECHAT_ALLOWED_IPS="127.0.0.2") as served:
        query = urlencode(signed_query(TOKEN, echostr="ok"))
        assert requests.get(f"{served.base_url}/wechat?{query}", timeout=5).status_code == 403
    with serve(tmp_path, WECHAT_ALLOWED_IPS="127.0.0.1") as served:
        query = urlencode(signed_query(TOKEN, echostr="ok"))
        assert requests.get(f"{served.base_url}/wechat?{query}", timeout=5).text == "ok"


# --- WeChat's published list -----------------------------------------------------


def wechat_app(tmp_path, fake, **config):
    return make_app(
        tmp_path,
        WECHAT_ALLOWED_IPS="wechat",
        WECHAT_API_BASE_URL=fake.base_url,
        WECHAT_APP_ID=fake.app_id,
        WECHAT_APP_SECRET=fake.app_secret,
        **config,
    )


def serve_list(fake, ip_list: list[str]) -> None:
    fake.route("getcallbackip", lambda request: {"ip_list": ip_list})


def test_wechat_needs_the_appid_and_secret(tmp_path):
    with pytest.raises(SettingsError, match="WECHAT_ALLOWED_IPS"):
        make_app(tmp_path, WECHAT_ALLOWED_IPS="wechat")


def test_wechats_list_is_fetched_at_start_up_and_kept(tmp_path, fake):
    serve_list(fake, ["127.0.0.2", "127.0.0.0/28"])
    app = wechat_app(tmp_path, fake)
    assert verify(app).status_code == 200
    assert verify(app, REMOTE_ADDR="127.0.0.99").status_code == 403
    stored = json.loads(app.extensions["wechat"].store.get_value(STORE_KEY))
    assert stored["ip_list"] == ["127.0.0.2", "127.0.0.0/28"]
    assert len(fake.requests_to("getcallbackip")) == 1


def test_a_failed_fetch_stops_start_up_when_nothing_is_stored(tmp_path, fake):
    fake.fail("getcallbackip", 40013, times=5)
    with pytest.raises(SettingsError) as caught:
        wechat_app(tmp_path, fake)
    assert str(caught.value).startswith("WECHAT_ALLOWED_IPS=wechat")
    assert "\n" not in str(caught.value)


def test_a_failed_fetch_falls_back_to_the_stored_list(tmp_path, fake):
    serve_list(fake, ["127.0.0.1"])
    first = wechat_app(tmp_path, fake)
    state = first.extensions["wechat"]
    stale = {"ip_list": ["127.0.0.1"], "fetched_at": time.time() - 2 * REFRESH_EVERY}
    state.store.set_value(STORE_KEY, json.dumps(stale), 3600)
    fake.fail("getcallbackip", 40013, times=5)
    second = wechat_app(tmp_path, fake)
    assert verify(second).status_code == 200


def test_a_fresh_stored_list_is_used_without_asking(tmp_path, fake):
    serve_list(fake, ["127.0.0.1"])
    wechat_app(tmp_path, fake)
    wechat_app(tmp_path, fake)
    assert len(fake.requests_to("getcallbackip")) == 1


def test_the_list_is_refreshed_after_a_day_and_a_failed_refresh_keeps_it(tmp_path, fake):
    serve_list(fake, ["127.0.0.1"])
    app = wechat_app(tmp_path, fake)
    allowlist = app.extensions["wechat"].allowlist
    state = app.extensions["wechat"]

    fake.fail("getcallbackip", 40013, times=1)
    state.store.delete_value(STORE_KEY)
    allowlist.fetched_at -= REFRESH_EVERY
    assert verify(app).status_code == 200  # still the old list while it refreshes
    wait_for(lambda: allowlist.fetched_at > time.time() - REFRESH_EVERY)
    assert verify(app).status_code == 200, "a failed refresh keeps the last list"

    serve_list(fake, ["127.0.0.2"])
    allowlist.fetched_at -= REFRESH_EVERY
    verify(app)  # starts the refresh
    wait_for(lambda: not allowlist.permits("127.0.0.1"))
    assert verify(app).status_code == 403
    assert verify(app, REMOTE_ADDR="127.0.0.2").status_code == 200


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
