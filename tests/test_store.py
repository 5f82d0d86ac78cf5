"""The store interface, on a real SQLite file and a real Redis server alike."""

from __future__ import annotations

import time

import pytest

from app.jobs import FAILED, SUBMITTED, SUCCEEDED, Job
from app.store import open_store
from app.store.base import ABANDONED, ANSWERED, RUNNING, UNFINISHED
from app.store.base import HANDLER_FAILED as PUSH_FAILED
from app.testing import PushClient, text_push
from tests.conftest import make_app


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite3"
    return request.getfixturevalue("empty_redis")


@pytest.fixture
def store(store_url):
    opened = open_store(store_url)
    yield opened
    opened.close()


def claim(store, key: str, owner: str = "w1", ttl: int = 60, lease: float = 3.0):
    return store.claim_push(key, "text", b"<xml/>", ttl, owner, lease)


def test_a_push_is_claimed_once(store):
    first = claim(store, "msg:1")
    assert first.runs is True
    assert (first.record.status, first.record.deliveries, first.record.attempts) == (RUNNING, 1, 1)
    second = claim(store, "msg:1", owner="w2")
    assert second.runs is False
    assert second.record.deliveries == 2
    assert claim(store, "msg:1", owner="w3").record.deliveries == 3  # every delivery is counted
    assert claim(store, "msg:2").runs is True


def test_the_outcome_of_a_push_is_kept(store):
    assert store.get_push("msg:1") is None
    claim(store, "msg:1")
    assert store.get_push("msg:1").status == RUNNING
    finished = store.finish_push("msg:1", ANSWERED, b"<xml>reply</xml>")
    assert (finished.status, finished.reply) == (ANSWERED, b"<xml>reply</xml>")
    assert store.finish_push("msg:1", ANSWERED, b"<xml>again</xml>") is None, "only a running push finishes"
    repeat = claim(store, "msg:1", owner="w2")
    assert (repeat.runs, repeat.record.status, repeat.record.reply) == (False, ANSWERED, b"<xml>reply</xml>")


def test_a_claim_expires(store):
    assert claim(store, "msg:short", ttl=1).runs
    time.sleep(1.2)
    again = claim(store, "msg:short")
    assert again.runs is True
    assert again.record.deliveries == 1


def test_a_lapsed_lease_is_taken_over_once(store):
    claim(store, "msg:1", owner="dead", lease=0.2)
    assert claim(store, "msg:1", owner="w2").runs is False  # alive still
    time.sleep(0.3)
    assert [record.key for record in store.lapsed_runs(time.time(), 10)] == ["msg:1"]
    assert store.lapsed_runs(time.time(), 10)[0].body == b"<xml/>"
    taken = claim(store, "msg:1", owner="w3", lease=0.2)
    assert (taken.runs, taken.record.attempts) == (True, 2)
    time.sleep(0.3)
    assert claim(store, "msg:1", owner="w4").runs is False, "the handlers run again once, not twice"
    assert store.take_over("msg:1", "w5", 3.0) is False


def test_a_renewed_lease_does_not_lapse(store):
    claim(store, "msg:1", owner="w1", lease=0.3)
    for _ in range(3):
        time.sleep(0.2)
        store.renew_leases(["msg:1"], "w1", time.time() + 0.3)
    store.renew_leases(["msg:1"], "someone-else", time.time() - 10)  # only the owner renews
    assert store.take_over("msg:1", "w2", 3.0) is False
    assert store.lapsed_runs(time.time(), 10) == []


def test_late_marks_reach_whoever_finishes(store):
    claim(store, "msg:1")
    assert store.mark_late("msg:1", "hint") is True
    assert store.finish_push("msg:1", ANSWERED, b"<xml/>").late == "hint"
    assert store.mark_late("msg:1", "hint") is False, "a finished push cannot be marked late"


