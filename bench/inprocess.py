"""In-process throughput: verify + parse + dispatch + reply (+ decrypt/encrypt in safe mode).

Each library goes through its own API, on the same pushes, median of RUNS runs:

* project: the one request path the server uses, ``Pipeline.handle(Delivery)`` (what
  ``app.callback.CallbackFront``, the app's ``wsgi_app``, calls for every delivery, under
  gunicorn too) of an app built by ``app.create_app`` (echo plugin, a fresh SQLite store in a
  temp dir for each run, ``WECHAT_MESSAGE_MODE=compatible``): query and signature checks,
  decrypt, parse, the journal's claim, the handlers in the app's pool (``app.runs.Pool``) while
  the delivery waits on the run's ``Latch``, the outcome put off and written in batches, the
  reply sealed.  It is handed the raw query string (``read_query`` is part of its path); the
  peers get the query already parsed into a dict;
* WeRoBot: ``check_signature``, ``parse_message``, ``get_encrypted_reply``;
* wechatpy: ``utils.check_signature``, ``WeChatCrypto.decrypt_message``, ``parse_message``,
  ``create_reply(...).render()``, ``WeChatCrypto.encrypt_message``.

A timed run of the project ends when its pool is idle and every outcome is written: a fast
run puts its outcome off (``Runner.put_off``, in the pool thread, after the delivery has its
answer), the lease thread writes those every 0.5 s in one ``store.finish_pushes``
transaction, and the last batch is written at the end of the run, inside the timing.

Also: the parse alone of a MASSSENDJOBFINISH push with copyright-check results, and the
scale check: the project's per-push cost with the dedup store holding 1 and 1,000,000 keys.

    python bench/inprocess.py --out FILE.json [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from urllib.parse import parse_qsl, urlsplit

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

import pushes  # noqa: E402  (puts the repository on sys.path)
import sysstat  # noqa: E402

CPUS = sorted(os.sched_getaffinity(0))
DISTURBANCE: list[dict] = []  # every measured run: what else used our CPUs, and how many tries it took


def quiet(label: str, fn):
    """Run ``fn`` (one timed run), again if something else used our CPUs meanwhile."""
    value, other, tries = sysstat.measure_quietly(fn, CPUS if len(CPUS) < sysstat.NCPU else None)
    DISTURBANCE.append({"run": label, "other_cores": other, "tries": tries})
    return value


TOKEN, APP_ID, AES_KEY = pushes.TOKEN, pushes.APP_ID, pushes.AES_KEY


def query_of(push: pushes.Push) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(push.target).query))


def query_string_of(push: pushes.Push) -> str:
    return urlsplit(push.target).query


# --- the project ------------------------------------------------------------------


def project_app(store_path: str):
    """The project's app as the server builds it: pushes.py's token, appid, AES key and mode,
    the echo plugin, a SQLite store at ``store_path``."""
    from app import create_app

    return create_app(
        {**pushes.ENV, "WECHAT_PLUGINS": "app.plugins.echo", "WECHAT_STORE_URL": f"sqlite:///{store_path}"}
    )


def project_handler(app):
    """One push through ``Pipeline.handle``, the path every delivery to the server takes."""
    from app import get_state
    from app.pipeline import Delivery

    pipeline = get_state(app).pipeline

    def handle(query_string: str, body: bytes) -> bytes:
        answer = pipeline.handle(Delivery(method="POST", query_string=query_string, read_body=lambda limit: body))
        if answer.status != 200 or answer.release:
            raise ValueError(
                f"pipeline answered {answer.status}{' (released)' if answer.release else ''}: {answer.body[:200]!r}"
            )
        return answer.body

    handle.pipeline = pipeline
    return handle


def settle(pipeline, limit: float = 10.0) -> None:
    """Wait until ``pipeline``'s pool has no run left, then write the outcomes they put off; bounded.

    A fast run puts its outcome off (``Runner.put_off``) and the lease thread writes those every
    ``WRITE_EVERY`` seconds, in one ``store.finish_pushes`` transaction.  Waiting for that thread
    would add up to half a second of idle time to a timed run; the last batch is written here
    instead, on the caller's thread, so its cost is counted and nothing is left over.
    """
    runner = pipeline.runner
    deadline = time.monotonic() + limit
    while runner._runs:  # runs still going (a run leaves this once its outcome is put off)
        if time.monotonic() > deadline:
            raise RuntimeError(f"runs still going after {limit}s: {runner.live_keys()[:5]}")
        time.sleep(0.0002)
    runner.write_outcomes()
    while runner.live_keys():  # a batch the lease thread failed to write is put back: bounded retry
        if time.monotonic() > deadline:
            raise RuntimeError(f"outcomes not written after {limit}s: {runner.live_keys()[:5]}")
        time.sleep(0.01)
        runner.write_outcomes()


def warm_up(handle, n: int = 10) -> None:
    """A few pushes of its own through a fresh app, untimed: its pool's first thread, its first
    batch of outcomes, the store's statements prepared, as in a server that has been up a while."""
    for push in pushes.make_pushes(n, False):
        handle(*project_args(push))
    settle(handle.pipeline)


