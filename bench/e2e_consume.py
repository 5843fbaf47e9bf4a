"""Consumer side of the end-to-end latency benchmark: notes when each job
record becomes readable.

Creates the topic first (so that neither the plugin's first record nor this
consumer waits for auto-creation), then reads every partition from the
beginning and writes one JSON line per message:
  {"recv_ns": <CLOCK_REALTIME when poll() returned it>, "ts_ms": <Kafka message
   timestamp (producer's create time)>, "partition": P, "offset": O,
   "jobid": <the record's "jobid" or null>, "len": <value bytes>}

Usage: e2e_consume.py --bootstrap HOST:PORT --topic T --expect N --out FILE
                      [--timeout S] [--ready-file PATH]
Runs until N records with a jobid were read or the timeout passed (exit 0 /
3). The fetch wait is short (5 ms) so that the read-back adds little and
the same to every plugin.
"""

import argparse
import json
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def log(msg):
    print(f"e2e_consume: {msg}", file=sys.stderr, flush=True)


def create_topic(bootstrap, topic, partitions, props):
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3, **props})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    try:
        futures[topic].result(15)
        log(f"created topic {topic} ({partitions} partition(s))")
    except KafkaException as exc:
        log(f"create topic {topic}: {exc} (continuing)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--ready-file")
    ap.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                    help="extra librdkafka property of the consumer (e.g. security.protocol=SSL)")
    args = ap.parse_args()
    props = dict(p.split("=", 1) for p in args.property)

    create_topic(args.bootstrap, args.topic, args.partitions, props)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"jk-bench-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "allow.auto.create.topics": False,
            "fetch.wait.max.ms": 5,
            "fetch.error.backoff.ms": 5,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "receive.message.max.bytes": 100 * 1024 * 1024,
            "log_level": 3,
            **props,
        }
    )
    deadline = time.monotonic() + args.timeout
    partitions = []
    while time.monotonic() < deadline:
        md = consumer.list_topics(args.topic, timeout=5)
        t = md.topics.get(args.topic)
        if t is not None and t.error is None and t.partitions:
            partitions = sorted(t.partitions)
            break
        time.sleep(0.1)
    if not partitions:
        log("topic never appeared")
        return 3
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write("ready\n")
    log(f"reading {args.topic} partitions {partitions}")
    seen = 0
    with open(args.out, "w") as out:
        while seen < args.expect and time.monotonic() < deadline:
            msg = consumer.poll(0.05)
            if msg is None:
                continue
            recv_ns = time.time_ns()
            if msg.error():
                log(f"error: {msg.error()}")
                continue
            value = msg.value() or b""
            jobid = None
            try:
                jobid = json.loads(value).get("jobid")
            except (ValueError, AttributeError):
                pass
            ts_type, ts_ms = msg.timestamp()
            out.write(json.dumps({"recv_ns": recv_ns, "ts_ms": ts_ms if ts_type else None,
                                  "partition": msg.partition(), "offset": msg.offset(),
                                  "jobid": jobid, "len": len(value)}) + "\n")
            if jobid is not None:
                seen += 1
    consumer.close()
    log(f"read {seen} record(s)")
    return 0 if seen >= args.expect else 3


if __name__ == "__main__":
    sys.exit(main())
