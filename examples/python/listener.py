#!/usr/bin/env python3
"""listener.py: prints what arrives on a topic: --type string (the default), bytes, int64, ...,
ndarray, a FERRY_TYPE type from a module loaded with --types <lib.so> (e.g. --types
<build>/lib/libdemo_types.so --type demo/Pose), or "any": whatever type the (existing) topic has.
   PYTHONPATH=<build>/python python3 examples/python/listener.py --topic chatter --count 10"""
import argparse

import ferry


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--topic", default="chatter")
    ap.add_argument("--count", type=int, default=0, help="stop after this many (0: until Ctrl-C)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds to wait for each message")
    ap.add_argument("--type", default="string", help='message type, or "any"')
    ap.add_argument("--types", action="append", default=[], help="a type-support module to load")
    args = ap.parse_args()
    for path in args.types:
        ferry.load_types(path)
    with ferry.Node("py_listener") as node:
        sub = node.subscribe(args.topic, type=None if args.type == "any" else args.type)
        print("listener.py: topic '%s' (%s) on %s, domain %s" % (args.topic, sub.type_name or "any type",
                                                                   sub.transport, node.domain), flush=True)
        n = 0
        try:
            while not args.count or n < args.count:
                msg = sub.take(timeout=args.timeout)
                n += 1
                print("listener.py: %r" % (msg,), flush=True)
        except KeyboardInterrupt:
            pass
        print("received %d lost %d" % (n, sub.lost))


if __name__ == "__main__":
    main()
