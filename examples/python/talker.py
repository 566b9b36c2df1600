#!/usr/bin/env python3
"""talker.py: publishes strings on a topic (the Python twin of examples/talker's idea).
   PYTHONPATH=<build>/python python3 examples/python/talker.py --topic chatter --count 10"""
import argparse
import time

import ferry


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--topic", default="chatter")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--rate", type=float, default=10.0, help="messages per second")
    ap.add_argument("--wait-subscribers", type=int, default=1)
    args = ap.parse_args()
    with ferry.Node("py_talker") as node:
        pub = node.advertise(args.topic, type=str)
        print("talker.py: topic '%s' on %s, domain %s" % (args.topic, pub.transport, node.domain), flush=True)
        if args.wait_subscribers and not pub.wait_for_subscribers(args.wait_subscribers, timeout=30):
            raise SystemExit("talker.py: no subscriber within 30 s")
        for i in range(args.count):
            pub.publish("hello %d" % i)
            print("talker.py: sent 'hello %d'" % i, flush=True)
            time.sleep(1.0 / args.rate)
        pub.flush(5)


if __name__ == "__main__":
    main()
