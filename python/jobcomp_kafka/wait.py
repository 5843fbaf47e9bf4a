"""jobcomp-wait: wait for a Slurm job's end in jobcomp/kafka's topics.

    jobcomp-wait -b kafka1:9092 --cluster hpc1 --since @1796641200 4242
    jobcomp-wait -b kafka1:9092 --cluster hpc1 '4243_[0-9]'    # every task of an array
    jobcomp-wait -b kafka1:9092 hpc1:4244+1                     # one het-job component

Prints one JSON line per final record of the job (cluster, topic, partition,
offset, record id, exit status, the record), and exits 0 when every awaited
job COMPLETED, else with the status of the first that did not (exit codes:
jobcomp_kafka.records, docs/consumers.md), 124 when --timeout passes first.

Reading starts, in every partition, at the first message at or after --since
(Kafka's offsets for times), not at the topic's beginning; messages older
than --since are skipped even when a broker answers the time lookup with an
earlier offset. So a job that ended before the waiter started is found as long
as its record is younger than --since.
"""

import argparse
import json
import sys
import time
import uuid
from datetime import timezone

from . import records as R
from .kafka import add_client_args, client_config

DEFAULT_SINCE = "1d"


class KafkaFailure(RuntimeError):
    pass


def _consumer(conf):
    from confluent_kafka import Consumer
    c = dict(conf)
    c.setdefault("group.id", f"jobcomp-wait-{uuid.uuid4()}")  # never joins: partitions are assigned
    c["enable.auto.commit"] = False
    c["enable.auto.offset.store"] = False
    c.setdefault("auto.offset.reset", "earliest")
    c.setdefault("allow.auto.create.topics", False)
    return Consumer(c)


class Waiter:
    """Waits for the final records of one or more JobSpecs in `topics`
    ({topic: cluster}). Library use:

        w = Waiter(conf, {"hpc1": "hpc1"}, since)
        status = w.wait([JobSpec.parse("4242")], timeout=3600, emit=print_fn)
    """

    def __init__(self, conf, topics, since, log=None):
        self.conf = conf
        self.topics = dict(topics)
        self.since = since
        self.since_ms = int(since.timestamp() * 1000)
        self.log = log or (lambda msg: None)
        self.dedup = R.Dedup()
        self.assigned = set()  # topics whose partitions are assigned
        self.skipped_old = 0
        self.duplicates = 0

    def _start_offsets(self, consumer, topic, partitions):
        """TopicPartitions positioned at the first offset at or after since."""
        from confluent_kafka import TopicPartition
        # The high watermarks first: a message produced after them has a
        # higher offset, so "nothing at or after since" starts there and
        # misses nothing produced meanwhile.
        highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        found = consumer.offsets_for_times([TopicPartition(topic, p, self.since_ms) for p in partitions],
                                           timeout=10)
        out = []
        for tp in found:
            if tp.error is not None:
                raise KafkaFailure(f"offsets for times of {topic}/{tp.partition}: {tp.error}")
            off = tp.offset if tp.offset >= 0 else highs[tp.partition]
            out.append(TopicPartition(topic, tp.partition, off))
        return out

    def _assign_new_topics(self, consumer):
        from confluent_kafka import KafkaError
        missing = [t for t in self.topics if t not in self.assigned]
        if not missing:
            return
        md = consumer.list_topics(timeout=10)
        add = []
        for t in missing:
            tm = md.topics.get(t)
            if tm is None or not tm.partitions:
                continue
            if tm.error is not None and tm.error.code() != KafkaError.NO_ERROR:
                continue  # not there (yet): the plugin creates it with its first record
            add += self._start_offsets(consumer, t, sorted(tm.partitions))
            self.assigned.add(t)
            self.log(f"reading topic {t} (cluster {self.topics[t]}), {len(tm.partitions)} partition(s) "
                     f"from {self.since.strftime('%Y-%m-%dT%H:%M:%SZ')}")
        if add:
            consumer.incremental_assign(add)

    def wait(self, specs, timeout=None, emit=None):
        """Exit status (records.EXIT_*) once every spec's records are in, or
        EXIT_TIMEOUT after `timeout` seconds. emit(line_dict, value_bytes) for each final
        record of an awaited job, as it arrives."""
        from confluent_kafka import KafkaError, KafkaException
        comps = [R.Completion(s) for s in specs]
        for s in specs:
            if s.cluster is not None and s.cluster not in self.topics.values():
                raise ValueError(f"{s}: cluster {s.cluster} is none of the clusters read "
                                 f"({', '.join(sorted(set(self.topics.values())))})")
        deadline = None if timeout is None else time.monotonic() + timeout
        consumer = _consumer(self.conf)
        try:
            next_topic_check = 0.0
            while True:
                if all(c.done() for c in comps):
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    for c in comps:
                        if not c.done():
                            self.log(f"timed out: {c.spec} still waiting for {c.pending()}")
                    return R.EXIT_TIMEOUT
                if now >= next_topic_check and len(self.assigned) < len(self.topics):
                    self._assign_new_topics(consumer)
                    next_topic_check = now + 1.0
                wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - now))
                msg = consumer.poll(wait)
                if msg is None:
                    continue
                if msg.error():
                    err = msg.error()
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if err.fatal():
                        raise KafkaFailure(str(err))
                    self.log(f"kafka: {err}")
                    continue
                self._handle(msg, comps, emit)
        except KafkaException as exc:
            raise KafkaFailure(str(exc)) from exc
        finally:
            consumer.close()
        status = R.EXIT_COMPLETED
        for c in comps:
            s = c.status()
            if s != R.EXIT_COMPLETED and status == R.EXIT_COMPLETED:
                status = s
        return status

    def _handle(self, msg, comps, emit):
        ts_type, ts = msg.timestamp()
        if ts_type != 0 and ts >= 0 and ts < self.since_ms:
            self.skipped_old += 1
            return
        topic = msg.topic()
        cluster = self.topics.get(topic, topic)
        rid = R.record_id(msg.headers(), msg.value())
        if self.dedup.seen(cluster, rid):
            self.duplicates += 1
            return
        try:
            rec = R.parse_record(msg.value())
        except ValueError as exc:
            self.log(f"{topic}/{msg.partition()}@{msg.offset()}: not a record ({exc}); skipped")
            return
        for c in comps:
            if c.spec.cluster is not None and c.spec.cluster != cluster:
                continue
            if c.add(rec) and emit is not None:
                emit({"cluster": cluster, "topic": topic, "partition": msg.partition(), "offset": msg.offset(),
                      "record_id": rid, "state": rec.get("state"), "exit_status": R.exit_status(rec.get("state")),
                      "record": rec}, msg.value())


