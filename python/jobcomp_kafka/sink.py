"""jobcomp-sink: jobcomp/kafka's records into PostgreSQL, one row per job event.

    jobcomp-sink -b kafka1:9092 --cluster hpc1 --cluster hpc2 --cluster gpu1 \\
        --dsn 'postgresql://jobcomp@db1/jobhistory' --create-table

Reads every partition of the topics, from the offsets committed for the
consumer group --group (default jobcomp-sink), and
upserts every record into TABLE (default jobcomp_event; definition: TABLE_SQL,
docs/consumers.md) on (cluster, record_id), so a record delivered twice (the
plugin re-sends one that was in flight at a crash with the same
jobcomp.record_id) or read again changes nothing. Offsets are committed to
Kafka only after the database transaction holding the batch has committed
(enable.auto.commit=false): a sink killed at any point and restarted reads
again what it had not committed and loses nothing.
"""

import argparse
import json
import os
import signal
import sys
import time

from . import records as R
from .kafka import add_client_args, client_config

DEFAULT_TABLE = "jobcomp_event"

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS {table} (
    cluster         text        NOT NULL,
    record_id       text        NOT NULL,
    event           text        NOT NULL CHECK (event IN ('finish', 'start')),
    jobid           bigint      NOT NULL,
    array_job_id    bigint,
    array_task_id   bigint,
    het_job_id      bigint,
    het_job_offset  bigint,
    sluid           text,
    job_name        text,
    username        text,
    user_id         bigint,
    groupname       text,
    group_id        bigint,
    account         text,
    partition       text,
    qos             text,
    state           text,
    exit_code       text,
    derived_ec      text,
    submit_time     timestamptz,
    start_time      timestamptz,
    end_time        timestamptz,
    elapsed         bigint,
    total_cpus      bigint,
    total_nodes     bigint,
    cpu_hours       double precision,
    nodes           text,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    record          jsonb       NOT NULL,
    ingested_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, record_id)
);
CREATE INDEX IF NOT EXISTS {index_prefix}_job ON {table} (cluster, jobid);
CREATE INDEX IF NOT EXISTS {index_prefix}_end ON {table} (end_time);
"""

# docs/consumers.md's example: CPU hours per account in the last full
# calendar week (Monday to Monday, in the session's TimeZone), from the
# finish records. Each job counts once per finish record: a requeued job's
# runs each have one.
CPU_HOURS_LAST_WEEK_SQL = """
SELECT account, sum(cpu_hours) AS cpu_hours, count(*) AS jobs
FROM {table}
WHERE event = 'finish'
  AND end_time >= date_trunc('week', now()) - interval '1 week'
  AND end_time <  date_trunc('week', now())
