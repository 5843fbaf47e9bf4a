"""Read a Kafka topic back exactly (byte for byte) for the end-to-end tests.

Usage (run with the rig venv's python, or through ci/rig/consume.sh which
creates the venv first):

  consume.py --bootstrap 127.0.0.1:PORT --topic T [--expect N] [--timeout S]
             [--from-beginning] [--until-end] [--exact [--linger S]]
             [--ready-file PATH] [--recv-time]
  consume.py --bootstrap 127.0.0.1:PORT --topic T --follow [--from-beginning]

Default mode prints every message as one JSON line on stdout:
  {"partition": P, "offset": O, "key": <str or null>, "headers": {..},
   "value_b64": "<raw bytes, base64>", "value": <UTF-8 text or null>,
   "timestamp_ms": <Kafka message timestamp or null>}
  plus "key_b64" when the key is not valid UTF-8, and "recv_ms" (host clock
  when the message was received) with --recv-time. Header values are UTF-8
  strings, null, or {"b64": ...} for non-UTF-8 bytes; a header name given more
  than once maps to a list of values.

Exit status: 0 when --expect N messages were read (or, without --expect, when
the timeout passed or --until-end reached the end); 3 when the timeout passed
first; 5 when --exact saw more than N messages within --linger seconds after
the N-th; 2 on usage errors; 4 on a Kafka error that ends consumption.

Where reading starts: --from-beginning reads every partition from its first
offset; otherwise only what is produced after the consumer has caught up with
the end of every partition (reported on stderr as "ready", and by creating
--ready-file). --until-end stops once every partition has been read to its
end (partition-EOF events). The consumer never creates the topic:
it waits for it to appear (and picks up partitions added later). No offsets
are committed.

--follow prints records as they arrive, one block per message (pretty JSON
when the value is JSON), until interrupted (Ctrl-C exits 0).
"""

import argparse
import base64
import json
import os
import signal
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

METADATA_RECHECK_S = 1.0


def log(msg):
    print(f"consume: {msg}", file=sys.stderr, flush=True)


def utf8_or_none(data):
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def header_value(data):
    if data is None:
        return None
    text = utf8_or_none(data)
    return text if text is not None else {"b64": base64.b64encode(data).decode("ascii")}


def message_to_dict(msg, recv_time):
    headers = {}
    for name, value in msg.headers() or []:
        value = header_value(value)
        if name in headers:
            prev = headers[name]
            headers[name] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            headers[name] = value
    key = msg.key()
    value = msg.value()
    ts_type, ts = msg.timestamp()
    out = {
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": utf8_or_none(key),
        "headers": headers,
        "value_b64": base64.b64encode(value).decode("ascii") if value is not None else None,
        "value": utf8_or_none(value),
        "timestamp_ms": ts if ts_type != 0 else None,
    }
    if key is not None and out["key"] is None:
        out["key_b64"] = base64.b64encode(key).decode("ascii")
    if recv_time:
        out["recv_ms"] = int(time.time() * 1000)
    return out


def format_block(msg):
    """Pretty form for --follow: a header line and the value."""
    ts_type, ts = msg.timestamp()
    when = time.strftime("%H:%M:%S", time.localtime(ts / 1000)) + f".{ts % 1000:03d}" if ts_type else "-"
    key = msg.key()
    key_text = utf8_or_none(key) if key is not None else None
    if key is not None and key_text is None:
        key_text = "b64:" + base64.b64encode(key).decode("ascii")
    title = f"── {msg.topic()} [{msg.partition()}] @{msg.offset()}  key={key_text if key is not None else '-'}  {when}"
    hdrs = msg.headers() or []
    if hdrs:
        title += "  headers=" + json.dumps({n: header_value(v) for n, v in hdrs}, ensure_ascii=False)
    value = msg.value()
    if value is None:
        body = "(null value)"
    else:
        text = utf8_or_none(value)
        if text is None:
            body = f"(not UTF-8, {len(value)} bytes) b64:" + base64.b64encode(value).decode("ascii")
        else:
            try:
                body = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            except ValueError:
                body = text
    return f"{title}\n{body}\n"


