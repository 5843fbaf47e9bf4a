"""Tiny Kafka producer for rig self-tests (the mirror of consume.py).

Usage (with the rig venv's python; `ci/rig/tansu.sh python` prints it):

  produce.py --bootstrap 127.0.0.1:PORT --topic T < messages.jsonl

Each stdin line is a JSON object with any of:
  "value_b64" (raw bytes) or "value" (text, encoded as UTF-8); neither = null value
  "key_b64" or "key" (same rule); "headers": {name: text | {"b64": ...} | null}
  "partition": P (default: the partitioner chooses)
Every message is produced with acks=all and waited for; one JSON line per
delivery is printed: {"partition": P, "offset": O} (in input order).
Exit 1 when any delivery fails.
"""

import argparse
import base64
import json
import sys

from confluent_kafka import Producer


def as_bytes(obj, name):
    if obj.get(name + "_b64") is not None:
        return base64.b64decode(obj[name + "_b64"])
    if obj.get(name) is not None:
        return obj[name].encode("utf-8")
    return None


def header_bytes(value):
    if value is None:
        return None
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return value.encode("utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    args = ap.parse_args()

    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "message.timeout.ms": 15000,
            "linger.ms": 0,
        }
    )
    results = []
    failed = []

    def on_delivery(index):
        def report(err, msg):
            if err is not None:
                failed.append((index, str(err)))
                results[index] = {"error": str(err)}
            else:
                results[index] = {"partition": msg.partition(), "offset": msg.offset()}

        return report

    for line in sys.stdin:
        if not line.strip():
            continue
        obj = json.loads(line)
        kwargs = {
            "value": as_bytes(obj, "value"),
            "key": as_bytes(obj, "key"),
            "on_delivery": on_delivery(len(results)),
        }
        if obj.get("headers"):
            kwargs["headers"] = [(k, header_bytes(v)) for k, v in obj["headers"].items()]
        if obj.get("partition") is not None:
            kwargs["partition"] = obj["partition"]
        results.append(None)
        producer.produce(args.topic, **kwargs)
        producer.poll(0)
    remaining = producer.flush(20)
    for r in results:
        print(json.dumps(r if r is not None else {"error": "not delivered"}))
    if remaining or failed:
        print(f"produce: {len(failed)} failed, {remaining} undelivered", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
