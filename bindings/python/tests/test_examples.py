"""examples/python as real processes: talker.py -> listener.py, and the C++ camera publisher's
4 MiB frames into camera_consumer.py as NumPy arrays over shm."""
import os
import subprocess
import sys

from conftest import SOURCE, config, exe

EXAMPLES = os.path.join(SOURCE, "examples", "python")


def run_pair(first, second, env, timeout=60):
    a = subprocess.Popen(first, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(second, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out_b, err_b = b.communicate(timeout=timeout)
    out_a, err_a = a.communicate(timeout=timeout)
    return (a.returncode, out_a, err_a), (b.returncode, out_b, err_b)


def test_talker_py_to_listener_py(domain):
    env = dict(os.environ, FERRY_CONFIG=config("uds"))
    (rc_t, out_t, err_t), (rc_l, out_l, err_l) = run_pair(
        [sys.executable, os.path.join(EXAMPLES, "talker.py"), "--count", "5", "--rate", "100"],
        [sys.executable, os.path.join(EXAMPLES, "listener.py"), "--count", "5", "--timeout", "20"], env)
    assert rc_t == 0, err_t
    assert rc_l == 0, err_l
    assert "listener.py: 'hello 4'" in out_l
    assert out_l.strip().splitlines()[-1] == "received 5 lost 0"


def test_camera_consumer_reads_cpp_frames_as_numpy(domain):
    env = dict(os.environ, FERRY_CONFIG=os.path.join(SOURCE, "examples", "camera", "camera.toml"))
    (rc_p, out_p, err_p), (rc_c, out_c, err_c) = run_pair(
        [exe("camera_publisher"), "--count", "30", "--rate", "60", "--wait-subscribers", "1"],
        [sys.executable, os.path.join(EXAMPLES, "camera_consumer.py"), "--count", "30", "--timeout", "20"], env)
    assert rc_p == 0, out_p + err_p
    assert rc_c == 0, out_c + err_c
    assert "30 frames" in out_c and "torn 0" in out_c, out_c