class Reader:
    """Manually assigned consumer of every partition of one topic.

    Where the end of a partition is, is learnt from partition-EOF events,
    never from ListOffsets: tansu 0.6.0 answers ListOffsets(latest) with the
    last batch's base offset + 1, which lies inside the last batch.
    """

    def __init__(self, args, conf=None):
        """conf: librdkafka properties that replace the ones below (a caller
        that reads through broker faults quiets librdkafka's log)."""
        self.args = args
        self.topic = args.topic
        self.consumer = Consumer(
            dict({
                "bootstrap.servers": args.bootstrap,
                # Unique group, never committed: every run reads independently.
                "group.id": f"jk-consume-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "allow.auto.create.topics": False,
                "check.crcs": True,
                # Short fetch wait keeps the read-back latency low and measurable.
                "fetch.wait.max.ms": 50,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "receive.message.max.bytes": 100 * 1024 * 1024,
                "topic.metadata.refresh.interval.ms": 1000,
                "reconnect.backoff.max.ms": 500,
                "log_level": 3,
            }, **(conf or {}))
        )
        self.assigned = set()
        self.eof = set()  # partitions read up to their current end
        self.last_meta = 0.0
        self.assigned_once = False
        # From the end: read (and drop) up to the end of every partition first.
        self.draining = not args.from_beginning
        self.ready = False

    def refresh_assignment(self):
        """Assign partitions of the topic not yet assigned (topic may not exist yet)."""
        now = time.monotonic()
        if now - self.last_meta < METADATA_RECHECK_S and self.assigned_once:
            return
        self.last_meta = now
        try:
            md = self.consumer.list_topics(self.topic, timeout=2)
        except KafkaException as exc:
            log(f"metadata: {exc}")
            return
        tmd = md.topics.get(self.topic)
        if tmd is None or tmd.error is not None or not tmd.partitions:
            if self.draining and not self.assigned_once:
                # Not created yet: everything it will hold comes after us.
                self.draining = False
                self.set_ready(f"topic {self.topic} does not exist yet; will read it from its beginning")
            return
        new = [p for p in sorted(tmd.partitions) if p not in self.assigned]
        if not new:
            return
        tps = []
        for p in new:
            start = OFFSET_BEGINNING
            if self.draining and not self.assigned_once:
                # A lower bound of the end (see the class comment); the drain
                # reads on to the real end.
                low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5, cached=False)
                start = max(low, high) if high > 0 else OFFSET_BEGINNING
            # Partitions that appear later were created after we started:
            # read them from their beginning.
            tps.append(TopicPartition(self.topic, p, start))
            self.assigned.add(p)
        self.consumer.incremental_assign(tps)
        if self.assigned_once:
            log(f"{len(tps)} new partition(s) of {self.topic} assigned")
        self.assigned_once = True
        if not self.draining:
            self.set_ready(f"{len(tps)} partition(s) of {self.topic} assigned from the beginning")

    def set_ready(self, how):
        if self.ready:
            return
        self.ready = True
        log(f"ready: {how}")
        if self.args.ready_file:
            with open(self.args.ready_file, "w") as f:
                f.write("ready\n")

    def at_end(self):
        return self.ready and self.assigned and self.eof >= self.assigned

    def poll(self, timeout):
        self.refresh_assignment()
        if not self.assigned_once:
            time.sleep(min(timeout, 0.1))
            return None
        msg = self.consumer.poll(timeout)
        if msg is None:
            return None
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                self.eof.add(msg.partition())
                if self.draining and self.eof >= self.assigned:
                    self.draining = False
                    self.set_ready(f"{len(self.assigned)} partition(s) of {self.topic} read to their end")
                return None
            if err.fatal():
                log(f"fatal error: {err}")
                raise SystemExit(4)
            log(f"error (continuing): {err}")
            return None
        self.eof.discard(msg.partition())
        if self.draining:
            return None  # produced before "ready": not ours to print
        return msg

    def close(self):
        self.consumer.close()


def run_lines(args):
    reader = Reader(args)
    deadline = time.monotonic() + args.timeout
    count = 0
    extra_deadline = None
    status = 0
    out = sys.stdout
    try:
        while True:
            now = time.monotonic()
            if extra_deadline is not None:
                if now >= extra_deadline:
                    break
            elif now >= deadline:
                if args.expect is not None and count < args.expect:
                    log(f"timeout after {args.timeout}s: {count} of {args.expect} messages")
                    status = 3
                break
            if args.until_end and reader.at_end() and (args.expect is None or count >= args.expect):
                break
            limit = (extra_deadline if extra_deadline is not None else deadline) - now
            msg = reader.poll(max(0.0, min(0.2, limit)))
            if msg is None:
                continue
            count += 1
            out.write(json.dumps(message_to_dict(msg, args.recv_time), ensure_ascii=False) + "\n")
            out.flush()
            if args.expect is not None and count > args.expect:
                log(f"--exact: more than {args.expect} messages (offset {msg.offset()} of partition {msg.partition()})")
                status = 5
            if args.expect is not None and count == args.expect and not args.until_end:
                if args.exact:
                    extra_deadline = time.monotonic() + args.linger
                else:
                    break
    finally:
        reader.close()
    log(f"{count} message(s)")
    return status


def run_follow(args):
    reader = Reader(args)
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    log(f"following {args.topic} on {args.bootstrap} (Ctrl-C to stop)")
    try:
        while not stop:
            msg = reader.poll(0.2)
            if msg is not None:
                sys.stdout.write(format_block(msg) + "\n")
                sys.stdout.flush()
    finally:
        reader.close()
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--expect", type=int, help="exit 0 after this many messages")
    ap.add_argument("--timeout", type=float, default=30.0, help="give up after S seconds (default 30)")
    ap.add_argument("--from-beginning", action="store_true")
    ap.add_argument("--until-end", action="store_true", help="stop at the end offsets seen at assignment")
    ap.add_argument("--exact", action="store_true", help="with --expect: fail (5) on more than N messages")
    ap.add_argument("--linger", type=float, default=2.0, help="--exact: seconds to watch for extra messages")
    ap.add_argument("--ready-file", help="created once partitions are assigned")
    ap.add_argument("--recv-time", action="store_true", help='add "recv_ms" to each line')
    ap.add_argument("--follow", action="store_true", help="pretty-print records until interrupted")
    args = ap.parse_args()
    if args.exact and args.expect is None:
        ap.error("--exact needs --expect")
    sys.exit(run_follow(args) if args.follow else run_lines(args))


if __name__ == "__main__":
    main()
