"""Where the project's time goes, per push, on the path the server takes: ``Pipeline.handle``.

``app.callback.CallbackFront`` (the app's ``wsgi_app``, in front of Flask) answers the
callback through ``Pipeline.handle``, which runs a push's handlers in the app's pool while the
delivery waits on the run's latch, under gunicorn as elsewhere: that is "as served" here.

1. Stages: each step of ``Pipeline.handle`` timed over the same pushes, by calling the
   function or method the pipeline calls for it, in the pipeline's order, each push through
   all of them on the caller's thread, every call timed on its own; median of the passes
   (5; ``--passes``), each with a fresh app and store:
   ``read_query`` + ``authenticate`` + ``check_mode``; ``Pipeline._decrypt`` (safe);
   ``parse_xml``; ``parse_push``; the claim, ``store.claim_push`` through the pipeline's guard
   with the follower's openid (one ``INSERT ... RETURNING`` that also says whether a reply is
   held for them); ``LateReplies.take_held``, only when the claim says ``held`` (nearly never);
   the thread hand-off, ``Runner.start`` + ``Latch.wait`` of a run that does nothing, on a
   Runner of the app's kind (``app.runs.Pool``, the app context); ``Pipeline.run_handlers``
   (dispatch + render); ``Runner.put_off`` (the pool thread keeps the outcome); the put-off
   outcomes written as the lease thread does, every ``WRITE_EVERY`` s in one
   ``store.finish_pushes`` transaction, its cost divided by the pushes (amortised);
   ``crypto.seal`` (safe).
   Not a callable of its own, so not a stage: the body read (the front's, timed in 3),
   building the Delivery and the Answer, ``answer_push``/``_wait``'s own logic (in "the rest").
2. The thread hand-off in place: ``Pipeline.handle`` end to end as served (handlers in the
   app's pool, the delivery waiting on the run's Latch, the outcome put off in the pool
   thread) next to the same with the pool replaced by inline calls (every step on the
   caller's thread), interleaved; both end once every put-off outcome is written.
3. Whole WSGI requests (environ prebuilt, no server, no sockets): a bare WSGI callable (reads
   the body, answers ``success``, no framework), bare Flask, the project as served, the project
   with its runs inline, the project with its store stubbed out (each variant a pipeline of its
   own put in ``app.wsgi_app.pipeline``, the front's, and the real one put back after).
4. cProfile of whole WSGI requests as served (what the delivery's thread sees: the handler
   work is on the pool thread and shows as waiting in ``Latch.wait``) and with the runs inline
   (every step on one thread, so every step shows); cProfile of ``Pipeline.handle`` alone
   (inline); pyinstrument's tree of WSGI requests (inline).

    python bench/profile_project.py --out-dir DIR [--pushes N] [--passes N]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
sys.path.insert(0, os.path.join(BENCH, "apps"))

import pushes  # noqa: E402
import sysstat  # noqa: E402
from inprocess import (  # noqa: E402
    close_app,
    project_app,
    project_args,
    project_handler,
    query_string_of,
    settle,
    warm_up,
)

PASSES = 5

# The stages, in the pipeline's order (safe-mode only: decrypt and seal).
AUTH = "read_query + authenticate + check_mode"
DECRYPT = "Pipeline._decrypt (Encrypt parse, msg_signature, AES)"
PARSE_XML = "parse_xml"
PARSE_PUSH = "parse_push"
CLAIM = "claim (INSERT ... RETURNING held check): store.claim_push through the guard"
TAKE_HELD = "late.take_held (held-reply SELECT), only when claim.held"
HANDOFF_STAGE = "thread hand-off: Runner.start + Latch.wait of a no-op run (app.runs.Pool)"
RUN_HANDLERS = "Pipeline.run_handlers (dispatch + render)"
PUT_OFF = "Runner.put_off (the outcome kept for the lease thread)"
BATCH = "put-off outcome, amortised (finish_pushes batch cost / pushes)"
SEAL = "crypto.seal (AES encrypt + sign reply)"
STAGES_SUM = "sum of stages"
STAGE_ORDER = [
    AUTH,
    DECRYPT,
    PARSE_XML,
    PARSE_PUSH,
    CLAIM,
    TAKE_HELD,
    HANDOFF_STAGE,
    RUN_HANDLERS,
    PUT_OFF,
    BATCH,
    SEAL,
]

HANDLE_POOL = "Pipeline.handle, handlers in the pool (as served)"
HANDLE_INLINE = "Pipeline.handle, pool replaced by inline calls"
HANDOFF = "thread hand-off in situ (as served - inline)"
REST = "rest of Pipeline.handle (as served - sum of stages)"

BARE_WSGI = "bare WSGI callable request"
BARE_FLASK = "bare Flask WSGI request"
SERVED = "project WSGI request (as served)"
INLINE = "project WSGI request, runs inline"
STUBBED = "project WSGI request, store stubbed out"


class InlinePool:
    """Stands in for a Runner's ``app.runs.Pool``: runs the call on the caller's thread, at once."""

    def submit(self, call):
        call()

    def shutdown(self, wait: bool = True) -> None:
        pass


def inline(pipeline) -> None:
    """Make ``pipeline``'s runs happen on the delivery's thread (for comparison and profiles only)."""
    pipeline.runner.start_background()
    pipeline.runner._pool = InlinePool()


def fresh_app(tmp: str, label: str, runs_inline: bool = False):
    fresh_app.count = getattr(fresh_app, "count", 0) + 1
    app = project_app(os.path.join(tmp, f"{label}-{fresh_app.count}.sqlite3"))
    from app import get_state

    pipeline = get_state(app).pipeline
    pipeline.runner.start_background()  # as a server worker does at boot
    if runs_inline:
        inline(pipeline)
    warm_up(project_handler(app))
    return app


def _elapsed(fn) -> float:
    """Seconds ``fn()`` takes, from a collected heap (the collector stays on, as in production)."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def quietly(fn):
    """``fn()``, run again while another process used our core meanwhile."""
    cpus = sorted(os.sched_getaffinity(0))
    value, _, _ = sysstat.measure_quietly(fn, cpus if len(cpus) < sysstat.NCPU else None)
    return value