def test_a_lapsed_run_is_abandoned_only_while_lapsed(store):
    claim(store, "msg:1", lease=0.1)
    claim(store, "msg:2", lease=60)
    time.sleep(0.2)
    assert store.abandon("msg:2") is False
    assert store.abandon("msg:1") is True
    assert store.get_push("msg:1").status == "abandoned"
    assert store.lapsed_runs(time.time(), 10) == []


def test_an_unfinished_run_may_run_again(store):
    claim(store, "msg:1")
    store.set_push_status("msg:1", "unfinished")
    assert [record.key for record in store.lapsed_runs(time.time(), 10)] == ["msg:1"]
    assert store.take_over("msg:1", "w2", 3.0) is True
    assert store.get_push("msg:1").attempts == 2


def test_pushes_are_listed_newest_first_without_bodies(store):
    for index in range(4):
        claim(store, f"msg:{index}")
        time.sleep(0.01)
    claim(store, "msg:1", owner="w2")  # a repeat keeps the place of its first delivery
    listed = store.list_pushes()
    assert [record.key for record in listed] == ["msg:3", "msg:2", "msg:1", "msg:0"]
    assert [record.deliveries for record in listed] == [1, 1, 2, 1]
    assert all(record.body is None for record in listed)
    assert [record.key for record in store.list_pushes(limit=2)] == ["msg:3", "msg:2"]


def test_pushes_are_listed_by_status(store):
    for index in range(5):
        claim(store, f"msg:{index}")
        time.sleep(0.01)
    store.finish_push("msg:0", ANSWERED, b"<xml>a</xml>")
    store.finish_push("msg:1", PUSH_FAILED, None)
    store.finish_push("msg:3", PUSH_FAILED, None)
    store.set_push_status("msg:2", ABANDONED)
    assert [record.key for record in store.list_pushes(PUSH_FAILED)] == ["msg:3", "msg:1"]
    assert [record.key for record in store.list_pushes(PUSH_FAILED, limit=1)] == ["msg:3"]
    assert [record.key for record in store.list_pushes(RUNNING)] == ["msg:4"]
    assert [record.key for record in store.list_pushes(ABANDONED)] == ["msg:2"]
    assert store.list_pushes(ANSWERED)[0].reply == b"<xml>a</xml>"
    assert store.list_pushes(UNFINISHED) == []


def test_expired_pushes_are_not_listed(store):
    claim(store, "msg:short", ttl=1)
    claim(store, "msg:long")
    time.sleep(1.2)
    assert [record.key for record in store.list_pushes()] == ["msg:long"]
    assert [record.key for record in store.list_pushes()] == ["msg:long"]  # dropped from any index, still right


def test_redis_keeps_its_push_index_to_live_pushes_and_under_its_cap(empty_redis):
    from app.store import redis_scripts as redis_store

    store = open_store(empty_redis)
    claim(store, "msg:short", ttl=1)
    claim(store, "msg:long")
    time.sleep(1.2)
    store.list_pushes()
    assert store.redis.zrange(redis_store.PUSH_INDEX, 0, -1) == [b"msg:long"], "an expired push leaves the index"
    cap = f"-{redis_store.PUSH_INDEX_CAP + 1}"
    assert redis_store.CLAIM.count(cap) == 1
    store._claim = store.redis.register_script(redis_store.CLAIM.replace(cap, "-4"))  # a cap of 3
    for index in range(5):
        claim(store, f"msg:{index}")
    assert store.redis.zrange(redis_store.PUSH_INDEX, 0, -1) == [b"msg:2", b"msg:3", b"msg:4"]
    store.close()


def test_a_push_is_read_with_its_body_only_when_asked(store):
    store.claim_push("msg:1", "text", b"<xml>the push</xml>", 60, "w1", 3.0)
    assert store.get_push("msg:1").body is None
    assert store.get_push("msg:1", with_body=True).body == b"<xml>the push</xml>"
    assert store.get_push("msg:missing", with_body=True) is None
    assert store.get_push("msg:missing") is None