def close_app(app) -> None:
    """Let an app built for one run go: its outcomes written, its store's connection on this thread, its pool threads."""
    from app import get_state

    state = get_state(app)
    settle(state.pipeline)
    state.store.close()
    pool = getattr(state.pipeline.runner, "_pool", None)
    if pool is not None:
        pool.shutdown(wait=True)


# --- WeRoBot ----------------------------------------------------------------------


def werobot_handler(safe: bool):
    import werobot

    robot = werobot.WeRoBot(token=TOKEN, app_id=APP_ID, encoding_aes_key=AES_KEY, SESSION_STORAGE=False)

    @robot.text
    def echo(message):
        return message.content

    def handle(query: dict[str, str], body: bytes) -> bytes:
        if not robot.check_signature(query["timestamp"], query["nonce"], query["signature"]):
            raise ValueError("signature")
        message = robot.parse_message(
            body, timestamp=query["timestamp"], nonce=query["nonce"], msg_signature=query.get("msg_signature")
        )
        return robot.get_encrypted_reply(message).encode()

    return handle


# --- wechatpy ---------------------------------------------------------------------


def wechatpy_handler(safe: bool):
    from wechatpy import create_reply, parse_message
    from wechatpy.crypto import WeChatCrypto
    from wechatpy.utils import check_signature

    wcrypto = WeChatCrypto(TOKEN, AES_KEY, APP_ID)

    def handle(query: dict[str, str], body: bytes) -> bytes:
        timestamp, nonce = query["timestamp"], query["nonce"]
        check_signature(TOKEN, query["signature"], timestamp, nonce)
        if query.get("encrypt_type") == "aes":
            xml = wcrypto.decrypt_message(body, query["msg_signature"], timestamp, nonce)
            msg = parse_message(xml)
            reply = create_reply(msg.content, msg).render()
            return wcrypto.encrypt_message(reply, nonce, timestamp).encode()
        msg = parse_message(body)
        return create_reply(msg.content, msg).render().encode()

    return handle


# --- measuring --------------------------------------------------------------------


def timed(fn, items, after=None) -> float:
    """Seconds to run ``fn`` over ``items`` once (and ``after()``), garbage collector as in production (on)."""
    start = time.perf_counter()
    for item in items:
        fn(*item)
    if after is not None:
        after()
    return time.perf_counter() - start


def peer_args(push: pushes.Push) -> tuple:
    return query_of(push), push.body


def project_args(push: pushes.Push) -> tuple:
    return query_string_of(push), push.body


class ProjectRuns:
    """The project for the throughput runs: every run journals the same pushes, so each run
    gets an app of its own with a fresh store; a run ends once its pool is idle."""

    def __init__(self, workdir: str, label: str) -> None:
        self.workdir = workdir
        self.label = label
        self.count = 0
        self.app = None
        self.handle = None

    def fresh(self) -> None:
        if self.app is not None:
            close_app(self.app)
        self.count += 1
        self.app = project_app(os.path.join(self.workdir, f"{self.label}-{self.count}.sqlite3"))
        self.handle = project_handler(self.app)
        self.handle.pipeline.runner.start_background()  # as a server worker does at boot
        warm_up(self.handle)

    def __call__(self, query_string: str, body: bytes) -> bytes:
        return self.handle(query_string, body)

    def settle(self) -> None:
        settle(self.handle.pipeline)

    def close(self) -> None:
        if self.app is not None:
            close_app(self.app)
            self.app = None