# --- 1. stages ----------------------------------------------------------------------


def stage_pass(app, safe: bool, n: int) -> tuple[dict, int]:
    """``n`` new pushes, each through every stage in the pipeline's order on this thread, each
    call timed on its own (so the store sees claims, the batches of outcomes and any held-reply
    reads interleaved as in the server); µs per push, and how many claims said ``held``."""
    from app import crypto, get_state
    from app.messages import Message, parse_push
    from app.runs import LEASE, WRITE_EVERY, Runner
    from app.store.base import RUNNING
    from app.verify import authenticate, check_mode, read_query
    from app.xmlsafe import parse_xml

    state = get_state(app)
    pipeline, settings, store, envelope = state.pipeline, state.settings, state.store, state.envelope
    token = pushes.TOKEN  # what the app was built with (not read from the settings, whose field names move)
    tolerance, ttl = settings.timestamp_tolerance, settings.dedup_ttl
    owner = pipeline.runner.owner_id()
    # The pool's side, each by the real code: a Runner of the app's kind (its pool size, its app
    # context) whose runs do nothing, for the hand-off; and one never started, so that no lease
    # thread writes its put-off outcomes behind this pass's back: they are written here, timed.
    handoff_runner = Runner(lambda run: None, store, settings.handler_threads, app.app_context)
    handoff_runner.start_background()
    keeper = Runner(lambda run: None, store, 1)
    batch = pushes.make_pushes(n, safe)
    items = [(query_string_of(p), p.body) for p in batch]
    names = [name for name in STAGE_ORDER if safe or name not in (DECRYPT, SEAL)]
    total = dict.fromkeys(names, 0.0)
    clock = time.perf_counter
    replies = []
    held_looks = 0
    keys = []
    gc.collect()  # from a collected heap, as every timed run here
    last_write = clock()
    try:
        for query_string, body in items:
            t0 = clock()
            query = read_query(query_string)
            authenticate(query, token, tolerance, time.time())
            check_mode(query, settings.accepts_plaintext, settings.accepts_encrypted)
            t1 = clock()
            total[AUTH] += t1 - t0
            if safe:
                xml = pipeline._decrypt(body, query)
                t2 = clock()
                total[DECRYPT] += t2 - t1
                t1 = t2
            else:
                xml = body
            root = parse_xml(xml)
            t2 = clock()
            push = parse_push(root)
            t3 = clock()
            key = push.dedup_key
            keys.append(key)
            openid = push.from_user if isinstance(push, Message) else None
            t4 = clock()
            claim = pipeline.guard.call(
                "claim_push", store.claim_push, key, push.msg_type, xml, ttl, owner, LEASE, openid
            )
            t5 = clock()
            if not claim.runs:
                raise RuntimeError(f"fresh push {key} was not claimed to run")
            if claim.held and isinstance(push, Message) and claim.record.attempts == 1:
                held_looks += 1
                pipeline.late.take_held(push.from_user)
            t6 = clock()
            run = handoff_runner.start(key, push)
            if not run.done.wait(5.0):
                raise RuntimeError("a no-op run did not finish in 5 s")
            t7 = clock()
            handled = pipeline.run_handlers(push)
            t8 = clock()
            keeper.put_off(key, handled.status, handled.reply_xml)
            t9 = clock()
            total[PUT_OFF] += t9 - t8
            if t9 - last_write >= WRITE_EVERY:  # as the lease thread does
                keeper.write_outcomes()
                last_write = clock()
                total[BATCH] += last_write - t9
                t9 = last_write
            reply = handled.reply_xml
            if safe:
                reply = crypto.seal(envelope, token, reply)
                total[SEAL] += clock() - t9
            total[PARSE_XML] += t2 - t1
            total[PARSE_PUSH] += t3 - t2
            total[CLAIM] += t5 - t4
            total[TAKE_HELD] += t6 - t5
            total[HANDOFF_STAGE] += t7 - t6
            total[RUN_HANDLERS] += t8 - t7
            replies.append(reply)
        t0 = clock()
        keeper.write_outcomes()  # the last batch
        total[BATCH] += clock() - t0
    finally:
        handoff_runner._pool.shutdown(wait=True)
    for push, reply in zip(batch[:3], replies):
        pushes.check_reply("project", safe, push, 200, reply)
    unwritten = [key for key in keys[-3:] if store.get_push(key).status == RUNNING]
    if unwritten:
        raise RuntimeError(f"put-off outcomes not written: {unwritten}")
    out = {name: value / n * 1e6 for name, value in total.items()}
    out[STAGES_SUM] = sum(out.values())
    return out, held_looks


