#!/usr/bin/env python3
"""Per-thread CPU of the executors a `batchline bench` run starts.

    target/release/batchline bench --only e2e,scaling & scripts/bench-threads.py $!

Samples `/proc/PID/task/TID/{schedstat,sched,comm}` of every child of the
bench process whose command line holds `executor`, every 200 ms until the
bench exits, then prints, per executor process, each thread's on-CPU time,
run-queue wait, and voluntary / involuntary switches and migrations. The
threads all carry tokio's name; the simulating ones (the blocking pool) are
those with seconds of CPU and almost no voluntary switches. A thread's
last sample is at most 200 ms before its process exited, when it was idle.
"""

import collections
import os
import sys
import time


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return found


def sample(pid, seen):
    try:
        cmd = open(f"/proc/{pid}/cmdline").read().split("\0")
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    if "executor" not in cmd:
        return
    for tid in tids:
        base = f"/proc/{pid}/task/{tid}"
        try:
            run_ns, wait_ns, _ = open(f"{base}/schedstat").read().split()[:3]
            comm = open(f"{base}/comm").read().strip()
            sched = open(f"{base}/sched").read()
        except (OSError, ValueError):
            continue
        t = {"cmd": " ".join(cmd[1:]), "comm": comm, "run": int(run_ns) / 1e9, "wait": int(wait_ns) / 1e9}
        for row in sched.splitlines():
            key, _, value = row.partition(":")
            key = key.strip()
            if key in ("nr_voluntary_switches", "nr_involuntary_switches", "se.nr_migrations"):
                t[key] = int(float(value))
        seen[(pid, tid)] = t


def main(bench):
    seen = {}
    while os.path.exists(f"/proc/{bench}"):
        for pid in children(bench):
            sample(pid, seen)
        time.sleep(0.2)
    by_pid = collections.defaultdict(list)
    for (pid, _), t in seen.items():
        by_pid[pid].append(t)
    for pid, threads in sorted(by_pid.items()):
        threads.sort(key=lambda t: -t["run"])
        print(f"{pid} {threads[0]['cmd']}: {sum(t['run'] for t in threads):.2f} s CPU")
        for t in threads:
            if t["run"] < 0.02:
                continue
            print(
                f"  {t['comm'][:16]:16} cpu {t['run']:6.2f} s  waited {t['wait']:6.2f} s  "
                f"voluntary {t.get('nr_voluntary_switches', 0):6d}  "
                f"involuntary {t.get('nr_involuntary_switches', 0):6d}  "
                f"migrations {t.get('se.nr_migrations', 0):4d}"
            )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(int(sys.argv[1]))
