"""The Python benchmark script still runs: tiny counts, every cell measured, targets reported,
nothing left behind. (A smoke test of the script, not a measurement.)"""
import os
import re
import subprocess
import sys

from conftest import BUILD, SOURCE, objects_of

SCRIPT = os.path.join(SOURCE, "bindings", "python", "benchmarks", "bench.py")


def test_bench_script_measures_every_cell_and_reports_the_targets():
    child = subprocess.Popen([sys.executable, SCRIPT, "--build", BUILD, "--iterations", "30", "--repeat", "1",
                              "--placement", "none"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = child.communicate(timeout=240)
    assert child.returncode == 0, err
    rows = re.findall(r"^\| none \| (64 B|4 MiB) \| (publish/take|zero copy) \| ([\d.]+) \| ([\d.]+) \|", out, re.M)
    assert [(size, api) for size, api, _, _ in rows] == [
        ("64 B", "publish/take"), ("64 B", "zero copy"), ("4 MiB", "zero copy")], out
    for _, _, cpp, py in rows:
        assert float(cpp) > 0 and float(py) > 0
    assert re.search(r"^none: Python publish/take adds [+-][\d.]+ us at 64 B \(target <= 2 us: (met|MISSED)\)", out, re.M), out
    # bench.py runs in a domain of its own, named after its pid, and removes it.
    assert objects_of("bench_py_%d" % child.pid) == []