def stages(tmp: str, safe: bool, n: int) -> tuple[dict, int]:
    """Median µs per push of each stage over the passes; and the most claims of a pass that said ``held``."""
    passes = []
    for i in range(PASSES):
        app = fresh_app(tmp, f"stages-{'safe' if safe else 'plain'}")
        try:
            passes.append(quietly(lambda app=app: stage_pass(app, safe, n)))
        finally:
            close_app(app)
    medians = {name: round(statistics.median(p[name] for p, _ in passes), 2) for name in passes[0][0]}
    return medians, max(held for _, held in passes)


# --- 2. the hand-off ----------------------------------------------------------------


def handle_us(app, safe: bool, n: int) -> float:
    """µs per push of ``Pipeline.handle`` over ``n`` new pushes, until the pool is idle and the
    put-off outcomes are written."""
    handle = project_handler(app)
    batch = pushes.make_pushes(n, safe)
    items = [project_args(p) for p in batch]
    answers = []

    def run():
        for item in items:
            answers.append(handle(*item))
        settle(handle.pipeline)

    us = _elapsed(run) / n * 1e6
    for push, body in zip(batch[:3], answers):
        pushes.check_reply("project", safe, push, 200, body)
    return us


def handoff(tmp: str, safe: bool, n: int, stage_sum: float) -> dict:
    """``Pipeline.handle`` as served and with its runs inline, interleaved; the difference is the
    hand-off's cost in place (thread switch, GIL, the pool thread's own SQLite connection)."""
    times: dict[str, list[float]] = {HANDLE_POOL: [], HANDLE_INLINE: []}
    label = f"handoff-{'safe' if safe else 'plain'}"
    for _ in range(PASSES):  # interleaved, so drift hits both alike
        for name, runs_inline in ((HANDLE_POOL, False), (HANDLE_INLINE, True)):
            app = fresh_app(tmp, label, runs_inline)
            try:
                times[name].append(quietly(lambda app=app: handle_us(app, safe, n)))
            finally:
                close_app(app)
    out = {name: round(statistics.median(values), 2) for name, values in times.items()}
    out[HANDOFF] = round(out[HANDLE_POOL] - out[HANDLE_INLINE], 2)
    out[REST] = round(out[HANDLE_POOL] - stage_sum, 2)
    return out