def throughput(
    name: str, handle, batch: list[pushes.Push], safe: bool, runs: int, args=peer_args, before_run=None, after_run=None
) -> dict:
    items = [args(p) for p in batch]
    # correctness first, on a few of the same pushes, checked independently
    if before_run is not None:
        before_run()
    for push, item in list(zip(batch, items))[: 2 * len(pushes.TEXTS)]:
        pushes.check_reply(name, safe, push, 200, handle(*item))
    seconds = []
    for i in range(runs):

        def one_run():
            if before_run is not None:
                before_run()
            gc.collect()
            return timed(handle, items, after_run)

        seconds.append(quiet(f"{name} {'safe' if safe else 'plaintext'} #{i + 1}", one_run))
    per_s = [len(items) / s for s in seconds]
    return {
        "pushes": len(items),
        "runs": [round(x, 1) for x in per_s],
        "median_per_s": round(statistics.median(per_s), 1),
        "median_us": round(1e6 / statistics.median(per_s), 2),
    }


def bench_throughput(n: int, runs: int, workdir: str) -> dict:
    results = {}
    for safe in (False, True):
        mode = "safe" if safe else "plaintext"
        batch = pushes.make_pushes(n, safe)
        rows = {}
        project = ProjectRuns(workdir, f"throughput-{mode}")
        try:
            rows["project"] = throughput(
                "project",
                project,
                batch,
                safe,
                runs,
                args=project_args,
                before_run=project.fresh,
                after_run=project.settle,
            )
        finally:
            project.close()
        rows["werobot"] = throughput("werobot", werobot_handler(safe), batch, safe, runs)
        rows["wechatpy"] = throughput("wechatpy", wechatpy_handler(safe), batch, safe, runs)
        results[mode] = rows
    return results


# --- parse alone ------------------------------------------------------------------


def bench_parse(repeat: int, runs: int) -> dict:
    import werobot
    from app.messages import MassSendJobFinishEvent, parse
    from wechatpy import parse_message

    with open(os.path.join(BENCH, "fixtures", "masssendjobfinish.xml"), "rb") as f:
        body = f.read()
    robot = werobot.WeRoBot(token=TOKEN, SESSION_STORAGE=False)

    event = parse(body)
    assert isinstance(event, MassSendJobFinishEvent), type(event)
    assert len(event.copyright_check_results) == 2 and event.copyright_check_results[1].audit_state == 1
    assert event.article_url_results[0].article_url.endswith("Rb8wK3nYq5TzM1cVx7LpHg")

    parsers = {
        "project": lambda: parse(body),
        "werobot": lambda: robot.parse_message(body),
        "wechatpy": lambda: parse_message(body),
    }
    results = {"bytes": len(body)}
    for name, fn in parsers.items():
        per_s = []
        for i in range(runs):

            def one_run(fn=fn):
                gc.collect()
                start = time.perf_counter()
                for _ in range(repeat):
                    fn()
                return repeat / (time.perf_counter() - start)

            per_s.append(quiet(f"parse {name} #{i + 1}", one_run))
        results[name] = {
            "runs": [round(x, 1) for x in per_s],
            "median_per_s": round(statistics.median(per_s), 1),
            "median_us": round(1e6 / statistics.median(per_s), 2),
        }
    return results


# --- scale: the dedup store holding 1 or 1,000,000 keys -----------------------------


