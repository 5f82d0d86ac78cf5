"""Retry dedup holds across worker processes that share one SQLite file."""

from __future__ import annotations

import multiprocessing

from app.testing import text_push


def _worker(store_path: str, pushes: list[bytes], start, results) -> None:
    from app.signals import message_received
    from app.testing import PushClient
    from tests.conftest import make_app_at

    app = make_app_at(store_path)
    handled = []
    message_received.connect(lambda sender, message, **extra: handled.append(message.msg_id), weak=False)
    client = PushClient(app)
    start.wait(timeout=30)
    statuses = [client.post(xml).status for xml in pushes]
    results.put((handled, statuses))


def test_two_processes_handle_each_push_once(tmp_path):
    pushes = [text_push(f"message {i}") for i in range(150)]
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    results = context.Queue()
    store = str(tmp_path / "shared.sqlite3")
    workers = [
        context.Process(target=_worker, args=(store, order, start, results))
        for order in (pushes, list(reversed(pushes)))
    ]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)

    handled = [msg_id for ids, _ in outcomes for msg_id in ids]
    assert all(status == 200 for _, statuses in outcomes for status in statuses)
    assert len(handled) == len(pushes)
    assert len(set(handled)) == len(pushes)