# --- 3. whole WSGI requests ---------------------------------------------------------


def bare_wsgi(environ: dict, start_response) -> list[bytes]:
    """The floor under any framework: a WSGI callable that reads the push and answers ``success``."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "7")])
    return [b"success"]


class NullStore:
    """A store that remembers nothing: what the request costs without the journal."""

    def claim_push(self, key, kind, body, ttl, owner, lease, openid=None):
        from app.store.base import RUNNING, Claim, PushRecord

        now = time.time()
        return Claim(PushRecord(key, kind, RUNNING, None, now, 1, 1, now + lease), runs=True, held=False)

    def finish_push(self, *args):
        return None

    def finish_pushes(self, *args):
        pass

    def take_held_reply(self, *args):
        return None

    def get_push(self, *args, **kwargs):
        return None

    def renew_leases(self, *args):
        pass

    def lapsed_runs(self, *args):
        return []

    def expired_holds(self, *args):
        return []

    def close(self):
        pass


def environ_for(push: pushes.Push) -> dict:
    from werkzeug.test import EnvironBuilder

    path, _, query = push.target.partition("?")
    builder = EnvironBuilder(
        path=path,
        query_string=query,
        method="POST",
        data=push.body,
        content_type="text/xml",
        base_url="http://127.0.0.1:8000",
    )
    return builder.get_environ()


def wsgi_calls(target, batch: list[pushes.Push], pipeline=None):
    """A timed run: one WSGI call of ``target`` per push (environs prebuilt), then ``pipeline``
    settled; the bodies are kept for :func:`check_bodies`."""
    environs = [environ_for(p) for p in batch]

    def start_response(status, headers, exc_info=None):
        if not status.startswith("200"):
            raise RuntimeError(status)

    def run():
        run.bodies = [b"".join(target(environ, start_response)) for environ in environs]
        if pipeline is not None:
            settle(pipeline)

    run.batch = batch
    return run


def check_bodies(run, safe: bool, project: bool) -> None:
    """The replies of a timed run: every one an echo (checked independently for the first few), or ``success``."""
    if not project:
        if any(body != b"success" for body in run.bodies):
            raise RuntimeError("the bare app did not answer success")
        return
    for push, body in zip(run.batch[:3], run.bodies):
        pushes.check_reply("project", safe, push, 200, body)
    if not all(body.startswith(b"<xml>") for body in run.bodies):
        raise RuntimeError("a project request was not answered with its reply")


def variant_pipeline(app, store=None, runs_inline: bool = False):
    """A pipeline like the app's, over ``store`` (default the app's), runs inline or not, for the
    front to use in place of its own."""
    from app import get_state
    from app.pipeline import Pipeline

    real = get_state(app)
    pipeline = Pipeline(
        real.settings,
        store or real.store,
        real.envelope,
        real.plugins,
        real.client,
        real.metrics,
        real.throttle,
        real.allowlist,
        context=app.app_context,
    )
    pipeline.runner.start_background()
    if runs_inline:
        inline(pipeline)
    return pipeline


def stop_pool(pipeline) -> None:
    settle(pipeline)
    pipeline.runner._pool.shutdown(wait=True)


def whole_requests(app, bare_flask, safe: bool, n: int) -> dict:
    """Median µs of a whole WSGI request: a bare WSGI callable, bare Flask, the project as served,
    with its runs inline, and with its store stubbed out.

    The front (``app.wsgi_app``) holds its pipeline; each variant puts a pipeline of its own
    there for its runs, and the real one is put back after each.
    """
    front = app.wsgi_app
    real = front.pipeline
    runs_inline = variant_pipeline(app, runs_inline=True)
    stubbed = variant_pipeline(app, store=NullStore())
    # name -> (WSGI callable, the front's pipeline for it)
    variants = {
        BARE_WSGI: (bare_wsgi, None),
        BARE_FLASK: (bare_flask, None),
        SERVED: (app, real),
        INLINE: (app, runs_inline),
        STUBBED: (app, stubbed),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    try:
        # a warm-up pass of every variant (its pool thread, its statements), then the timed ones
        for timed_pass in [False] + [True] * PASSES:  # interleaved, so drift hits all alike
            for name, (target, pipeline) in variants.items():
                count = n if timed_pass else min(n, 200)

                def one_run(target=target, pipeline=pipeline, count=count):  # new pushes every try
                    run = wsgi_calls(target, pushes.make_pushes(count, safe), pipeline)
                    us = _elapsed(run) / count * 1e6
                    check_bodies(run, safe, project=pipeline is not None)
                    return us

                if pipeline is not None:
                    front.pipeline = pipeline
                try:
                    if timed_pass:
                        times[name].append(quietly(one_run))
                    else:
                        one_run()
                finally:
                    front.pipeline = real
    finally:
        front.pipeline = real
        stop_pool(runs_inline)
        stop_pool(stubbed)
    return {name: round(statistics.median(values), 2) for name, values in times.items()}


# --- 4. profiles --------------------------------------------------------------------


def cprofile_text(run, sort: str, limit: int = 30) -> tuple[str, pstats.Stats]:
    gc.collect()  # else a full collection that the setup made due lands in one call and tops the table
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats(sort)
    stats.print_stats(limit)
    return buf.getvalue(), stats


def profile_requests(app, safe: bool, n: int, pipeline, path: str, sort: str, limit: int):
    """cProfile of ``n`` fresh WSGI requests with ``pipeline`` in the front, written to ``path``; their stats."""
    run = wsgi_calls(app, pushes.make_pushes(n, safe), pipeline)
    text, stats = cprofile_text(run, sort, limit)
    check_bodies(run, safe, project=True)
    with open(path, "w") as f:
        f.write(text)
    return stats


def top_rows(stats: pstats.Stats, n: int, limit: int = 15) -> list[dict]:
    rows = []
    for (file, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
        rows.append((tt, ct, nc, f"{file}:{line}({func})"))
    rows.sort(reverse=True)
    total = stats.total_tt
    return [
        {
            "function": name,
            "calls_per_req": round(nc / n, 2),
            "own_us_per_req": round(tt / n * 1e6, 2),
            "cum_us_per_req": round(ct / n * 1e6, 2),
            "share": round(tt / total, 3),
        }
        for tt, ct, nc, name in rows[:limit]
    ]


def waiting_us(stats: pstats.Stats, n: int) -> float:
    """µs per request the profiled thread spent in ``Latch.wait``, the run's (cumulative)."""
    from app.runs import Latch

    code = Latch.wait.__code__
    total = sum(
        ct
        for (file, line, func), (cc, nc, tt, ct, callers) in stats.stats.items()
        if func == code.co_name and line == code.co_firstlineno and file == os.path.basename(code.co_filename)
    )
    return round(total / n * 1e6, 2)


