"""Where the project's time goes, per request.

1. Stages: each step of app.callback's path timed on its own over the same pushes
   (verify, Encrypt check + decrypt, parse_xml, parse_push, journal, dispatch, render,
   finish_push, seal), median of 5 runs, next to a bare Flask request through WSGI.
2. cProfile of whole requests through each app's WSGI callable (the project and the
   bare Flask route), environ prebuilt, so the difference is what the project adds.
3. pyinstrument's call tree of the project's WSGI requests.

    python bench/profile_project.py --out-dir DIR [--pushes N]
"""

from __future__ import annotations

import argparse
import cProfile
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
from inprocess import project_app, project_handler, query_of  # noqa: E402


def environ_for(push: pushes.Push) -> dict:
    from werkzeug.test import EnvironBuilder

    path, _, query = push.target.partition("?")
    builder = EnvironBuilder(path=path, query_string=query, method="POST", data=push.body,
                             content_type="text/xml", base_url="http://127.0.0.1:8000")
    return builder.get_environ()


def wsgi_calls(app, batch: list[pushes.Push]):
    environs = [environ_for(p) for p in batch]

    def start_response(status, headers, exc_info=None):
        if not status.startswith("200"):
            raise RuntimeError(status)

    def run():
        for environ in environs:
            b"".join(app(environ, start_response))

    return run


def median_us(fn, n: int, runs: int = 5) -> float:
    times = [quietly(lambda: _elapsed(fn)) / n * 1e6 for _ in range(runs)]
    return round(statistics.median(times), 2)


def stages(state, safe: bool, n: int, tmp: str) -> dict:
    from app import callback, crypto
    from app.dispatch import dispatch
    from app.messages import parse_push
    from app.replies import render
    from app.xmlsafe import parse_xml

    token, envelope = state.settings.token, state.envelope
    batch = pushes.make_pushes(n, safe)
    queries = [query_of(p) for p in batch]
    bodies = [p.body for p in batch]
    out = {}

    def verify():
        for q in queries:
            abs(time.time() - int(q["timestamp"]))
            crypto.check_signature(q["signature"], token, q["timestamp"], q["nonce"])

    out["verify (timestamp + signature)"] = median_us(verify, n)
    if safe:
        def decrypt():
            for q, b in zip(queries, bodies):
                encrypted = parse_xml(b).findtext("Encrypt").strip()
                crypto.check_signature(q["msg_signature"], token, q["timestamp"], q["nonce"], encrypted)
                envelope.decrypt(encrypted)

        out["decrypt (parse envelope, msg_signature, AES)"] = median_us(decrypt, n)
        xmls = []
        for q, b in zip(queries, bodies):
            xmls.append(envelope.decrypt(parse_xml(b).findtext("Encrypt").strip()))
    else:
        xmls = bodies
    out["parse_xml"] = median_us(lambda: [parse_xml(x) for x in xmls], n)
    roots = [parse_xml(x) for x in xmls]
    out["parse_push (typed message)"] = median_us(lambda: [parse_push(r) for r in roots], n)
    typed = [parse_push(r) for r in roots]
    out["dedup_key"] = median_us(lambda: [p.dedup_key for p in typed], n)

    runs_store = []
    for i in range(5):
        path = os.path.join(tmp, f"stage-{'safe' if safe else 'plain'}-{i}.sqlite3")
        import dataclasses

        from app.store import open_store

        st = dataclasses.replace(state, store=open_store(f"sqlite:///{path}"))
        st.store.claim_push("warm", "text", b"x", 60)
        start = time.perf_counter()
        for p, x in zip(typed, xmls):
            callback.journal(st, p.dedup_key, p.msg_type, x)
        claim = (time.perf_counter() - start) / n * 1e6
        start = time.perf_counter()
        for p in typed:
            st.store.finish_push(p.dedup_key, "answered", b"<xml>reply reply reply reply</xml>")
        finish = (time.perf_counter() - start) / n * 1e6
        runs_store.append((claim, finish))
    out["journal (store.claim_push, SQLite INSERT)"] = round(statistics.median(r[0] for r in runs_store), 2)
    out["store.finish_push (SQLite UPDATE)"] = round(statistics.median(r[1] for r in runs_store), 2)

    outcomes = [dispatch(p, state.plugins, client=state.client, store=state.store) for p in typed]
    out["dispatch (blinker, echo plugin)"] = median_us(
        lambda: [dispatch(p, state.plugins, client=state.client, store=state.store) for p in typed], n)
    out["render"] = median_us(
        lambda: [render(o.reply, p.from_user, p.to_user, int(time.time()), 1) for o, p in zip(outcomes, typed)], n)
    if safe:
        replies = [render(o.reply, p.from_user, p.to_user, int(time.time()), 1) for o, p in zip(outcomes, typed)]
        out["seal (AES encrypt + sign reply)"] = median_us(lambda: [crypto.seal(envelope, token, r) for r in replies], n)
    out["sum of stages"] = round(sum(v for k, v in out.items()), 2)
    return out