GROUP BY account
ORDER BY cpu_hours DESC
"""

# Typed columns filled from the record: column -> (record key, converter).
_INT = ("jobid", "array_job_id", "array_task_id", "het_job_id", "het_job_offset", "user_id", "group_id",
        "elapsed", "total_cpus", "total_nodes")
_TEXT = ("sluid", "job_name", "username", "groupname", "account", "partition", "qos", "state", "exit_code",
         "derived_ec", "nodes")
_TIMES = {"submit_time": "@submit", "start_time": "@start", "end_time": "@end"}
COLUMNS = (("cluster", "record_id", "event") + _INT + _TEXT + tuple(_TIMES) +
           ("cpu_hours", "topic", "kafka_partition", "kafka_offset", "record"))


def _int(v):
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _text(v):
    return v if isinstance(v, str) else None


def row_of(cluster, topic, partition, offset, headers, value):
    """The table row (a dict by column) of one message; ValueError when the
    message is not a record."""
    rec = R.parse_record(value)
    if not isinstance(rec.get("jobid"), int):
        raise ValueError("no integer jobid")
    row = {"cluster": cluster, "record_id": R.record_id(headers, value),
           # start records (25.05+) have state null and no @end
           "event": "start" if rec.get("state") is None and "@end" not in rec else "finish"}
    for k in _INT:
        row[k] = _int(rec.get(k))
    for k in _TEXT:
        row[k] = _text(rec.get(k))
    for col, key in _TIMES.items():
        row[col] = R.record_time(rec.get(key))
    ch = rec.get("cpu_hours")
    row["cpu_hours"] = float(ch) if isinstance(ch, (int, float)) and not isinstance(ch, bool) else None
    row.update(topic=topic, kafka_partition=partition, kafka_offset=offset, record=rec)
    return row


def _ident(name):
    import re
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", name):
        raise ValueError(f"bad table name {name!r}")
    return name


class Sink:
    def __init__(self, conf, topics, dsn, table=DEFAULT_TABLE, group="jobcomp-sink", batch=500, log=None):
        self.conf = dict(conf)
        self.topics = dict(topics)
        self.dsn = dsn
        self.table = _ident(table)
        self.group = group
        self.batch = batch
        self.log = log or (lambda msg: None)
        self.inserted = 0
        self.unchanged = 0
        self.skipped = 0
        self.batches = 0
        self.stop = False
        self.assigned = set()
        cols = ", ".join(COLUMNS)
        vals = ", ".join(f"%({c})s" for c in COLUMNS)
        self.insert_sql = (f"INSERT INTO {self.table} ({cols}) VALUES ({vals}) "
                           f"ON CONFLICT (cluster, record_id) DO NOTHING")

    def create_table(self, conn):
        prefix = self.table.replace(".", "_")
        with conn.transaction():
            conn.execute(TABLE_SQL.format(table=self.table, index_prefix=prefix))

    def _consumer(self):
        from confluent_kafka import Consumer
        c = dict(self.conf)
        c["group.id"] = self.group
        c["enable.auto.commit"] = False
        c["enable.auto.offset.store"] = False
        c.setdefault("auto.offset.reset", "earliest")
        c.setdefault("allow.auto.create.topics", False)
        return Consumer(c)

    def _assign_new(self, consumer):
        """Assign every partition of the topics not assigned yet (a topic
        appears with its cluster's first record), at the group's committed
        offset, or the beginning for a partition the group never committed.
        The sink assigns partitions itself rather than joining the group:
        one sink per group reads every topic (a second one would only repeat
        the same upserts)."""
        from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition
        md = consumer.list_topics(timeout=10)
        new = []
        for t in sorted(self.topics):
            tm = md.topics.get(t)
            if tm is None or tm.error is not None:
                continue
            new += [TopicPartition(t, p) for p in sorted(tm.partitions) if (t, p) not in self.assigned]
        if not new:
            return 0
        # The committed offsets, asked explicitly (and again while the group
        # coordinator is not ready, as on a new Kafka cluster): a partition is
        # never read from a guessed position.
        deadline = time.monotonic() + 120
        while True:
            try:
                committed = consumer.committed(new, timeout=10)
                if not any(tp.error is not None for tp in committed):
                    break
                why = [str(tp.error) for tp in committed if tp.error is not None][0]
            except KafkaException as exc:
                why = str(exc)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"committed offsets of group {self.group}: {why}")
            self.log(f"committed offsets not available yet ({why}); asking again")
            time.sleep(1)
        add = [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
               for tp in committed]
        consumer.incremental_assign(add)
        self.assigned.update((tp.topic, tp.partition) for tp in add)
        self.log(f"reading {len(add)} more partition(s): "
                 + ", ".join(f"{tp.topic}/{tp.partition}@{tp.offset if tp.offset >= 0 else 'start'}" for tp in add))
        return len(add)

    def write_batch(self, conn, msgs):
        """One transaction for the batch's rows; returns the offsets to commit
        ({(topic, partition): next offset})."""
        from psycopg.types.json import Jsonb
        rows, offsets = [], {}
        for m in msgs:
            offsets[(m.topic(), m.partition())] = m.offset() + 1
            cluster = self.topics.get(m.topic(), m.topic())
            try:
                row = row_of(cluster, m.topic(), m.partition(), m.offset(), m.headers(), m.value())
            except ValueError as exc:
                self.skipped += 1
                self.log(f"{m.topic()}/{m.partition()}@{m.offset()}: not a record ({exc}); skipped")
                continue
            row["record"] = Jsonb(row["record"])
            rows.append(row)
        with conn.transaction():
            with conn.cursor() as cur:
                n = 0
                for row in rows:
                    cur.execute(self.insert_sql, row)
                    n += cur.rowcount
                _test_stall(self.batches + 1)
        self.inserted += n
        self.unchanged += len(rows) - n
        return offsets

    def run(self, max_idle=None):
        """Consume until stopped (SIGTERM/SIGINT), or until max_idle seconds
        pass without a message."""
        import psycopg
        from confluent_kafka import KafkaError, TopicPartition
        consumer = self._consumer()
        conn = psycopg.connect(self.dsn, autocommit=True)
        try:
            idle_since = time.monotonic()
            next_check = 0.0
            while not self.stop:
                if time.monotonic() >= next_check:
                    if self._assign_new(consumer):
                        idle_since = time.monotonic()  # idle counts from the first chance to read
                    next_check = time.monotonic() + 10.0
                msgs = consumer.consume(self.batch, 1.0)
                good = []
                for m in msgs:
                    if m.error():
                        if m.error().code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                            self.log(f"kafka: {m.error()}")
                        if m.error().fatal():
                            raise RuntimeError(str(m.error()))
                        continue
                    good.append(m)
                if not good:
                    if max_idle is not None and time.monotonic() - idle_since >= max_idle:
                        break
                    continue
                idle_since = time.monotonic()
                offsets = self.write_batch(conn, good)
                # After COMMIT only: a crash before this line means the batch
                # is read again and the upsert makes that harmless.
                consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                asynchronous=False)
                self.batches += 1
                self.log(f"batch {self.batches}: {len(good)} message(s), {self.inserted} row(s) inserted so far, "
                         f"{self.unchanged} already there")
        finally:
            consumer.close()
            conn.close()


def _test_stall(batch_no):
    """Test hook (tests/consumers): with JK_SINK_TEST_STALL_BATCH=N and
    JK_SINK_TEST_STALL_FILE=PATH, the sink stops inside batch N's transaction
    after its INSERTs, before COMMIT, creates PATH and sleeps, to be killed
    there. Unset in production."""
    n = os.environ.get("JK_SINK_TEST_STALL_BATCH")
    path = os.environ.get("JK_SINK_TEST_STALL_FILE")
    if n and path and int(n) == batch_no:
        with open(path, "w") as f:
            f.write(str(os.getpid()))
        while True:
            time.sleep(60)


def build_parser():
    p = argparse.ArgumentParser(
        prog="jobcomp-sink",
        description="Consume jobcomp/kafka topics into PostgreSQL: one row per job event, upserted on "
                    "(cluster, record id); Kafka offsets committed after the database commit.")
    add_client_args(p)
    p.add_argument("--dsn", default=os.environ.get("JOBCOMP_SINK_DSN"),
                   help="PostgreSQL connection string (libpq: 'postgresql://user@host/db' or "
                        "'host=... dbname=...'); default JOBCOMP_SINK_DSN")
    p.add_argument("--table", default=DEFAULT_TABLE, help="table name, optionally schema.table (default %(default)s)")
    p.add_argument("--create-table", action="store_true", help="create the table and its indexes if missing")
    p.add_argument("--group", default="jobcomp-sink", help="Kafka consumer group (default %(default)s)")
    p.add_argument("--batch", type=int, default=500, help="messages per transaction (default %(default)s)")
    p.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                   help="stop after this long without a message (default: run until SIGTERM)")
    p.add_argument("-v", "--verbose", action="store_true", help="a line per batch on stderr")
    return p


def main(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    try:
        topics = R.topic_map(a.cluster, a.topic)
        if not topics:
            p.error("name the topics: --cluster NAME or --topic TOPIC[=CLUSTER]")
        if not a.dsn:
            p.error("no database: --dsn or JOBCOMP_SINK_DSN")
        conf = client_config(a.bootstrap, a.config, a.props)
        if a.batch < 1:
            p.error("--batch must be at least 1")
    except (ValueError, OSError) as exc:
        p.error(str(exc))

    def log(msg):
        if a.verbose:
            print(f"jobcomp-sink: {msg}", file=sys.stderr, flush=True)

    sink = Sink(conf, topics, a.dsn, table=a.table, group=a.group, batch=a.batch, log=log)

    def stop(signum, frame):
        sink.stop = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if a.create_table:
        import psycopg
        with psycopg.connect(a.dsn, autocommit=True) as conn:
            sink.create_table(conn)
    sink.run(max_idle=a.exit_when_idle)
    print(f"jobcomp-sink: {sink.inserted} row(s) inserted, {sink.unchanged} already there, "
          f"{sink.skipped} message(s) not records", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