def test_held_replies_come_out_oldest_first_and_expire(store):
    assert store.take_held_reply("o_fan") is None
    store.hold_reply("o_fan", b"<xml>stale</xml>", 0.2)
    time.sleep(0.3)
    store.hold_reply("o_fan", b"<xml>first</xml>", 60)
    store.hold_reply("o_fan", b"<xml>second</xml>", 60)
    store.hold_reply("o_other", b"<xml>theirs</xml>", 60)
    assert store.take_held_reply("o_fan") == b"<xml>first</xml>"
    assert store.take_held_reply("o_fan") == b"<xml>second</xml>"
    assert store.take_held_reply("o_fan") is None
    assert store.take_held_reply("o_other") == b"<xml>theirs</xml>"


def test_a_claim_never_says_nothing_is_held_when_a_reply_is(store):
    """The claim of a follower's message may say that nothing is held for them, sparing a look;
    it must never say so while a reply is held (that reply would wait for yet another message)."""
    store.hold_reply("o_fan", b"<xml>held</xml>", 60)
    store.hold_reply("o_stale", b"<xml>stale</xml>", 0.2)
    time.sleep(0.3)
    assert store.claim_push("msg:h1", "text", b"<xml/>", 60, "w1", 3.0, "o_fan").held is True
    assert store.take_held_reply("o_fan") == b"<xml>held</xml>"
    if store_kind(store) == "sqlite":  # the SQLite claim looks in the same statement; Redis's always says "look"
        assert store.claim_push("msg:h2", "text", b"<xml/>", 60, "w1", 3.0, "o_fan").held is False
        assert store.claim_push("msg:h3", "text", b"<xml/>", 60, "w1", 3.0, "o_stale").held is False
        assert store.claim_push("msg:h4", "text", b"<xml/>", 60, "w1", 3.0).held is False


def test_expired_values_are_swept_out_of_the_sqlite_file(tmp_path):
    """Sessions and plugin values are written once per follower; expired ones must not pile up in the file."""
    import sqlite3

    path = tmp_path / "store.sqlite3"
    store = open_store(f"sqlite:///{path}")
    try:
        store.set_value("session:o_gone", "{}", 0.1)
        store.set_value("session:o_here", "{}", 60)
        time.sleep(0.2)
        assert store.sweep_values(time.time(), 500) == 1
        rows = sqlite3.connect(path).execute("SELECT key FROM kv").fetchall()
        assert rows == [("session:o_here",)]
        assert store.get_value("session:o_here") == "{}"
    finally:
        store.close()


def store_kind(store) -> str:
    return "sqlite" if type(store).__name__ == "SQLiteStore" else "redis"


def test_values_expire_and_add_only_where_absent(store):
    assert store.get_value("k") is None
    assert store.add_value("k", "first", 60) is True
    assert store.add_value("k", "second", 60) is False
    assert store.get_value("k") == "first"
    store.set_value("k", "third", 60)
    assert store.get_value("k") == "third"
    store.set_value("brief", "x", 0.3)
    time.sleep(0.5)
    assert store.get_value("brief") is None
    assert store.add_value("brief", "again", 60) is True


def test_delete_only_the_expected_value(store):
    store.set_value("lock", "mine", 60)
    assert store.delete_value("lock", expected="theirs") is False
    assert store.get_value("lock") == "mine"
    assert store.delete_value("lock", expected="mine") is True
    assert store.get_value("lock") is None


def test_a_job_goes_from_submitted_to_its_finish(store):
    store.save_job(Job(msg_id="1001", kind="mass", target="tag:2", created_at=100.0, detail={"msgtype": "text"}))
    assert store.get_job("mass", "1001").status == SUBMITTED
    store.finish_job(
        Job(
            msg_id="1001",
            kind="mass",
            created_at=200.0,
            status=SUCCEEDED,
            finish_status="send success",
            counts={"total": 10, "sent": 9},
            finished_at=201.0,
        )
    )
    job = store.get_job("mass", "1001")
    assert (job.status, job.finish_status, job.target, job.created_at) == (SUCCEEDED, "send success", "tag:2", 100.0)
    assert job.counts == {"total": 10, "sent": 9}
    assert job.detail == {"msgtype": "text"}


