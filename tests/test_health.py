"""The operator's probes: /healthz and /metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from app.signals import event_received
from app.testing import PushClient, event_push, text_push


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


def scrape(app) -> str:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def value(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_metrics_count_handler_failures_and_answer_success(app):
    def broken(sender, **kwargs):
        raise RuntimeError("boom")

    with event_received.connected_to(broken):
        assert PushClient(app).post(event_push("CLICK", {"EventKey": "k"})).success

    text = scrape(app)
    assert value(text, "wechat_handler_failures_total") == 1
    assert value(text, "wechat_pushes_total", type="event:click", outcome="success") == 1


def test_metrics_answer_without_the_token_when_the_store_does_not(app, tmp_path):
    PushClient(app).post(text_push("counted before the store went away"))
    state = app.extensions["wechat"]
    state.store.close()
    state.store.path = str(tmp_path / "missing-dir" / "nested" / "x.sqlite3")  # cannot be opened

    text = scrape(app)
    assert value(text, "wechat_pushes_total", type="text", outcome="reply") == 1
    assert value(text, "wechat_access_token_expires_in_seconds") is None
    assert value(scrape(app), "wechat_store_failures_total", operation="metrics") == 1  # counted after the first