def inprocess_profile(tmp: str, safe: bool, n: int, out_dir: str, mode: str) -> dict:
    """``Pipeline.handle`` alone (no front, no Flask): unprofiled as served, then under cProfile
    with its runs inline so that every step shows."""
    app = fresh_app(tmp, f"cprofile-{mode}")
    try:
        plain_us = handle_us(app, safe, n)  # as served, unprofiled
    finally:
        close_app(app)
    app = fresh_app(tmp, f"cprofile-{mode}", runs_inline=True)
    try:
        handle = project_handler(app)
        items = [project_args(p) for p in pushes.make_pushes(n, safe)]
        text, stats = cprofile_text(lambda: [handle(*item) for item in items], "tottime", 30)
    finally:
        close_app(app)
    with open(os.path.join(out_dir, f"cprofile-inprocess-{mode}-tottime.txt"), "w") as f:
        f.write(text)
    return {
        "us_per_push_unprofiled": round(plain_us, 2),
        "profiled_total_us_per_req": round(stats.total_tt / n * 1e6, 2),
        "top_tottime": top_rows(stats, n, 12),
    }


def request_profiles(app, safe: bool, n: int, out_dir: str, mode: str) -> dict:
    """cProfile of whole WSGI requests as served; cProfile (and pyinstrument) of them with the runs inline."""
    front = app.wsgi_app
    real = front.pipeline
    out: dict = {}
    # as served: the delivery's thread waits in the run's Latch while the pool thread works
    path = os.path.join(out_dir, f"cprofile-{mode}-served-cumulative.txt")
    stats = profile_requests(app, safe, n, real, path, "cumulative", 60)
    out["served_wait_us_per_req"] = waiting_us(stats, n)
    out["served_profiled_total_us_per_req"] = round(stats.total_tt / n * 1e6, 2)
    # inline: every step on the delivery's thread, so every step shows
    pipeline = variant_pipeline(app, runs_inline=True)
    front.pipeline = pipeline
    try:
        path = os.path.join(out_dir, f"cprofile-{mode}-inline-tottime.txt")
        stats = profile_requests(app, safe, n, pipeline, path, "tottime", 35)
        # the report's table is this profile's, the same as the file by own time
        out["top_tottime"] = top_rows(stats, n)
        out["profiled_total_us_per_req"] = round(stats.total_tt / n * 1e6, 2)
        path = os.path.join(out_dir, f"cprofile-{mode}-inline-cumulative.txt")
        profile_requests(app, safe, n, pipeline, path, "cumulative", 60)
        try:
            from pyinstrument import Profiler

            run = wsgi_calls(app, pushes.make_pushes(n, safe), pipeline)
            profiler = Profiler(interval=0.0002)
            gc.collect()
            profiler.start()
            run()
            profiler.stop()
            check_bodies(run, safe, project=True)
            with open(os.path.join(out_dir, f"pyinstrument-{mode}-inline.txt"), "w") as f:
                f.write(profiler.output_text(unicode=False, color=False, show_all=False))
        except ImportError:
            pass
    finally:
        front.pipeline = real
        stop_pool(pipeline)
    return out


def main() -> None:
    global PASSES
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--pushes", type=int, default=3000)
    parser.add_argument("--passes", type=int, default=PASSES, help="timed passes of each part (median)")
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    PASSES = max(1, args.passes)

    import bare_flask

    n = args.pushes
    result = {"pushes": n, "passes": PASSES}
    with tempfile.TemporaryDirectory(prefix="wechat-prof-", ignore_cleanup_errors=True) as tmp:
        for safe in (False, True):
            mode = "safe" if safe else "plaintext"
            st, held_looks = stages(tmp, safe, n)
            result[mode] = {
                "stages_us": st,
                "held_looks": held_looks,
                "handle_us": handoff(tmp, safe, n, st[STAGES_SUM]),
            }
            app = fresh_app(tmp, f"wsgi-{mode}")
            try:
                result[mode]["whole_us"] = whole_requests(app, bare_flask.app, safe, n)
                result[mode].update(request_profiles(app, safe, n, args.out_dir, mode))
            finally:
                close_app(app)
            result[mode]["inprocess"] = inprocess_profile(tmp, safe, n, args.out_dir, mode)
    with open(os.path.join(args.out_dir, "profile.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
