#!/usr/bin/env python3
"""Python next to C++ on shm, in one run: one-way latency (round trip / 2) at 64 B and 4 MiB.

    PYTHONPATH=<build>/python /usr/bin/python3 bindings/python/benchmarks/bench.py --build <build> \\
        [--iterations 5000] [--repeat 5] [--placement pin,same-cpu] [--wait adaptive]

Python, two ways, each measured:
  * zero copy: this process publishes a loan on "ping" (it writes only a sequence number), a
    Python child takes the sample and answers with a loan of the same size on "pong"; no payload
    is copied (at 64 B and 4 MiB);
  * publish/take: the everyday API for small messages, pub.publish(buffer) and sub.take() (which
    returns bytes): the ping side fills a 64-byte bytearray with the sequence number, the child
    publishes what it took (at 64 B).
C++: <build>/bin/ferry-bench --transports shm --kinds ferry at the same sizes, whose peer works
the same way. Both get the same treatment, so that only the language differs:
  * the same generated config as ferry-bench writes (depth 16, overflow "block", max_message_size
    = the size, block_timeout_ms 10000) plus the same `wait` mode (--wait, passed to ferry-bench
    as --qos wait=...);
  * the same placement: "pin" puts the ping side on CPU 0 and the peer on CPU 1 (ferry-bench
    --pin), "same-cpu" puts both on CPU 0 (ferry-bench --same-cpu);
  * the same counts: --iterations round trips after a warm-up, --repeat runs per cell, and the run
    with the median p50 is kept with its p99 (as ferry-bench does).
A benchmark, not a test: figures depend on the machine and on what else runs on it."""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import ferry

PONG = r"""
import os, sys, ferry
copy = sys.argv[3] == "copy"
cpu = int(sys.argv[2])
if cpu >= 0:
    os.sched_setaffinity(0, {cpu})
with ferry.Node("py_pong", config=sys.argv[1]) as node:
    sub = node.subscribe("ping", type=bytes)
    pub = node.advertise("pong", type=bytes)
    pub.wait_for_subscribers(1, timeout=10)
    print("ready", flush=True)
    if copy:
        take, publish = sub.take, pub.publish
        while True:
            data = take()
            if len(data) == 8 and data == b"\xff" * 8:
                break
            publish(data)
    take, loan = sub.take_sample, pub.loan
    while not copy:
        s = take()
        n = s.size
        mv = memoryview(s)
        seq = mv[:8].tobytes()
        mv.release()
        s.release()
        if n == 8 and seq == b"\xff" * 8:
            break
        out = loan(n)
        mv = memoryview(out)
        mv[:8] = seq
        mv.release()
        out.publish()
"""

PLACEMENTS = {"pin": (0, 1), "same-cpu": (0, 0), "none": (-1, -1)}


