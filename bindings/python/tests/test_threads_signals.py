"""Threads, signals and interpreter exit: the GIL is released while blocked, Ctrl-C interrupts a
take promptly, and exiting with live endpoints neither hangs, crashes nor leaves OS objects."""
import os
import signal
import threading
import time

import ferry
from conftest import config, objects_of, python_child, wait_until


def progress(seconds):
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        n += 1
    return n


def test_other_threads_run_during_a_blocking_take(domain):
    with ferry.Node("gil") as node:
        sub = node.subscribe("nothing", type=bytes)
        alone = progress(0.3)
        started = threading.Event()

        def blocked():
            started.set()
            try:
                sub.take(timeout=1.0)
            except TimeoutError:
                pass

        t = threading.Thread(target=blocked)
        t.start()
        started.wait()
        during = progress(0.3)
        t.join()
        # Holding the GIL through its waits, the taker would leave this thread a fraction of it.
        assert during > 0.6 * alone, "%d iterations alone, %d during a take" % (alone, during)


def test_ctrl_c_interrupts_a_blocking_take_within_100ms(domain):
    child = python_child("""
import sys, time, ferry
node = ferry.Node("sigint")
sub = node.subscribe("never", type=bytes)
print("ready", flush=True)
try:
    sub.take()
except KeyboardInterrupt:
    print("interrupted", time.monotonic_ns(), flush=True)
    node.close()
    sys.exit(3)
""")
    assert child.stdout.readline().strip() == "ready"
    # Wait until the child sleeps in the take (state S), then interrupt it.
    wait_until(lambda: open("/proc/%d/stat" % child.pid).read().split(")")[1].split()[0] == "S", what="child blocked")
    sent = time.monotonic_ns()
    os.kill(child.pid, signal.SIGINT)
    out, err = child.communicate(timeout=10)
    assert child.returncode == 3, err
    word, when = out.split()
    assert word == "interrupted"
    ms = (int(when) - sent) / 1e6
    print("KeyboardInterrupt %.1f ms after SIGINT" % ms)
    assert ms < 100, "KeyboardInterrupt after %.1f ms" % ms


def test_exit_with_live_endpoints_is_clean(domain):
    for transport in ("shm", "uds", "mq", "pipe"):
        child = python_child("""
import threading, ferry
node = ferry.Node("leaver", config=%r)
pub = node.advertise("t", type=bytes)
sub = node.subscribe("t", type=bytes)
cb = node.subscribe("t", type=bytes, callback=lambda m: None)
pub.wait_for_subscribers(2, timeout=10)
pub.publish(b"x" * 100)
held = sub.take_sample(timeout=10)   # a sample still held at exit
loan = pub.loan(64)                  # and an unpublished loan
def waiter():
    try:
        sub.take()
    except Exception:
        pass
threading.Thread(target=waiter, daemon=True).start()
print("bye", flush=True)
""" % config(transport))
        out, err = child.communicate(timeout=30)
        assert child.returncode == 0, transport + ": " + err
        assert out.strip() == "bye" and "Fatal" not in err and "terminate" not in err, err
        assert objects_of(domain) == [], transport
