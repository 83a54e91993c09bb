#!/usr/bin/env python3
"""One line per `batchline bench` results file: one executor of two threads
(`e2e-bingo-all-cores`) against two executors of one thread
(`e2e-bingo-2x1`), in wall time and in CPU time.

    scripts/bench-configs.py bench/results.json other.json …
    scripts/bench-configs.py --git 20     # the last 20 committed bench/results.json

Columns: `eff` is runs/s over the run's `limit_runs_per_s`; `sim` is the
executor's mean `simulate` phase per chunk over the limit's time per chunk
and thread; `exec cpu` is the executors' CPU seconds (all their threads)
over the all-cores limit's simulating threads' CPU seconds for the same
runs (1.00: the executor spends exactly what the in-process simulation
does); `pg` is Postgres' CPU seconds (the whole service); `tail` is
verified_s - executed_s.
"""

import json
import subprocess
import sys

ONE_BY_TWO = "e2e-bingo-all-cores"
TWO_BY_ONE = "e2e-bingo-2x1"


def line(name, r):
    e2e = {e["label"]: e for e in r.get("e2e", [])}
    limit = r.get("limit_runs_per_s")
    all_cores = [x for x in r.get("limit", []) if x["threads"] == r["machine"]["cores"]]
    if not limit or not all_cores or ONE_BY_TWO not in e2e or TWO_BY_ONE not in e2e:
        return None
    limit_cpu = sum(x["cpu_s"] for x in all_cores) / len(all_cores)
    per_chunk_ms = r["sizes"]["chunk_size"] / (limit / r["machine"]["cores"]) * 1e3
    cells = [name[:12]]
    for label in (ONE_BY_TWO, TWO_BY_ONE):
        e = e2e[label]
        execs = sum(v for k, v in e["cpu"]["by_process"].items() if k.startswith("executor"))
        sim = e["phases"]["executor"]["simulate"]["mean_ms"]
        cells.append(
            f"eff {e['runs_per_s'] / limit:.3f} sim {sim / per_chunk_ms:.3f} "
            f"exec cpu {execs / limit_cpu:.3f} pg {e['cpu']['by_process'].get('postgres', 0):.2f} "
            f"tail {e['verified_s'] - e['executed_s']:.2f}"
        )
    load = r["machine"].get("load_avg_start")
    cells.append(f"load {load[0] if load else '?'}")
    return " | ".join(cells)


def committed(n):
    log = subprocess.run(
        ["git", "log", f"-{n}", "--format=%h", "--", "bench/results.json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for commit in log:
        text = subprocess.run(
            ["git", "show", f"{commit}:bench/results.json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        yield commit, json.loads(text)


def main(argv):
    if argv[:1] == ["--git"]:
        runs = committed(int(argv[1]) if len(argv) > 1 else 20)
    else:
        runs = ((path, json.load(open(path))) for path in argv)
    print(f"{'run':12} | {ONE_BY_TWO} (1 executor x 2) | {TWO_BY_ONE} (2 executors x 1) | machine")
    for name, r in runs:
        text = line(name, r)
        if text:
            print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
