#!/usr/bin/env python3
"""camera_consumer.py: receives examples/camera's 4 MiB frames as NumPy arrays with zero copies
(on shm the array is the shared-memory chunk itself) and prints fps and latency.
   FERRY_CONFIG=examples/camera/camera.toml <build>/bin/camera_publisher &
   FERRY_CONFIG=examples/camera/camera.toml PYTHONPATH=<build>/python \\
       python3 examples/python/camera_consumer.py --count 100

The C++ frame (examples/camera/camera_frame.hpp) is a 32-byte header (frame u64, timestamp_ns
i64 CLOCK_MONOTONIC, width, height, bytes_per_pixel, reserved u32) then the RGBA pixels."""
import argparse
import statistics
import time

import numpy as np

import ferry

HEADER = np.dtype([("frame", "<u8"), ("timestamp_ns", "<i8"), ("width", "<u4"), ("height", "<u4"),
                   ("bytes_per_pixel", "<u4"), ("reserved", "<u4")])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topic", default="camera/frames")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each frame")
    args = ap.parse_args()
    with ferry.Node("py_camera") as node:
        sub = node.subscribe(args.topic, type=ferry.Raw("camera/Frame"))
        print("camera_consumer.py: '%s' over %s, domain %s" % (args.topic, sub.transport, node.domain), flush=True)
        latencies, torn, first = [], 0, None
        for _ in range(args.count):
            with sub.take_sample(timeout=args.timeout) as sample:
                now = time.monotonic_ns()
                head = np.frombuffer(sample, dtype=HEADER, count=1)[0]
                h, w, bpp = int(head["height"]), int(head["width"]), int(head["bytes_per_pixel"])
                pixels = np.frombuffer(sample, dtype=np.uint8, count=h * w * bpp, offset=HEADER.itemsize)
                image = pixels.reshape(h, w, bpp)  # a view into the chunk: no copy
                # Row y starts with (frame + y) mod 256 (camera::row_marker): a whole frame, not a torn one.
                expected = (int(head["frame"]) + np.arange(h)) % 256
                torn += int(not np.array_equal(image[:, 0, 0], expected.astype(np.uint8)))
                latencies.append((now - int(head["timestamp_ns"])) / 1e3)
                first = first or now
                del head, pixels, image
        seconds = (time.monotonic_ns() - first) / 1e9
        fps = (len(latencies) - 1) / seconds if seconds > 0 else 0.0
        print("camera_consumer.py: %d frames, %.1f fps, latency p50 %.0f us max %.0f us, torn %d, lost %d"
              % (len(latencies), fps, statistics.median(latencies), max(latencies), torn, sub.lost))
        return 0 if torn == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
