"""The operator's probes: /healthz and /metrics."""

from __future__ import annotations

from app.signals import event_received
from app.testing import PushClient, event_push, signed_query, text_push
from tests.conftest import TOKEN


def test_healthz_is_ok_when_the_store_answers(app):
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_is_unavailable_when_the_store_is_not(app, tmp_path):
    state = app.extensions["wechat"]
    state.store.close()
    state.store.path = str(tmp_path / "missing-dir" / "nested" / "x.sqlite3")  # cannot be opened
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable"}  # the reason is for the log, not the caller


def metric(app, line_start: str) -> str:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return next(line for line in text.splitlines() if line.startswith(line_start)).rsplit(" ", 1)[1]


def test_metrics_count_refusals_and_handler_failures(app):
    client = app.test_client()
    client.post("/wechat")  # 400: no signature
    bad = signed_query(TOKEN)
    bad["signature"] = "0" * 40
    client.post("/wechat?" + "&".join(f"{k}={v}" for k, v in bad.items()), data=text_push("x"))  # 403

    def broken(sender, **kwargs):
        raise RuntimeError("boom")

    with event_received.connected_to(broken):
        PushClient(app).post(event_push("CLICK", {"EventKey": "k"}))

    assert float(metric(app, 'wechat_refusals_total{status="400"}')) == 1
    assert float(metric(app, 'wechat_refusals_total{status="403"}')) == 1
    assert float(metric(app, "wechat_handler_failures_total")) == 1
    assert float(metric(app, "wechat_access_token_expires_in_seconds")) == 0
