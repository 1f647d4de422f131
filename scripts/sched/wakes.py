#!/usr/bin/env python3
"""Where wake-ups land during bench's latency phase (BENCHMARKS.md, "Where the wake-ups land").

For every wake-up between the bench's processes: did the woken thread run on the waker's
vCPU or on another one, and how long after the wake-up did it run. Groups threads by name:
`gw` the gateway's serving threads, `sim` the simulator, `cli` the load client's threads,
`nginx` nginx's workers.

usage:
  perf record -a -m 512M -o perf.data \
    -e sched:sched_switch,sched:sched_waking,sched:sched_wakeup,sched:sched_migrate_task -- \
    livepeer-gateway bench --only t2i --rounds 1 --seconds 1 --requests 1000
  perf script -i perf.data -F comm,pid,tid,cpu,time,event,trace > perf.txt
  scripts/sched/wakes.py perf.txt [seconds to skip after the gateway's first event, default
  0.3] [seconds to read, default 0.9]
"""
import collections
import re
import sys

LINE = re.compile(r"^\s*(\S.*?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$")


def group(comm):
    comm = comm.strip()
    if comm.startswith("public-api"):
        return "gw"
    if comm.startswith("bench-sim"):
        return "sim"
    if comm in ("livepeer-gatewa", "tokio-rt-worker"):
        return "cli"
    return comm


def main():
    path = sys.argv[1]
    skip = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
    span = float(sys.argv[3]) if len(sys.argv) > 3 else 0.9
    start = None
    waking = {}  # woken pid -> (waker group, woken group, waker cpu, time)
    delays = collections.defaultdict(list)
    for line in open(path):
        m = LINE.match(line)
        if not m:
            continue
        comm, _pid, _tid, cpu, t, event, rest = m.groups()
        cpu, t = int(cpu), float(t)
        if start is None and comm.startswith("public-api"):
            start = t
        if start is None or t < start + skip:
            continue
        if t > start + skip + span:
            break
        if event == "sched:sched_waking":
            pid = int(re.search(r" pid=(\d+)", rest).group(1))
            woken = re.search(r"comm=(.*?) pid", rest).group(1)
            waking[pid] = (group(comm), group(woken), cpu, t)
        elif event == "sched:sched_switch":
            pid = int(re.search(r"next_pid=(\d+)", rest).group(1))
            if pid in waking:
                waker, woken, waker_cpu, woke = waking.pop(pid)
                where = "same vCPU" if waker_cpu == cpu else "other vCPU"
                delays[(waker, woken, where)].append((t - woke) * 1e6)
    print("| waker → woken | where it ran | wake-ups | p50 µs from wake-up to running |")
    print("|---|---|---:|---:|")
    for (waker, woken, where), ds in sorted(delays.items(), key=lambda kv: -len(kv[1])):
        if len(ds) < 20:
            continue
        ds.sort()
        print(f"| {waker} → {woken} | {where} | {len(ds)} | {ds[len(ds) // 2]:.0f} |")


if __name__ == "__main__":
    main()
