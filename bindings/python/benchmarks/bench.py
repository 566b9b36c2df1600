#!/usr/bin/env python3
"""Python next to C++ on shm, in one run: one-way latency p50 (round trip / 2) at 64 B and 4 MiB.

    PYTHONPATH=<build>/python python3 bindings/python/benchmarks/bench.py --build <build> [--iterations 2000]

Python: this process publishes a loan on "ping" (zero copy: it writes only a sequence number), a
Python child takes the sample and answers with a loan of the same size on "pong"; no payload is
copied. C++: <build>/bin/ferry-bench --transports shm --kinds ferry at the same sizes (its
peer works the same way). A benchmark, not a test: figures depend on the machine."""
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
import struct, sys, ferry
with ferry.Node("py_pong", config=sys.argv[1]) as node:
    sub = node.subscribe("ping", type=bytes)
    pub = node.advertise("pong", type=bytes)
    print("ready", flush=True)
    while True:
        s = sub.take_sample()
        n = s.size
        seq = memoryview(s)[:8].tobytes()
        s.release()
        if n == 8 and seq == b"\xff" * 8:
            break
        loan = pub.loan(n)
        mv = memoryview(loan)
        mv[:8] = seq
        mv.release()
        loan.publish()
"""


def python_p50(config, size, iterations):
    with ferry.Node("py_ping", config=config) as node:
        pub = node.advertise("ping", type=bytes)
        sub = node.subscribe("pong", type=bytes)
        child = subprocess.Popen([sys.executable, "-c", PONG, config], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        assert pub.wait_for_subscribers(1, timeout=10)
        warmup = max(20, iterations // 10)
        times = []
        for i in range(warmup + iterations):
            t0 = time.perf_counter_ns()
            loan = pub.loan(size)
            mv = memoryview(loan)
            mv[:8] = struct.pack("<Q", i)
            mv.release()
            loan.publish()
            s = sub.take_sample(timeout=10)
            s.release()
            if i >= warmup:
                times.append(time.perf_counter_ns() - t0)
        pub.publish(b"\xff" * 8)
        child.wait(timeout=10)
    return statistics.median(times) / 2 / 1e3


def cpp_p50(build, sizes, iterations, repeat):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([os.path.join(build, "bin", "ferry-bench"), "--transports", "shm", "--kinds", "ferry",
                        "--sizes", ",".join(str(s) for s in sizes), "--iterations", str(iterations), "--repeat", str(repeat),
                        "--json", f.name], check=True, stdout=subprocess.DEVNULL)
        rows = json.load(open(f.name))
    return {r["size"]: r["p50_us"] for r in rows if r["kind"] == "ferry" and r["transport"] == "shm"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("FERRY_BUILD_DIR", "build"))
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3, help="measure each cell this many times, keep the median (odd)")
    args = ap.parse_args()
    sizes = [64, 4 << 20]
    domain = "bench_py_%d" % os.getpid()
    os.environ["FERRY_DOMAIN"] = domain
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as cfg:
        cfg.write('[defaults]\ntransport = "shm"\ndepth = 16\nmax_message_size = "8MiB"\n')
    try:
        py = {s: statistics.median(python_p50(cfg.name, s, args.iterations) for _ in range(args.repeat)) for s in sizes}
        cpp = cpp_p50(args.build, sizes, args.iterations, args.repeat)
    finally:
        os.unlink(cfg.name)
        ferry.clean_domain(domain)
    print("| size | C++ p50 (us) | Python p50 (us) | Python - C++ (us) |")
    print("|---|---|---|---|")
    for s in sizes:
        label = "64 B" if s == 64 else "4 MiB"
        print("| %s | %.2f | %.2f | %+.2f |" % (label, cpp[s], py[s], py[s] - cpp[s]))
    print("Python 4 MiB / 64 B p50: %.2fx" % (py[4 << 20] / py[64]))


if __name__ == "__main__":
    main()