class NullStore:
    """A store that remembers nothing: what the request costs without the dedup journal."""

    def claim_push(self, *args):
        return True

    def finish_push(self, *args):
        pass

    def push_outcome(self, *args):
        return None


def whole_requests(app, bare, safe: bool, n: int) -> dict:
    """Median µs of a whole WSGI request: bare Flask, the project, the project without its store."""
    import dataclasses

    real = app.extensions["wechat"]
    stubbed = dataclasses.replace(real, store=NullStore())
    variants = {
        "bare Flask WSGI request": (bare, None),
        "project WSGI request": (app, real),
        "project WSGI request, store stubbed out": (app, stubbed),
    }
    wsgi_calls(app, pushes.make_pushes(n, safe))()  # warm-up
    times = {name: [] for name in variants}
    for _ in range(5):  # interleaved, so drift hits all alike
        for name, (target, state) in variants.items():
            if state is not None:
                app.extensions["wechat"] = state
            run = wsgi_calls(target, pushes.make_pushes(n, safe))
            times[name].append(quietly(lambda: _elapsed(run)) / n * 1e6)
    app.extensions["wechat"] = real
    return {name: round(statistics.median(values), 2) for name, values in times.items()}


def _elapsed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def quietly(fn):
    """``fn()``, run again while another process used our core meanwhile."""
    cpus = sorted(os.sched_getaffinity(0))
    value, _, _ = sysstat.measure_quietly(fn, cpus if len(cpus) < sysstat.NCPU else None)
    return value


def cprofile_text(run, sort: str, limit: int = 30, restrict: str | None = None) -> tuple[str, pstats.Stats]:
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats(sort)
    if restrict:
        stats.print_stats(restrict, limit)
    else:
        stats.print_stats(limit)
    return buf.getvalue(), stats


def top_rows(stats: pstats.Stats, n: int, limit: int = 15) -> list[dict]:
    rows = []
    for (file, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
        rows.append((tt, ct, nc, f"{file}:{line}({func})"))
    rows.sort(reverse=True)
    total = stats.total_tt
    return [
        {"function": name, "calls_per_req": round(nc / n, 2), "own_us_per_req": round(tt / n * 1e6, 2),
         "cum_us_per_req": round(ct / n * 1e6, 2), "share": round(tt / total, 3)}
        for tt, ct, nc, name in rows[:limit]
    ]


def inprocess_profile(state, safe: bool, n: int, out_dir: str, mode: str) -> dict:
    """cProfile of the in-process path the throughput benchmark times (no Flask, no store)."""
    handle = project_handler(state, journal=False)
    items = [(query_of(p), p.body) for p in pushes.make_pushes(n, safe)]
    start = time.perf_counter()
    for q, b in items:
        handle(q, b)
    plain_us = (time.perf_counter() - start) / n * 1e6
    items = [(query_of(p), p.body) for p in pushes.make_pushes(n, safe)]
    text, stats = cprofile_text(lambda: [handle(q, b) for q, b in items], "tottime", 30)
    with open(os.path.join(out_dir, f"cprofile-inprocess-{mode}-tottime.txt"), "w") as f:
        f.write(text)
    return {"us_per_push_unprofiled": round(plain_us, 2), "profiled_total_us_per_req": round(stats.total_tt / n * 1e6, 2),
            "top_tottime": top_rows(stats, n, 12)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--pushes", type=int, default=3000)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    import bare_flask

    n = args.pushes
    result = {"pushes": n}
    with tempfile.TemporaryDirectory(prefix="wechat-prof-") as tmp:
        app = project_app(os.path.join(tmp, "p.sqlite3"))
        from app import get_state

        state = get_state(app)
        for safe in (False, True):
            mode = "safe" if safe else "plaintext"
            result[mode] = {"stages_us": stages(state, safe, n, tmp), "whole_us": whole_requests(app, bare_flask.app, safe, n)}
            run = wsgi_calls(app, pushes.make_pushes(n, safe))
            text, stats = cprofile_text(run, "tottime", 35)
            with open(os.path.join(args.out_dir, f"cprofile-{mode}-tottime.txt"), "w") as f:
                f.write(text)
            run = wsgi_calls(app, pushes.make_pushes(n, safe))
            text, stats = cprofile_text(run, "cumulative", 60)
            with open(os.path.join(args.out_dir, f"cprofile-{mode}-cumulative.txt"), "w") as f:
                f.write(text)
            # the top functions by own time, for the report
            result[mode]["top_tottime"] = top_rows(stats, n)
            result[mode]["profiled_total_us_per_req"] = round(stats.total_tt / n * 1e6, 2)
            result[mode]["inprocess"] = inprocess_profile(state, safe, n, args.out_dir, mode)
            try:
                from pyinstrument import Profiler

                run = wsgi_calls(app, pushes.make_pushes(n, safe))
                profiler = Profiler(interval=0.0002)
                profiler.start()
                run()
                profiler.stop()
                with open(os.path.join(args.out_dir, f"pyinstrument-{mode}.txt"), "w") as f:
                    f.write(profiler.output_text(unicode=False, color=False, show_all=False))
            except ImportError:
                pass
    with open(os.path.join(args.out_dir, "profile.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
