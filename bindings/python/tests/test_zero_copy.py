"""Zero copy on shm: samples and loans are buffers over the shared-memory segment itself."""
import os
import statistics
import time

import numpy as np
import pytest

import ferry
from conftest import SOURCE, config, python_child

CAMERA = os.path.join(SOURCE, "examples", "camera", "camera.toml")


def mapping_of(address):
    """The path of the mapping of this process that contains `address`."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if start <= address < end:
                return parts[5] if len(parts) > 5 else ""
    return None


def test_sample_from_another_process_lies_in_the_shm_segment(domain):
    child = python_child("""
import numpy as np, ferry
with ferry.Node("zc_pub", config=%r) as node:
    pub = node.advertise("frames", type=np.ndarray)
    assert pub.wait_for_subscribers(1, timeout=10)
    with pub.loan_array((1024, 1024, 4), np.uint8) as a:  # 4 MiB + the header: camera.toml allows 8 MiB
        a[...] = 7
        a[0, 0, 0] = 42
    pub.flush(10)
""" % CAMERA)
    with ferry.Node("zc_sub", config=CAMERA) as node:
        sub = node.subscribe("frames", type=np.ndarray)
        with sub.take_sample(timeout=20) as s:
            assert mapping_of(s.address).startswith("/dev/shm/ferry.%s." % domain)
            a = sub.view(s)
            assert a.shape == (1024, 1024, 4) and a.dtype == np.uint8
            assert not a.flags.writeable
            assert a[0, 0, 0] == 42 and a[1023, 1023, 3] == 7
            # The array's memory is the chunk itself.
            addr = a.__array_interface__["data"][0]
            assert s.address <= addr < s.address + s.size
            assert mapping_of(addr) == mapping_of(s.address)
            with pytest.raises(BufferError):
                s.release()  # `a` still points into the chunk
            with pytest.raises(ValueError):
                a[0, 0, 0] = 1  # read-only
            del a
        assert not s.valid
        out, err = child.communicate(timeout=30)
        assert child.returncode == 0, err


def test_loan_lies_in_the_shm_segment_and_numpy_fills_it(domain):
    with ferry.Node("zc_loan", config=config("shm")) as node:
        pub = node.advertise("raw", type=bytes)
        sub = node.subscribe("raw", type=bytes)
        assert pub.wait_for_subscribers(1, timeout=5)
        loan = pub.loan(4096)
        assert mapping_of(loan.address).startswith("/dev/shm/ferry.%s." % domain)
        a = np.frombuffer(loan, dtype=np.uint32)
        assert a.flags.writeable and a.__array_interface__["data"][0] == loan.address
        a[:] = np.arange(1024, dtype=np.uint32)
        with pytest.raises(BufferError):
            loan.publish()  # `a` still points into the loan
        del a
        loan.publish()
        assert not loan.valid
        with sub.take_sample(timeout=5) as s:
            got = np.frombuffer(s, dtype=np.uint32)
            assert np.array_equal(got, np.arange(1024, dtype=np.uint32))
            del got


def one_way_p50(node, topic, nbytes, rounds=300):
    pub = node.advertise(topic, type=bytes)
    sub = node.subscribe(topic, type=bytes)
    assert pub.wait_for_subscribers(1, timeout=5)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        loan = pub.loan(nbytes)
        loan.publish()
        s = sub.take_sample(timeout=5)
        mv = memoryview(s)
        _ = mv[0]
        mv.release()
        s.release()
        times.append(time.perf_counter_ns() - t0)
    pub.close()
    sub.close()
    return statistics.median(times)


def test_a_4mib_frame_costs_about_what_64b_does(domain):
    with ferry.Node("zc_cost", config=config("shm")) as node:
        one_way_p50(node, "warm", 64, rounds=50)
        small = one_way_p50(node, "small", 64)
        big = one_way_p50(node, "big", 4 << 20)
    # A copy of 4 MiB alone takes several hundred microseconds; zero copy costs what 64 B does.
    assert big < max(2 * small, small + 150_000), "64 B p50 %d ns, 4 MiB p50 %d ns" % (small, big)