def test_a_finish_that_arrives_first_is_kept_when_the_send_is_recorded(store):
    store.finish_job(
        Job(
            msg_id="77",
            kind="template",
            created_at=200.0,
            status=FAILED,
            finish_status="failed:user block",
            finished_at=201.0,
        )
    )
    store.save_job(Job(msg_id="77", kind="template", target="openid:o1", created_at=150.0, detail={"template_id": "T"}))
    job = store.get_job("template", "77")
    assert (job.status, job.finish_status, job.target) == (FAILED, "failed:user block", "openid:o1")
    assert job.detail == {"template_id": "T"}


def test_jobs_are_listed_newest_first_and_filtered(store):
    for index, status in enumerate([SUBMITTED, SUCCEEDED, FAILED, SUCCEEDED]):
        store.save_job(Job(msg_id=str(index), kind="mass", created_at=float(index)))
        if status != SUBMITTED:
            store.finish_job(Job(msg_id=str(index), kind="mass", status=status, finish_status="x"))
    assert [job.msg_id for job in store.list_jobs()] == ["3", "2", "1", "0"]
    assert [job.msg_id for job in store.list_jobs(SUCCEEDED)] == ["3", "1"]
    assert [job.msg_id for job in store.list_jobs(limit=2)] == ["3", "2"]
    assert store.list_jobs("no-such-status") == []


def test_the_callback_dedups_on_either_store(tmp_path, store_url):
    from app.signals import message_received

    handled = []
    xml = text_push("once")
    with message_received.connected_to(lambda sender, message, **extra: handled.append(message.msg_id)):
        first = PushClient(make_app(tmp_path / "a", WECHAT_STORE_URL=store_url)).post(xml)
        again = PushClient(make_app(tmp_path / "b", WECHAT_STORE_URL=store_url)).post(xml)
    assert len(handled) == 1
    assert first.content == again.content == "once"


def test_an_unreachable_redis_stops_start_up(tmp_path):
    from app import SettingsError
    from tests.servers import free_port

    with pytest.raises(SettingsError, match="WECHAT_STORE_URL"):
        make_app(tmp_path, WECHAT_STORE_URL=f"redis://127.0.0.1:{free_port()}/0")


def test_a_writable_store_passes_the_write_probe(store):
    store.check_writable(timeout=1.0, min_free_bytes=1)


