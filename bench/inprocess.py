"""In-process throughput: verify + parse + dispatch + reply (+ decrypt/encrypt in safe mode).

Each library goes through its own API, on the same pushes, median of RUNS runs:

* project: the functions ``app.callback`` calls, in its order (``crypto.check_signature``,
  the ``Encrypt`` check and ``AESEnvelope.decrypt``, ``messages.parse_push``,
  ``dispatch.dispatch`` to the echo plugin, ``replies.render``, ``crypto.seal``); the row
  "project + dedup journal" adds the store as ``callback.journal`` / ``callback.answer`` do;
* WeRoBot: ``check_signature``, ``parse_message``, ``get_encrypted_reply``;
* wechatpy: ``utils.check_signature``, ``WeChatCrypto.decrypt_message``, ``parse_message``,
  ``create_reply(...).render()``, ``WeChatCrypto.encrypt_message``.

Also: the parse alone of a MASSSENDJOBFINISH push with copyright-check results, and the
scale check: the project's per-push cost with the dedup store holding 1 and 1,000,000 keys.

    python bench/inprocess.py --out FILE.json [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
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


# --- the project ------------------------------------------------------------------


def project_app(store_path: str):
    from app import create_app

    return create_app({
        "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "WECHAT_ENCODING_AES_KEY": AES_KEY,
        "WECHAT_PLUGINS": "app.plugins.echo", "WECHAT_STORE_URL": f"sqlite:///{store_path}",
    })


def project_handler(state, journal: bool):
    """One push through the project's request path, as app.callback runs it, minus Flask."""
    from app import callback, crypto
    from app.dispatch import dispatch
    from app.messages import Event, parse_push
    from app.replies import MAX_ARTICLES_FOR_EVENT, MAX_ARTICLES_FOR_MESSAGE, render
    from app.xmlsafe import parse_xml

    settings = state.settings
    token, tolerance, envelope = settings.token, settings.timestamp_tolerance, state.envelope

    def handle(query: dict[str, str], body: bytes) -> bytes:
        timestamp, nonce = query["timestamp"], query["nonce"]
        # verify (callback.verify)
        if abs(time.time() - int(timestamp)) > tolerance:
            raise ValueError("stale timestamp")
        crypto.check_signature(query["signature"], token, timestamp, nonce)
        safe = query.get("encrypt_type", "").lower() == "aes"
        # decrypt (callback.decrypt)
        if safe:
            encrypted = parse_xml(body).findtext("Encrypt").strip()
            crypto.check_signature(query["msg_signature"], token, timestamp, nonce, encrypted)
            body = envelope.decrypt(encrypted)
        # parse
        push = parse_push(parse_xml(body))
        if journal:
            # dedup + journal + dispatch + reply + finish (callback.handle_push)
            key = push.dedup_key
            if not callback.journal(state, key, push.msg_type, body):
                raise ValueError(f"push {key} was deduplicated")
            reply_xml = callback.answer(state, key, push)
        else:
            outcome = dispatch(push, state.plugins, client=state.client, store=state.store)
            limit = MAX_ARTICLES_FOR_EVENT if isinstance(push, Event) else MAX_ARTICLES_FOR_MESSAGE
            reply_xml = render(outcome.reply, push.from_user, push.to_user, int(time.time()), limit)
        if safe:
            reply_xml = crypto.seal(envelope, token, reply_xml)
        return reply_xml

    return handle


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
        message = robot.parse_message(body, timestamp=query["timestamp"], nonce=query["nonce"],
                                      msg_signature=query.get("msg_signature"))
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


def timed(fn, items) -> float:
    """Seconds to run ``fn`` over ``items`` once, garbage collector as in production (on)."""
    start = time.perf_counter()
    for item in items:
        fn(*item)
    return time.perf_counter() - start


def throughput(name: str, handle, batch: list[pushes.Push], safe: bool, runs: int, before_run=None) -> dict:
    items = [(query_of(p), p.body) for p in batch]
    # correctness first, on a few of the same pushes, checked independently
    for push, (query, body) in list(zip(batch, items))[: 2 * len(pushes.TEXTS)]:
        if before_run is not None and push is batch[0]:
            before_run()
        pushes.check_reply(name, safe, push, 200, handle(query, body))
    seconds = []
    for i in range(runs):

        def one_run():
            if before_run is not None:
                before_run()
            gc.collect()
            return timed(handle, items)

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

        app_state = _project_state(os.path.join(workdir, f"core-{mode}.sqlite3"))
        rows["project"] = throughput("project", project_handler(app_state, journal=False), batch, safe, runs)

        store_box = {}

        def fresh_store(mode=mode, box=store_box):
            # each run journals the same pushes, so each gets a store of its own
            box["n"] = box.get("n", 0) + 1
            state = _project_state(os.path.join(workdir, f"journal-{mode}-{box['n']}.sqlite3"))
            box["handle"] = project_handler(state, journal=True)

        fresh_store()
        rows["project+journal"] = throughput(
            "project", lambda q, b: store_box["handle"](q, b), batch, safe, runs, before_run=fresh_store
        )
        rows["werobot"] = throughput("werobot", werobot_handler(safe), batch, safe, runs)
        rows["wechatpy"] = throughput("wechatpy", wechatpy_handler(safe), batch, safe, runs)
        results[mode] = rows
    return results


_APP = None


def _project_state(store_path: str):
    """A project AppState (built once) with a store of its own at ``store_path``."""
    global _APP
    from app import get_state
    from app.store import open_store

    if _APP is None:
        _APP = project_app(store_path)
    state = get_state(_APP)
    return dataclasses.replace(state, store=open_store(f"sqlite:///{store_path}"))


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
            rows.append((f"msg:{base + i}", "text", sample[i % len(sample)].body, received, received + 86_400,
                         "answered", reply))
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
    """Per-push cost of the project's path with the journal, for each store size.

    The sizes are interleaved run by run (1, big, 1, big, ...) so drift hits both alike.
    """
    from app.store.sqlite import SQLiteStore

    results = {}
    handlers = {}
    for size in sizes:
        path = (paths or {}).get(size) or os.path.join(workdir, f"scale-{size}.sqlite3")
        info = {"keys": size, "path": path}
        if not os.path.exists(path):
            info["fill_s"] = round(fill_store(path, size), 1)
        state = _project_state(path)
        info["file_mb"] = round(os.path.getsize(path) / 2**20, 1)
        handlers[size] = project_handler(state, journal=True)
        results[size] = info
    per_size: dict[int, list[float]] = {size: [] for size in sizes}
    for i in range(runs):
        for size in sizes:

            def one_run(size=size):
                batch = [(query_of(p), p.body) for p in pushes.make_pushes(n, False)]  # new MsgIds every run
                gc.collect()
                return timed(handlers[size], batch) / n * 1e6

            per_size[size].append(quiet(f"scale {size} keys #{i + 1}", one_run))
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
    with tempfile.TemporaryDirectory(prefix="wechat-inproc-") as workdir:
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
