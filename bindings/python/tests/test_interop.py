"""Python next to the C++ examples, as real processes, on every transport and in both directions."""
import os
import struct
import subprocess

import pytest

import ferry
from conftest import BUILD, TRANSPORTS, config, exe


def fnv1a(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def payload(index, size):
    """examples/checksum.hpp's fill_payload."""
    filler = bytes(((index + i) * 131) & 0xFF for i in range(12, size))
    return struct.pack("<QI", index, fnv1a(filler)) + filler


def check_payload(data):
    index, total = struct.unpack_from("<QI", data)
    assert total == fnv1a(data[12:]), "checksum of message %d" % index
    return index


def env_for(transport):
    return dict(os.environ, FERRY_CONFIG=config(transport))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_python_subscriber_reads_cpp_talker(domain, transport):
    count = 20
    with ferry.Node("py_listener", config=config(transport)) as node:
        sub = node.subscribe("chatter", type=bytes)
        talker = subprocess.Popen([exe("talker"), "--topic", "chatter", "--count", str(count), "--size", "200",
                                   "--wait-subscribers", "1", "--quiet"], env=env_for(transport),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            got = [check_payload(sub.take(timeout=10)) for _ in range(count)]
        finally:
            out, err = talker.communicate(timeout=30)
        assert talker.returncode == 0, err
        assert got == list(range(count))
        assert sub.transport == transport


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cpp_listener_reads_python_publisher(domain, transport):
    count = 20
    with ferry.Node("py_talker", config=config(transport)) as node:
        pub = node.advertise("chatter", type=bytes)
        listener = subprocess.Popen([exe("listener"), "--topic", "chatter", "--count", str(count), "--timeout", "20",
                                     "--quiet"], env=env_for(transport), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        try:
            assert pub.wait_for_subscribers(1, timeout=10)
            for i in range(count):
                pub.publish(payload(i, 100 + i))
        finally:
            out, err = listener.communicate(timeout=30)
        assert listener.returncode == 0, out + err
        assert out.strip().splitlines()[-1] == "received %d corrupt 0" % count


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_python_reads_cpp_pose_and_cpp_reads_python_pose(domain, transport):
    ferry.load_types(os.path.join(BUILD, "lib", "libdemo_types.so"))
    with ferry.Node("py_pose", config=config(transport)) as node:
        # C++ -> Python
        sub = node.subscribe("pose", type="demo/Pose")
        cpp = subprocess.Popen([exe("pose_example"), "pub", "--count", "3"], env=env_for(transport),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            poses = [sub.take(timeout=10) for _ in range(3)]
        finally:
            out, err = cpp.communicate(timeout=30)
        assert cpp.returncode == 0, err
        assert [p["x"] for p in poses] == [0.0, 1.0, 2.0]
        assert poses[2] == {"frame": "map", "x": 2.0, "y": 4.0, "theta": pytest.approx(0.2), "covariance": [0.5, 0.0, 0.5]}
        sub.close()
        # Python -> C++
        pub = node.advertise("pose", type="demo/Pose")
        cpp = subprocess.Popen([exe("pose_example"), "sub", "--count", "2"], env=env_for(transport),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert pub.wait_for_subscribers(1, timeout=10)
            for i in range(2):
                pub.publish({"frame": "odom", "x": 10.0 + i, "y": 0.5, "theta": 1.0, "covariance": [1.0] * 9})
        finally:
            out, err = cpp.communicate(timeout=30)
        assert cpp.returncode == 0, out + err
        assert "pose in odom: x=10.0 y=0.5 theta=1.00 (9 covariance terms)" in out
        assert "pose in odom: x=11.0" in out