def test_an_unreachable_redis_stops_start_up_without_printing_its_password(tmp_path):
    from app import SettingsError
    from tests.servers import free_port

    with pytest.raises(SettingsError) as caught:
        make_app(tmp_path, WECHAT_STORE_URL=f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0")
    assert "WECHAT_STORE_URL" in str(caught.value)
    assert "hunter2-secret" not in str(caught.value)
    assert "redis://:***@127.0.0.1" in str(caught.value)


def test_sqlite_sweeps_expired_pushes_and_keeps_live_ones(tmp_path, monkeypatch):
    from app.store import sqlite

    monkeypatch.setattr(sqlite, "SWEEP_EVERY", 10)
    store = open_store(f"sqlite:///{tmp_path}/sweep.sqlite3")
    for index in range(25):
        claim(store, f"msg:old{index}", ttl=1)
    time.sleep(1.2)
    for index in range(20):
        claim(store, f"msg:new{index}")
    assert store.count_pushes() == 20
    assert all(store.get_push(f"msg:new{index}") for index in range(20))
    store.close()


def test_jobs_are_listed_by_the_send_time_even_when_the_finish_came_first(store):
    store.save_job(Job(msg_id="1", kind="mass", created_at=100.0))
    store.finish_job(Job(msg_id="1", kind="mass", created_at=500.0, status=SUCCEEDED, finish_status="send success"))
    store.finish_job(Job(msg_id="2", kind="mass", created_at=400.0, status=SUCCEEDED, finish_status="send success"))
    store.save_job(Job(msg_id="2", kind="mass", created_at=200.0))
    store.save_job(Job(msg_id="3", kind="mass", created_at=300.0))
    assert [(job.msg_id, job.created_at) for job in store.list_jobs()] == [("3", 300.0), ("2", 200.0), ("1", 100.0)]


def test_expired_holds_name_their_pushes_once(store):
    claim(store, "msg:42")
    before = time.time()  # a moment the first hold cannot have run out by, however slow the machine
    store.hold_reply("o_fan", b"<xml>late</xml>", 0.2, push="msg:42")
    store.hold_reply("o_fan", b"<xml>later</xml>", 60, push="msg:43")
    assert store.expired_holds(before, 10) == []
    time.sleep(0.3)
    assert store.expired_holds(time.time(), 10) == ["msg:42"]
    assert store.expired_holds(time.time(), 10) == [], "each expiry is reported once"
    assert store.take_held_reply("o_fan") == b"<xml>later</xml>"
    assert store.expired_holds(time.time() + 120, 10) == [], "a reply taken in time never expires"


def test_outcomes_written_together_finish_only_running_pushes(store):
    for key in ("msg:1", "msg:2", "msg:3"):
        claim(store, key)
    store.finish_push("msg:3", ANSWERED, b"<xml>first</xml>")
    store.finish_pushes([("msg:1", ANSWERED, b"<xml>one</xml>"), ("msg:2", "failed", None), ("msg:3", ANSWERED, b"x")])
    assert store.get_push("msg:1").reply == b"<xml>one</xml>"
    assert store.get_push("msg:2").status == "failed"
    assert store.get_push("msg:3").reply == b"<xml>first</xml>", "a finished push keeps its outcome"


def test_only_the_owner_marks_its_running_push_unfinished(store):
    claim(store, "msg:1", owner="w1")
    assert store.mark_unfinished("msg:1", "w2") is False
    assert store.mark_unfinished("msg:1", "w1") is True
    assert store.get_push("msg:1").status == "unfinished"
    claim(store, "msg:2", owner="w1")
    store.finish_push("msg:2", ANSWERED, b"<xml/>")
    assert store.mark_unfinished("msg:2", "w1") is False, "a finished run stays finished"


def test_the_wal_is_checkpointed_in_the_background_not_by_requests(tmp_path):
    """A server's writes reach the database file itself within a second or two, copied there by the
    background thread, and its request connections no longer checkpoint."""
    import sqlite3

    from app.testing import PushClient as Client

    path = tmp_path / "store.sqlite3"
    app = make_app(tmp_path)
    app.extensions["wechat"].pipeline.runner.start_background()  # as a server worker does at boot
    client = Client(app)
    for n in range(40):
        assert client.post(text_push(f"n{n}")).content == f"n{n}"
    store = app.extensions["wechat"].store
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)

    def in_the_file() -> int:  # the database file alone, without the WAL
        reader = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            return reader.execute("SELECT count(*) FROM pushes").fetchone()[0]
        finally:
            reader.close()

    deadline = time.monotonic() + 5
    while in_the_file() < 40 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert in_the_file() == 40


