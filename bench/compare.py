"""Two checkouts of the project under the same load, round by round: is a change faster?

    git worktree add /tmp/before HEAD~1
    bench/.venv/bin/python bench/compare.py /tmp/before [--rounds 4] [--seconds 3] [--config 2w] [--safe]

Each round serves this checkout and the other one, each through the same ``timed_run`` as
``bench/run`` (a fresh gunicorn server, its replies checked, a second of warm-up, then ``wrk``).
The order alternates from round to round, so that whatever the machine does between two runs
weighs on both sides alike.  It prints every run, then the medians and this checkout's ratio to
the other.

On a VM whose neighbours steal CPU, one round swings by 20%: a change worth keeping wins most
rounds, not the median alone.  This is for one change at a time; ``bench/run`` is the full
comparison with the peers, and the one RESULTS.md reports.
"""

from __future__ import annotations

import argparse
import os
import statistics

import loadbench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", help="another checkout of the project (a git worktree, say)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=3, help="wrk's duration per run, whole seconds")
    parser.add_argument("--config", choices=sorted(loadbench.CONFIGS), default="pinned")
    parser.add_argument("--safe", action="store_true", help="safe-mode pushes (default: plaintext)")
    args = parser.parse_args()
    other = os.path.abspath(args.other)
    if not os.path.isfile(os.path.join(other, "wsgi.py")):
        parser.error(f"{other} has no wsgi.py: not a checkout of the project")

    project = loadbench.APPS["project"]
    sides = {
        "this": loadbench.App("project", "this checkout", project.chdir, project.module, project.expect),
        "other": loadbench.App("project", "the other checkout", other, project.module, project.expect, repo=other),
    }
    config = loadbench.CONFIGS[args.config]
    pushes_per_run = int(4000 * args.seconds)
    results: dict[str, dict[int, loadbench.RunResult]] = {name: {} for name in sides}  # by round
    workdir = loadbench.make_workdir()
    try:
        print(f"{config.label}; {'safe' if args.safe else 'plaintext'}; {args.seconds:g} s a run")
        print("round side    req/s  CPU µs/req  p50 ms  p99 ms  notes")
        for round_no in range(args.rounds):
            order = ["this", "other"] if round_no % 2 == 0 else ["other", "this"]
            for name in order:
                run = loadbench.timed_run(
                    sides[name], config, args.safe, args.seconds, pushes_per_run, round_no, 0, workdir
                )
                notes = run.error or "; ".join(run.invalid + run.disturbed)
                if run.ok:
                    results[name][round_no] = run
                    print(
                        f"{round_no:5} {name:5} {run.rps:8.0f} {run.cpu_us_per_req:11.0f} "
                        f"{run.p50_ms:7.2f} {run.p99_ms:7.2f}  {notes}",
                        flush=True,
                    )
                else:
                    print(f"{round_no:5} {name:5}  not counted: {notes}", flush=True)
    finally:
        loadbench.remove_workdir(workdir)

    if not all(results.values()):
        raise SystemExit("a side has no valid run: nothing to compare")
    medians = {
        name: (
            statistics.median(r.rps for r in runs.values()),
            statistics.median(r.cpu_us_per_req for r in runs.values()),
        )
        for name, runs in results.items()
    }
    for name, (rps, cpu) in medians.items():
        print(f"median {name:5} {rps:8.0f} req/s {cpu:8.0f} CPU µs/req over {len(results[name])} runs")
    both = sorted(results["this"].keys() & results["other"].keys())
    wins = sum(results["this"][n].rps > results["other"][n].rps for n in both)
    print(
        f"this / other: {medians['this'][0] / medians['other'][0]:.3f}x req/s, "
        f"{medians['this'][1] - medians['other'][1]:+.0f} CPU µs/req; "
        f"this checkout served more in {wins} of the {len(both)} rounds both sides counted"
    )


if __name__ == "__main__":
    main()
