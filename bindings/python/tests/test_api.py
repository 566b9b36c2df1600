"""The Python API in one process: types, errors, timeouts, iteration, callbacks, context managers."""
import os
import threading
import time

import numpy as np
import pytest

import ferry
from conftest import BUILD, config, wait_until


def pair(node, topic, type, **kw):
    pub = node.advertise(topic, type=type)
    sub = node.subscribe(topic, type=type, **kw)
    assert pub.wait_for_subscribers(1, timeout=5)
    return pub, sub


@pytest.mark.parametrize("transport", ["shm", "uds"])
def test_builtin_types_round_trip(domain, transport):
    values = [
        (bytes, b"\x00\x01binary\xff"),
        (str, "grüße, ferry"),
        (int, -(2**40)),
        (float, 3.25),
        (bool, True),
        ("int8", -5),
        ("uint16", 65535),
        ("int32", -123456),
        ("uint64", 2**63 + 7),
        ("float32", 1.5),
    ]
    with ferry.Node("types", config=config(transport)) as node:
        assert node.domain == domain
        for i, (t, v) in enumerate(values):
            pub, sub = pair(node, "t%d" % i, t)
            assert pub.transport == transport
            pub.publish(v)
            assert sub.take(timeout=5) == v
            assert sub.try_take() is None


def test_type_names_match_cpp(domain):
    with ferry.Node("names") as node:
        assert node.advertise("a", type=str).type_name == "string"
        assert node.advertise("b", type=bytes).type_name == "bytes"
        assert node.advertise("c", type=int).type_name == "int64"
        assert node.advertise("d", type="float32").type_name == "float32"
        assert node.advertise("e", type=np.ndarray).type_name == "ndarray"
        assert node.advertise("f", type=ferry.Raw("camera/Frame")).type_name == "camera/Frame"


@pytest.mark.parametrize("dtype,shape", [("u1", (7,)), ("<f4", (3, 4)), ("<i8", (2, 3, 5)), ("<c16", (4,)), ("f8", ())])
def test_ndarray_carries_dtype_and_shape(domain, dtype, shape):
    a = (np.arange(int(np.prod(shape))) * 3).astype(dtype).reshape(shape)
    with ferry.Node("arrays", config=config("shm")) as node:
        pub, sub = pair(node, "arr", np.ndarray)
        pub.publish(a)
        b = sub.take(timeout=5)
        assert b.dtype == a.dtype and b.shape == a.shape
        assert np.array_equal(a, b)
        pub.publish(a.T)  # not C-contiguous: sent as a contiguous copy
        assert np.array_equal(sub.take(timeout=5), a.T)


def test_ndarray_header_layout(domain):
    # The documented layout, as raw bytes (what a C++ program would parse).
    import struct

    with ferry.Node("layout") as node:
        pub = node.advertise("arr", type=np.ndarray)
        raw = node.subscribe("arr", type=ferry.Raw("ndarray"))
        assert pub.wait_for_subscribers(1, timeout=5)
        pub.publish(np.array([[1, 2, 3]], dtype="<u2"))
        data = raw.take(timeout=5)
        magic, ndim, dlen, offset, _ = struct.unpack_from("<4sHHII", data)
        assert (magic, ndim, dlen, offset) == (b"FNDA", 2, 3, 64)
        assert struct.unpack_from("<2Q", data, 16) == (1, 3)
        assert data[32:35] == b"<u2"
        assert data[64:] == struct.pack("<3H", 1, 2, 3)


def test_untyped_subscriber_takes_the_topic_type(domain):
    with ferry.Node("untyped") as node:
        pub = node.advertise("s", type=str)
        sub = node.subscribe("s")
        assert sub.type_name == "string"
        assert pub.wait_for_subscribers(1, timeout=5)
        pub.publish("as registered")
        assert sub.take(timeout=5) == "as registered"


def test_errors_carry_the_cpp_message(domain):
    with ferry.Node("errors") as node:
        pub = node.advertise("typed", type=str)
        with pytest.raises(ferry.Error) as e:
            node.subscribe("typed", type=int)
        assert "string" in str(e.value) and "int64" in str(e.value)
        assert isinstance(e.value.code, str) and e.value.code != "ok"
        with pytest.raises(ValueError):
            node.advertise("x", type="no/such/type")
        pub.close()
    with pytest.raises(ferry.Error) as e:
        ferry.Node("bad", config="/nonexistent/ferry.toml")
    assert "/nonexistent/ferry.toml" in str(e.value)