def test_looking_for_lost_runs_reads_only_live_pushes_however_big_the_journal(tmp_path):
    """Every worker looks for lost runs every second: on a journal of a busy day that must not read the day.

    Counted in SQLite's own work (virtual-machine steps), not in time.  A look reads the runs that
    are live (renewed ones, by their index, and the claims made since the last look) and nothing
    else: pushes answered before the last look are never read again.
    """
    import sqlite3

    store = open_store(f"sqlite:///{tmp_path}/store.sqlite3")
    try:
        claim(store, "msg:live")
        store.mark_unfinished("msg:live", "w1")  # a run lost at shutdown: found through the index

        def steps_to_find_lost_runs(looking=store) -> int:
            steps = [0]

            def count() -> int:
                steps[0] += 1
                return 0

            looking.db.set_progress_handler(count, 100)
            try:
                found = looking.lapsed_runs(time.time(), 20)
            finally:
                looking.db.set_progress_handler(None, 100)
            assert [record.key for record in found] == ["msg:live"]
            return steps[0]

        steps_to_find_lost_runs()
        small = steps_to_find_lost_runs()
        writer = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None)
        writer.execute("BEGIN")
        writer.executemany(
            "INSERT INTO pushes (key, kind, body, received_at, expires_at, status) VALUES (?, 'text', x'00', ?, ?, ?)",
            [(f"msg:{n}", time.time(), time.time() + 600, ANSWERED) for n in range(20_000)],
        )
        writer.execute("COMMIT")
        writer.close()
        assert steps_to_find_lost_runs() > small  # the claims since the last look are read once
        assert steps_to_find_lost_runs() <= small + 2, "lost runs were looked for by reading every push"

        another_worker = open_store(f"sqlite:///{tmp_path}/store.sqlite3")
        try:
            steps_to_find_lost_runs(another_worker)  # its first look reads back (FIRST_LOOK claims at most)
            assert steps_to_find_lost_runs(another_worker) <= small + 2
        finally:
            another_worker.close()
    finally:
        store.close()


def test_a_run_lost_before_its_first_renewal_is_found_by_any_worker_however_long_its_lease_took(tmp_path, monkeypatch):
    """A claim is found lapsed by another worker's look, before and after its lease was ever renewed."""
    store = open_store(f"sqlite:///{tmp_path}/store.sqlite3")
    other = open_store(f"sqlite:///{tmp_path}/store.sqlite3")
    try:
        assert other.lapsed_runs(time.time(), 10) == []
        now = time.time()
        claim(store, "msg:fresh", owner="alive")  # going, inside its first lease
        with monkeypatch.context() as patched:
            patched.setattr(time, "time", lambda: now - 10)
            claim(store, "msg:died-young", owner="dead")  # claimed 10 s ago, never renewed
            claim(store, "msg:died-later", owner="dead")
        store.renew_leases(["msg:died-later"], "dead", now - 5)  # renewed once, 5 s ago
        assert sorted(r.key for r in other.lapsed_runs(time.time(), 10)) == ["msg:died-later", "msg:died-young"]
        assert sorted(r.key for r in other.lapsed_runs(time.time(), 10)) == ["msg:died-later", "msg:died-young"]
        assert other.take_over("msg:died-young", "w2", 3.0) is True
        assert store.abandon("msg:died-later") is True
        assert other.lapsed_runs(time.time(), 10) == []
        assert store.lapsed_runs(time.time(), 10) == []
        later = sorted(r.key for r in other.lapsed_runs(time.time() + 4, 10))  # had nobody renewed them since
        assert later == ["msg:died-young", "msg:fresh"], "the re-run's lease, and the fresh claim's, once over"
    finally:
        store.close()
        other.close()


def test_a_push_claimed_again_after_it_expired_is_still_found_when_its_run_is_lost(tmp_path):
    """The expired row is replaced by a new one, never at a place an earlier look has read past."""
    store = open_store(f"sqlite:///{tmp_path}/store.sqlite3")
    try:
        for key, ttl in (("msg:old", 60), ("msg:again", 1)):
            claim(store, key, ttl=ttl)
            store.finish_push(key, ANSWERED, None)
        assert store.lapsed_runs(time.time(), 10) == []  # this look reads up to msg:again
        time.sleep(1.2)
        assert claim(store, "msg:again", owner="dead", lease=0.2).runs is True
        time.sleep(0.3)
        assert [record.key for record in store.lapsed_runs(time.time(), 10)] == ["msg:again"]
    finally:
        store.close()