def build_parser():
    p = argparse.ArgumentParser(
        prog="jobcomp-wait",
        description="Wait for Slurm jobs' final records in jobcomp/kafka's topics; exit with a status "
                    "derived from the jobs' states (0 COMPLETED, 10 FAILED, 11 TIMEOUT, 12 CANCELLED, "
                    "13 OUT_OF_MEMORY, 14 NODE_FAIL, 15 PREEMPTED, 16 BOOT_FAIL, 17 DEADLINE, 19 another "
                    "state, 124 --timeout passed, 4 Kafka error, 2 usage).",
        epilog="JOB: JOBID, JOBID_TASK, JOBID_[LIST] (array tasks), JOBID+OFFSET, JOBID+[LIST] (het-job "
               "components), each optionally as CLUSTER:JOB. Without --cluster/--topic, the clusters "
               "named in the JOBs are read (topic = cluster name).")
    add_client_args(p)
    p.add_argument("--since", default=DEFAULT_SINCE, metavar="WHEN",
                   help="read records produced at or after WHEN: @EPOCH, an age (90s, 30m, 2h, 1d) or an "
                        "ISO time (local time without a zone); default %(default)s. Give the job's submit "
                        "time for a job that may have ended long ago")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long (exit 124)")
    p.add_argument("--raw", action="store_true", help="print each record's JSON text only, as published")
    p.add_argument("-q", "--quiet", action="store_true", help="print no records")
    p.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    p.add_argument("jobs", nargs="+", metavar="JOB")
    return p


def main(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    try:
        specs = [R.JobSpec.parse(j) for j in a.jobs]
        topics = R.topic_map(a.cluster, a.topic)
        if not topics:
            named = sorted({s.cluster for s in specs if s.cluster})
            if not named or any(s.cluster is None for s in specs):
                p.error("name the cluster: --cluster NAME, --topic TOPIC, or CLUSTER:JOBID")
            topics = {c: c for c in named}
        conf = client_config(a.bootstrap, a.config, a.props)
        since = R.parse_since(a.since)
    except (ValueError, OSError) as exc:
        p.error(str(exc))

    def log(msg):
        if a.verbose:
            print(f"jobcomp-wait: {msg}", file=sys.stderr, flush=True)

    def emit(line, raw):
        if a.quiet:
            return
        if a.raw:
            sys.stdout.buffer.write(raw.rstrip(b"\0") + b"\n")
            sys.stdout.buffer.flush()
        else:
            print(json.dumps(line, separators=(",", ":")), flush=True)

    w = Waiter(conf, topics, since, log=log)
    log(f"waiting for {', '.join(map(str, specs))} since "
        f"{since.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    try:
        status = w.wait(specs, timeout=a.timeout, emit=emit)
    except KafkaFailure as exc:
        print(f"jobcomp-wait: Kafka error: {exc}", file=sys.stderr)
        return R.EXIT_KAFKA
    except ValueError as exc:
        p.error(str(exc))
    except KeyboardInterrupt:
        return 130
    if status == R.EXIT_TIMEOUT:
        print(f"jobcomp-wait: timed out after {a.timeout:g} s", file=sys.stderr)
    log(f"exit {status} (skipped {w.skipped_old} older than --since, {w.duplicates} duplicate(s))")
    return status


if __name__ == "__main__":
    sys.exit(main())
