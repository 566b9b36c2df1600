#!/usr/bin/env python3
"""Plots ferry-bench results: one-way p50 latency against message size, one line per transport,
ferry solid and the raw OS mechanism dashed, both axes logarithmic.

    tools/bench/plot.py results.json [results.png]

Uses matplotlib if it is installed (python3-matplotlib), else gnuplot (gnuplot-nox); says so and
exits 1 if neither is there.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

COLORS = {"shm": "#1f77b4", "uds": "#ff7f0e", "mq": "#2ca02c", "pipe": "#d62728"}
TITLE = "ferry-bench: one-way latency (p50), ferry solid, raw OS mechanism dashed"


def series(records):
    """{(transport, kind): [(size, p50_us), ...]} from the successful records, sorted by size."""
    out = {}
    for r in records:
        if r.get("p50_us") is None:
            continue
        out.setdefault((r["transport"], r["kind"]), []).append((r["size"], r["p50_us"]))
    return {k: sorted(v) for k, v in out.items()}


def size_label(size):
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return "%d MiB" % (size >> 20)
    if size >= 1 << 10 and size % (1 << 10) == 0:
        return "%d KiB" % (size >> 10)
    return "%d B" % size


def plot_matplotlib(data, sizes, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for (transport, kind), points in sorted(data.items()):
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", linestyle="-" if kind == "ferry" else "--",
                color=COLORS.get(transport), label="%s %s" % (transport, kind))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([size_label(s) for s in sizes])
    ax.set_xlabel("message size")
    ax.set_ylabel("one-way latency p50 (us)")
    ax.set_title(TITLE, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def plot_gnuplot(data, sizes, png):
    with tempfile.TemporaryDirectory() as tmp:
        plots = []
        for (transport, kind), points in sorted(data.items()):
            path = os.path.join(tmp, "%s_%s.dat" % (transport, kind))
            with open(path, "w") as f:
                for size, p50 in points:
                    f.write("%d %g\n" % (size, p50))
            plots.append("'%s' using 1:2 with linespoints dt %d lw 2 pt 7 lc rgb '%s' title '%s %s'" % (
                path, 1 if kind == "ferry" else 2, COLORS.get(transport, "black"), transport, kind))
        tics = ", ".join('"%s" %d' % (size_label(s), s) for s in sizes)
        script = "\n".join([
            "set terminal pngcairo size 900,550 font ',10'" if has_pngcairo() else "set terminal png size 900,550",
            "set output '%s'" % png,
            "set title '%s'" % TITLE,
            "set logscale xy",
            "set xtics (%s)" % tics,
            "set xlabel 'message size'",
            "set ylabel 'one-way latency p50 (us)'",
            "set grid",
            "set key top left",
            "plot " + ", \\\n     ".join(plots),
        ])
        subprocess.run(["gnuplot"], input=script.encode(), check=True)


def has_pngcairo():
    probe = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    return "pngcairo" in probe.stdout + probe.stderr


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    src = sys.argv[1]
    png = sys.argv[2] if len(sys.argv) > 2 else os.path.splitext(src)[0] + ".png"
    with open(src) as f:
        data = series(json.load(f))
    if not data:
        sys.exit("plot.py: no successful measurements in %s" % src)
    sizes = sorted({size for points in data.values() for size, _ in points})
    try:
        import matplotlib  # noqa: F401
        plot_matplotlib(data, sizes, png)
    except ImportError:
        if not shutil.which("gnuplot"):
            print("plot.py: neither python3-matplotlib nor gnuplot is installed; "
                  "apt-get install python3-matplotlib (or gnuplot-nox)", file=sys.stderr)
            return 1
        plot_gnuplot(data, sizes, png)
    print("plot.py: wrote %s" % png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