def test_too_large_is_an_error(domain):
    with ferry.Node("big", config=config("shm")) as node:
        pub, sub = pair(node, "big", bytes)
        with pytest.raises(ferry.Error) as e:
            pub.publish(b"x" * (8 << 20))  # shm.toml: max_message_size = 4MiB
        assert e.value.code == "too_large"


def test_take_timeout_raises_timeout_error(domain):
    with ferry.Node("timeout") as node:
        sub = node.subscribe("quiet", type=str)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            sub.take(timeout=0.2)
        assert 0.19 <= time.monotonic() - t0 < 2.0
        assert sub.try_take() is None
        with pytest.raises(TimeoutError):
            sub.take_sample(timeout=0.05)


def test_wait_for_subscribers_and_count(domain):
    with ferry.Node("count") as node:
        pub = node.advertise("c", type=bytes)
        assert pub.subscriber_count == 0
        assert pub.wait_for_subscribers(1, timeout=0.1) is False
        subs = [node.subscribe("c", type=bytes) for _ in range(2)]
        assert pub.wait_for_subscribers(2, timeout=5)
        assert pub.subscriber_count == 2
        subs[0].close()
        wait_until(lambda: pub.subscriber_count == 1, what="subscriber to leave")


def test_iteration_ends_when_closed(domain):
    with ferry.Node("iter") as node:
        pub, sub = pair(node, "it", int)
        for i in range(5):
            pub.publish(i)
        got = []

        def consume():
            for msg in sub:
                got.append(msg)

        t = threading.Thread(target=consume)
        t.start()
        wait_until(lambda: len(got) == 5, what="5 messages")
        sub.close()
        t.join(5)
        assert not t.is_alive()
        assert got == list(range(5))


def test_lost_counts_dropped_messages(domain, tmp_path):
    cfg = tmp_path / "drop.toml"
    cfg.write_text('[defaults]\ntransport = "shm"\ndepth = 2\noverflow = "drop_oldest"\n')
    with ferry.Node("lossy", config=str(cfg)) as node:
        pub, sub = pair(node, "l", int)
        for i in range(10):
            pub.publish(i)
        got = []
        while (m := sub.try_take()) is not None:
            got.append(m)
        assert got[-1] == 9
        assert sub.lost == 10 - len(got) and sub.lost > 0


def test_callback_runs_on_ferry_thread_with_gil(domain):
    got, threads = [], set()
    done = threading.Event()

    def on_msg(msg, info):
        threads.add(threading.get_ident())
        got.append((msg, info["sequence"]))
        if len(got) == 3:
            done.set()

    with ferry.Node("cb") as node:
        pub = node.advertise("cb", type=str)
        sub = node.subscribe("cb", type=str, callback=on_msg)
        assert isinstance(sub, ferry.Subscription)
        assert pub.wait_for_subscribers(1, timeout=5)
        for s in ("a", "b", "c"):
            pub.publish(s)
        assert done.wait(5)
        assert [g[0] for g in got] == ["a", "b", "c"]
        assert [g[1] for g in got] == [1, 2, 3]
        assert threading.get_ident() not in threads and len(threads) == 1


def test_callback_exception_does_not_stop_the_subscription(domain):
    seen = []
    ok = threading.Event()

    def on_msg(msg):
        seen.append(msg)
        if msg == 1:
            raise RuntimeError("callback failure")
        ok.set()

    with ferry.Node("cbexc") as node:
        pub = node.advertise("e", type=int)
        node.subscribe("e", type=int, callback=on_msg)
        assert pub.wait_for_subscribers(1, timeout=5)
        pub.publish(1)
        pub.publish(2)
        assert ok.wait(5)
        assert seen == [1, 2]


def test_context_managers_close_everything(domain):
    with ferry.Node("ctx") as node:
        pub = node.advertise("ctx", type=str)
        sub = node.subscribe("ctx", type=str)
        cb = node.subscribe("ctx", type=str, callback=lambda m: None)
    assert node.closed and pub.closed and sub.closed and cb.closed
    with pytest.raises(ValueError):
        pub.publish("after close")
    with ferry.Node("ctx2") as node:
        with node.advertise("ctx2", type=str) as pub:
            pass
        assert pub.closed and not node.closed


def test_structured_types_from_a_type_support_module(domain):
    types = ferry.load_types(os.path.join(BUILD, "lib", "libdemo_types.so"))
    assert "demo/Pose" in types.types
    pose = {"frame": "map", "x": 1.5, "y": -2.0, "theta": 0.25, "covariance": [0.5, 0.0, 0.5]}
    with ferry.Node("struct") as node:
        pub, sub = pair(node, "pose", "demo/Pose")
        pub.publish(pose)
        assert sub.take(timeout=5) == pose
        with pytest.raises(ValueError):
            pub.publish({"frame": 3})