def write_config(size, wait):
    """The config ferry-bench generates for a ferry/shm cell, with the same wait line."""
    f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    f.write('[defaults]\ntransport = "shm"\ndepth = 16\noverflow = "block"\nmax_message_size = %d\n'
            "block_timeout_ms = 10000\n" % size)
    if wait:
        f.write('wait = "%s"\n' % wait)
    f.close()
    return f.name


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def python_run(config, size, iterations, cpus, copy=False):
    """One run: sorted one-way latencies in microseconds (copy: publish/take, else zero copy)."""
    me = os.sched_getaffinity(0)
    if cpus[0] >= 0:
        os.sched_setaffinity(0, {cpus[0]})
    try:
        with ferry.Node("py_ping", config=config) as node:
            pub = node.advertise("ping", type=bytes)
            sub = node.subscribe("pong", type=bytes)
            child = subprocess.Popen([sys.executable, "-c", PONG, config, str(cpus[1]), "copy" if copy else "loan"],
                                     stdout=subprocess.PIPE, text=True)
            try:
                assert pub.wait_for_subscribers(1, timeout=10)
                assert child.stdout.readline().strip() == "ready"
                warmup = max(100, iterations // 10)
                times = []
                take, loan, now, pack = sub.take_sample, pub.loan, time.perf_counter_ns, struct.pack
                publish, take_copy, pack_into, buf = pub.publish, sub.take, struct.pack_into, bytearray(size)
                for i in range(warmup + iterations):
                    if copy:
                        t0 = now()
                        pack_into("<Q", buf, 0, i)
                        publish(buf)
                        take_copy(10)
                        t1 = now()
                    else:
                        t0 = now()
                        out = loan(size)
                        mv = memoryview(out)
                        mv[:8] = pack("<Q", i)
                        mv.release()
                        out.publish()
                        s = take(10)
                        s.release()
                        t1 = now()
                    if i >= warmup:
                        times.append((t1 - t0) / 2e3)
                out = loan(8)  # the end: 8 bytes of 0xff, as raw as the pings
                mv = memoryview(out)
                mv[:8] = b"\xff" * 8
                mv.release()
                out.publish()
            except BaseException:
                child.kill()
                raise
            finally:
                node.close()  # before waiting for the child: both sides leave the topics at once
            assert child.wait(timeout=30) == 0
    finally:
        os.sched_setaffinity(0, me)
    times.sort()
    return times


def python_cell(size, iterations, repeat, cpus, wait, copy=False):
    config = write_config(size, wait)
    try:
        runs = [python_run(config, size, iterations, cpus, copy) for _ in range(repeat)]
    finally:
        os.unlink(config)
    runs.sort(key=lambda t: percentile(t, 0.5))
    chosen = runs[len(runs) // 2]
    return percentile(chosen, 0.5), percentile(chosen, 0.99)


def cpp_cells(build, sizes, iterations, repeat, placement, wait):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [os.path.join(build, "bin", "ferry-bench"), "--transports", "shm", "--kinds", "ferry",
               "--sizes", ",".join(str(s) for s in sizes), "--iterations", str(iterations), "--repeat", str(repeat),
               "--json", f.name]
        if placement != "none":
            cmd.append("--" + placement)
        if wait:
            cmd += ["--qos", 'wait="%s"' % wait]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        rows = json.load(open(f.name))
    return {r["size"]: (r["p50_us"], r["p99_us"]) for r in rows if r["kind"] == "ferry" and r["transport"] == "shm"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("FERRY_BUILD_DIR", "build"))
    ap.add_argument("--iterations", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5, help="runs per cell; the one with the median p50 is kept (odd)")
    ap.add_argument("--placement", default="pin,same-cpu", help="comma-separated: pin, same-cpu, none")
    ap.add_argument("--wait", default="adaptive", help='shm wait mode for both sides ("" for the config default)')
    args = ap.parse_args()
    sizes = [64, 4 << 20]
    placements = args.placement.split(",")
    for p in placements:
        if p not in PLACEMENTS:
            ap.error("unknown placement %r" % p)
        if PLACEMENTS[p][1] >= 0 and max(PLACEMENTS[p]) >= os.cpu_count():
            ap.error("placement %r needs CPUs 0 and 1" % p)
    domain = "bench_py_%d" % os.getpid()
    os.environ["FERRY_DOMAIN"] = domain
    results = {}
    try:
        for p in placements:
            # Interleaved: C++ of a placement, then Python of it, so that both see the same machine.
            cpp = cpp_cells(args.build, sizes, args.iterations, args.repeat, p, args.wait)
            for s in sizes:
                results[(p, s)] = (cpp[s], python_cell(s, args.iterations, args.repeat, PLACEMENTS[p], args.wait))
            results[(p, "copy")] = (cpp[64], python_cell(64, args.iterations, args.repeat, PLACEMENTS[p], args.wait, True))
    finally:
        ferry.clean_domain(domain)
    print("wait = %r, %d round trips x %d runs per cell (median run), one-way us" %
          (args.wait or "default", args.iterations, args.repeat))
    print()
    print("| placement | size | Python API | C++ p50 | Python p50 | Python - C++ p50 | C++ p99 | Python p99 |")
    print("|---|---|---|---|---|---|---|---|")
    cells = [(64, "publish/take", "copy"), (64, "zero copy", 64), (4 << 20, "zero copy", 4 << 20)]
    for p in placements:
        for size, api, key in cells:
            (cp50, cp99), (pp50, pp99) = results[(p, key)]
            print("| %s | %s | %s | %.2f | %.2f | %+.2f | %.2f | %.2f |" %
                  (p, "64 B" if size == 64 else "4 MiB", api, cp50, pp50, pp50 - cp50, cp99, pp99))
    print()
    for p in placements:
        (c64, _), (copy64, _) = results[(p, "copy")]
        (_, _), (p64, _) = results[(p, 64)]
        (_, _), (p4m, _) = results[(p, 4 << 20)]
        extra = copy64 - c64
        print("%s: Python publish/take adds %+.2f us at 64 B (target <= 2 us: %s); zero copy adds %+.2f us; "
              "Python zero copy 4 MiB / 64 B p50 = %.2fx (target <= 2x: %s)" %
              (p, extra, "met" if extra <= 2 else "MISSED", p64 - c64, p4m / p64, "met" if p4m <= 2 * p64 else "MISSED"))


if __name__ == "__main__":
    main()
