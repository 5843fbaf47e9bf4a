"""A slow Kafka broker for the benchmarks: librdkafka's mock cluster with a
round-trip delay, hosted in this small process.

librdkafka creates a mock cluster inside any client configured with the
(hidden, test-only) property test.mock.num.brokers; test.mock.broker.rtt adds
a delay to every response of its brokers. The mock brokers listen on loopback
ports any other client (the plugin under test) can connect to; their
addresses come from the cluster's metadata.

Usage (with the rig venv's python, which has confluent-kafka):
  mock_broker.py [--rtt MS] [--brokers N] [--port-file PATH]
Prints "bootstrap HOST:PORT[,HOST:PORT...]" on stdout (and writes it to
--port-file), then runs until stdin is closed or SIGTERM/SIGINT.
"""

import argparse
import os
import signal
import sys
import threading

from confluent_kafka import Producer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtt", type=int, default=0, help="added round-trip delay in ms")
    ap.add_argument("--brokers", type=int, default=1)
    ap.add_argument("--port-file")
    args = ap.parse_args()

    owner = Producer(
        {
            "test.mock.num.brokers": args.brokers,
            "test.mock.broker.rtt": args.rtt,
            "log_level": 3,
        }
    )
    metadata = owner.list_topics(timeout=10)
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in sorted(metadata.brokers.values(), key=lambda b: b.id))
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(bootstrap + "\n")
        os.rename(args.port_file + ".tmp", args.port_file)
    print(f"bootstrap {bootstrap}", flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    def stdin_closed():
        try:
            sys.stdin.read()
        except Exception:
            pass
        done.set()

    threading.Thread(target=stdin_closed, daemon=True).start()
    while not done.wait(0.5):
        owner.poll(0)
    # The cluster goes with its owner.
    del owner


if __name__ == "__main__":
    main()
