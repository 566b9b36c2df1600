"""Fixtures of the Python suite: each test gets its own FERRY_DOMAIN (t<pid>_py<n>, the suite's
naming, so tests/support/suite.sh sees leaks), cleaned and checked for leftovers at the end."""
import itertools
import os
import subprocess
import sys
import time

import pytest

SOURCE = os.environ.get("FERRY_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("FERRY_BUILD_DIR", os.path.join(SOURCE, "build"))
BIN = os.path.join(BUILD, "bin")
CONFIGS = os.path.join(SOURCE, "examples", "configs")
TRANSPORTS = ["shm", "uds", "mq", "pipe"]
_counter = itertools.count()


def runtime_dir():
    d = os.environ.get("FERRY_RUNTIME_DIR")
    if d:
        return d
    x = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(x, "ferry") if x else "/tmp/ferry-%d" % os.getuid()


def objects_of(domain):
    """OS objects of `domain` in /dev/shm, /dev/mqueue and the runtime directory."""
    found = []
    for d in ("/dev/shm", "/dev/mqueue", runtime_dir()):
        try:
            found += [os.path.join(d, n) for n in os.listdir(d) if n.startswith("ferry.%s." % domain) or n == "ferry.%s" % domain]
        except FileNotFoundError:
            pass
    return found


def wait_until(cond, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.005)


@pytest.fixture
def domain(monkeypatch):
    name = "t%d_py%d" % (os.getpid(), next(_counter))
    monkeypatch.setenv("FERRY_DOMAIN", name)
    yield name
    import ferry

    # Endpoints closed by the test leave nothing; give the interpreter's GC a chance first.
    import gc

    gc.collect()
    left = objects_of(name)
    ferry.clean_domain(name)
    assert not left, "objects left behind: %s" % left


def config(transport):
    return os.path.join(CONFIGS, transport + ".toml")


def exe(name):
    return os.path.join(BIN, name)


def python_child(code, env=None, **kw):
    """A Python child running `code` with this interpreter and environment."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.Popen([sys.executable, "-c", code], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)