def fill_store(path: str, keys: int) -> float:
    """Put ``keys`` live pushes into a fresh store at ``path``, as a busy day would leave it."""
    from app.store.sqlite import SQLiteStore

    SQLiteStore(path)  # the project's schema
    start = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    sample = pushes.make_pushes(len(pushes.TEXTS), False)
    reply = b"<xml><ToUserName><![CDATA[oBench_follower_0001]]></ToUserName>" + b"x" * 200 + b"</xml>"
    now = time.time()
    base = 10**15  # below every MsgId the benchmark sends: these are older pushes
    db.execute("BEGIN")
    chunk = 50_000
    for start_i in range(0, keys, chunk):
        rows = []
        for i in range(start_i, min(keys, start_i + chunk)):
            received = now - 86_000 * (keys - i) / keys  # spread over the last day, none expired
            rows.append(
                (
                    f"msg:{base + i}",
                    "text",
                    sample[i % len(sample)].body,
                    received,
                    received + 86_400,
                    "answered",
                    reply,
                )
            )
        db.executemany(
            "INSERT INTO pushes (key, kind, body, received_at, expires_at, status, reply) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    count = db.execute("SELECT count(*) FROM pushes").fetchone()[0]
    db.close()
    assert count == keys, (count, keys)
    return time.perf_counter() - start


def bench_scale(sizes: list[int], n: int, runs: int, workdir: str, paths: dict[int, str] | None = None) -> dict:
    """Per-push cost of ``Pipeline.handle`` (plaintext), for each store size.

    The sizes are interleaved run by run (1, big, 1, big, ...) so drift hits both alike.
    """
    from app.store.sqlite import SQLiteStore

    results = {}
    handlers = {}
    apps = []
    for size in sizes:
        path = (paths or {}).get(size) or os.path.join(workdir, f"scale-{size}.sqlite3")
        info = {"keys": size, "path": path}
        if not os.path.exists(path):
            info["fill_s"] = round(fill_store(path, size), 1)
        info["file_mb"] = round(os.path.getsize(path) / 2**20, 1)
        app = project_app(path)
        apps.append(app)
        handlers[size] = project_handler(app)
        handlers[size].pipeline.runner.start_background()
        warm_up(handlers[size])
        results[size] = info
    try:
        per_size: dict[int, list[float]] = {size: [] for size in sizes}
        for i in range(runs):
            for size in sizes:

                def one_run(size=size):
                    batch = [project_args(p) for p in pushes.make_pushes(n, False)]  # new MsgIds every run
                    gc.collect()
                    handle = handlers[size]
                    return timed(handle, batch, lambda: settle(handle.pipeline)) / n * 1e6

                per_size[size].append(quiet(f"scale {size} keys #{i + 1}", one_run))
    finally:
        for app in apps:
            close_app(app)
    for size in sizes:
        us = per_size[size]
        results[size].update(runs_us=[round(x, 1) for x in us], median_us=round(statistics.median(us), 1))
        store = SQLiteStore(results[size]["path"])
        results[size]["keys_after"] = store.count_pushes()
        store.close()
    return {str(k): v for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--pushes", type=int, default=3000, help="pushes per throughput run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parse-repeat", type=int, default=5000)
    parser.add_argument("--scale-keys", type=int, default=1_000_000)
    parser.add_argument("--scale-pushes", type=int, default=2000)
    parser.add_argument("--big-store", help="reuse this store file for the big size (filled if missing)")
    parser.add_argument("--parts", default="throughput,parse,scale")
    args = parser.parse_args()

    parts = set(args.parts.split(","))
    out = {"pushes": args.pushes, "runs": args.runs, "cpu_affinity": sorted(os.sched_getaffinity(0))}
    # (a lease thread of an app built for a run may still open its store files while the directory goes)
    with tempfile.TemporaryDirectory(prefix="wechat-inproc-", ignore_cleanup_errors=True) as workdir:
        if "throughput" in parts:
            out["throughput"] = bench_throughput(args.pushes, args.runs, workdir)
        if "parse" in parts:
            out["parse"] = bench_parse(args.parse_repeat, args.runs)
        if "scale" in parts:
            paths = {args.scale_keys: args.big_store} if args.big_store else None
            out["scale"] = bench_scale([1, args.scale_keys], args.scale_pushes, args.runs, workdir, paths)
    out["disturbance"] = DISTURBANCE
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
