"""In-process benchmark of the jobcomp/kafka plugin: bench/host_bench.c loads the
plugin like slurmctld and calls log_record back to back; this script drives it
per scenario, watches the plugin's spool to learn when every record was
acknowledged by Kafka (or, with the broker down, built and spooled), samples
the host's memory and CPU, and writes one JSON file per scenario.

Usage (rig venv's python: numpy comes with matplotlib):
  run_inproc.py --plugin SO --release 22.05.8 --work DIR --out DIR
                [--tansu HOST:PORT] SCENARIO...
Scenarios: up down slow onecore onecore-perf script100k paced-up paced-down
paced-slow paced-10 paced-100 paced-1000 scale-10k scale-100k scale-1m spool-full backlog-1m
(see SCENARIOS below). Records N, workload and broker come from the table;
--records-scale F multiplies every N (quick trial runs); --rounds R splits every
scenario not marked single into R interleaved runs of N/R records, merged.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np

# Broker down: memory is measured at least this long after the first record
# (the plugin's STALLED_AFTER is 2 s; see measure below).
OUTAGE_SETTLE_S = 5.0

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
SPOOL = "jobcomp_kafka_spool"
MAGIC = 0x4A4B5331
HEADER = 32
# Entry kinds (src/spool.rs): a record's JSON text, acknowledged ids, and the
# text as a zstd frame (records spooled during an outage), whose body is the
# topic, the text's length (u32) and the frame.
KIND_PAYLOAD, KIND_ACK, KIND_COMPRESSED = 2, 3, 4
DEAD_PORT = 59099
DRAIN_PORT = 59112  # --drain-port: where tansu starts late in backlog-*

# name: broker (up | down | slow), records, workload, options
SCENARIOS = {
    # The three broker conditions, same workload and size.
    "up": dict(broker="up", records=100_000, workload="mix"),
    "down": dict(broker="down", records=100_000, workload="mix"),
    "slow": dict(broker="slow", records=100_000, workload="mix", rtt_ms=50),
    # Everything (hot path, delivery thread, librdkafka) on one core.
    # It starts 1 s after init, as a burst in slurmctld meets a producer that
    # has connected long before (issue #13's one-core target is the pipeline's
    # rate, not the producer's start: up, which does not wait, shows that).
    "onecore": dict(broker="up", records=100_000, workload="mix", cpus="1", settle_ms=1000),
    # The same once more under `perf record -e cpu-clock`: where the delivery
    # thread's time goes (its figures are not used for anything else).
    "onecore-perf": dict(broker="up", records=50_000, workload="mix", cpus="1", settle_ms=1000, perf=True,
                         single=True),
    # Every job has a 100 KiB batch script (read and sent by the delivery thread).
    "script100k": dict(broker="up", records=5_000, workload="script100k", single=True),
    # slurmctld's cadence (a record every 5 ms, not back to back): the hot
    # path then pays for cold caches and for waking the delivery thread.
    "paced-up": dict(broker="up", records=4_000, workload="mix", rate=200),
    "paced-down": dict(broker="down", records=4_000, workload="mix", rate=200),
    "paced-slow": dict(broker="slow", records=4_000, workload="mix", rate=200, rtt_ms=50),
    # CPU per record, per thread, at 10, 100 and 1000 records/s (issue #13): the
    # caller starts 1 s after init (the producer connected, the plugin's threads
    # idle), per-thread CPU from the first call until every record was acked.
    "paced-10": dict(broker="up", records=250, workload="mix", rate=10, settle_ms=1000, min_records=50),
    "paced-100": dict(broker="up", records=1_500, workload="mix", rate=100, settle_ms=1000),
    "paced-1000": dict(broker="up", records=8_000, workload="mix", rate=1000, settle_ms=1000),
    # The same as up / paced-up with JobCompParams metrics_file: log_record's
    # time histogram on the hot path (TSC reads, relaxed adds), the file
    # rewritten every second. Interleaved with the others in the same run.
    "up-metrics": dict(broker="up", records=100_000, workload="mix", metrics=True),
    "paced-up-metrics": dict(broker="up", records=4_000, workload="mix", rate=200, metrics=True),
    # Backlog growth with the broker down.
    "scale-10k": dict(broker="down", records=10_000, workload="mix", fini=True, single=True),
    "scale-100k": dict(broker="down", records=100_000, workload="mix", fini=True, single=True),
    "scale-1m": dict(broker="down", records=1_000_000, workload="mix", fini=True, single=True),
    # Issue #25: memory through an outage that fills the spool. spool_max_mb=64
    # fills like the default 4096 does, 64 times sooner: past it, records are
    # held in memory (at most 100,000), then lost with an error line. The
    # metrics file says how many of each when memory is measured. Paced below
    # the pipeline's rate: the limit is checked as the hot path spools a
    # snapshot, and a burst far ahead of the delivery thread would be taken
    # whole before its texts (the bulk of the spool) are written.
    "spool-full": dict(broker="down", records=250_000, workload="mix", fini=True, single=True, metrics=True,
                       params="spool_max_mb=64", rate=4000),
    # Broker down for 1M records, then up: how long until all are acknowledged.
    # The host on CPU 0; tansu, started once everything is spooled, on CPU 1.
    "backlog-1m": dict(broker="later", records=1_000_000, workload="mix", cpus="0", broker_cpus="1",
                       single=True),
    # Issue #25: librdkafka alone, the limit of the two above. The plugin's
    # producer (examples/rdk_alone.rs: kafka::Producer, its defaults, key and
    # header) sends the texts a plugin run built for the mix workload (10,000,
    # the pool), cycled, on the same core and broker, none of the plugin's work.
    "rdk-alone": dict(broker="up", records=100_000, workload="mix", cpus="1", alone=True, single=True),
    "rdk-alone-1m": dict(broker="up", records=1_000_000, workload="mix", cpus="0", alone=True, single=True),
}

RELEASES = {
    # release: (layout header tag, API define, SLURM_VERSION_NUMBER)
    "22.05.8": ("22_05_8", "-DJK_API_22_05", 0x160508),
    "24.11.5": ("24_11_3", "-DJK_API_23_02", 0x180B05),
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')} inproc] {msg}", file=sys.stderr, flush=True)


def read_metrics(path):
    """The plugin's metrics file as {name: value}, series with labels summed
    under their name (records_waiting per topic and event, ...)."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                name, value = line.rsplit(" ", 1)
                name = name.split("{", 1)[0]
                out[name] = out.get(name, 0.0) + float(value)
    except FileNotFoundError:
        pass
    return out


def build_host(release, work):
    tag, api, version = RELEASES[release]
    out = os.path.join(work, f"host-{tag}", "slurmctld-bench")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cmd = [
        "cc", "-O2", "-g", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
        "-include", os.path.join(REPO, f"slurm-headers/layout_{tag}.h"), api,
        f"-DEXPECTED_VERSION={version:#x}", os.path.join(HERE, "host_bench.c"),
        "-o", out + ".tmp", "-rdynamic", "-ldl", "-lpthread",
    ]
    subprocess.run(cmd, check=True)
    os.rename(out + ".tmp", out)
    return out


class SpoolWatch:
    """Counts Payload entries (records built by the delivery thread) and acknowledged
    ids (Ack entries) in the plugin's .dlv spool files, reading only new entries.
    Files are kept open: a retired (deleted) segment can still be read to its end."""

    def __init__(self, state):
        self.dir = os.path.join(state, SPOOL)
        self.files = {}  # name -> [fd, offset]
        self.payloads = 0
        self.acks = 0
        # Payload bodies are <topic length u16 LE><topic><JSON text>.
        self.payload_body_bytes = 0
        self.json_bytes = 0
        self.compressed = 0
        self.json_like = 0  # payloads whose text starts with '{'

    def scan(self):
        try:
            names = [n for n in os.listdir(self.dir) if n.endswith(".dlv")]
        except FileNotFoundError:
            names = []
        for name in names:
            if name not in self.files:
                try:
                    self.files[name] = [os.open(os.path.join(self.dir, name), os.O_RDONLY), 0]
                except FileNotFoundError:
                    continue
        for entry in self.files.values():
            fd, offset = entry
            size = os.fstat(fd).st_size
            while offset + HEADER <= size:
                head = os.pread(fd, HEADER + 2, offset)
                if len(head) < HEADER or int.from_bytes(head[0:4], "little") != MAGIC:
                    break
                body = int.from_bytes(head[8:12], "little")
                total = (HEADER + body + 7) // 8 * 8
                if offset + HEADER + body > size:
                    break
                if head[4] == KIND_PAYLOAD:
                    self.payloads += 1
                    self.payload_body_bytes += body
                    if body >= 2:
                        tlen = int.from_bytes(head[HEADER:HEADER + 2], "little")
                        self.json_bytes += max(0, body - 2 - tlen)
                        first = os.pread(fd, 1, offset + HEADER + 2 + tlen) if body > 2 + tlen else b""
                        self.json_like += first == b"{"
                elif head[4] == KIND_COMPRESSED and body >= 6:
                    self.payloads += 1
                    self.compressed += 1
                    self.payload_body_bytes += body
                    tlen = int.from_bytes(head[HEADER:HEADER + 2], "little")
                    # The JSON text's own length, as stored before its frame.
                    self.json_bytes += int.from_bytes(os.pread(fd, 4, offset + HEADER + 2 + tlen), "little")
                    self.json_like += 1
                elif head[4] == KIND_ACK:
                    self.acks += body // 8
                offset += total
            entry[1] = offset

    def close(self):
        for fd, _ in self.files.values():
            os.close(fd)
        self.files = {}


def spool_files(path):
    """Bytes on disk (allocated blocks) and apparent size of the spool's files, by suffix."""
    out = {}
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        names = []
    for name in names:
        try:
            st = os.stat(os.path.join(path, name))
        except FileNotFoundError:
            continue
        key = name.rsplit(".", 1)[-1] if name.endswith((".snap", ".dlv")) else "other"
        d = out.setdefault(key, {"files": 0, "disk_bytes": 0, "apparent_bytes": 0})
        d["files"] += 1
        d["disk_bytes"] += st.st_blocks * 512
        d["apparent_bytes"] += st.st_size
    return out


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def read_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "Threads", "RssAnon", "RssFile"):
                    out[k] = int(v.split()[0])
    except FileNotFoundError:
        pass
    return out


def proc_cpu_s(pid, tid=None):
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_snapshot(pid):
    """{tid: [name, ns on a CPU]} of every thread of pid (schedstat's first field)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = [name, int(f.read().split()[0])]
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return out


def thread_cpu(snapshot, pid):
    """CPU seconds per thread name in a thread_snapshot, summed over threads of
    that name: main (the caller), librdkafka (rdk:*), jobcomp_kafka (ours:
    jobcomp_kafka, the delivery thread, and jobcomp_sync, fdatasync, together)."""
    out = {}
    for tid, (name, ns) in snapshot.items():
        key = "main" if int(tid) == pid else ("librdkafka" if name.startswith("rdk:")
                                              else "jobcomp_kafka" if name.startswith("jobcomp_") else name)
        out[key] = out.get(key, 0.0) + ns / 1e9
    return out


def fine_group(name, tid, pid):
    """main (the caller: hot path + the host's own loop), jobcomp_kafka (delivery),
    jobcomp_sync (fdatasync), librdkafka (rdk:*), or other."""
    if int(tid) == pid:
        return "main"
    if name.startswith("rdk:"):
        return "librdkafka"
    if name in ("jobcomp_kafka", "jobcomp_sync"):
        return name
    return "other"


def thread_delta(before, after, pid):
    """CPU seconds per fine group between two snapshots (threads born later count whole)."""
    out = {"main": 0.0, "jobcomp_kafka": 0.0, "jobcomp_sync": 0.0, "librdkafka": 0.0, "other": 0.0}
    for tid, (name, ns) in after.items():
        used = ns - before.get(tid, [name, 0])[1]
        out[fine_group(name, tid, pid)] += used / 1e9
    return out


def dist(values_ns):
    a = np.asarray(values_ns, dtype=np.float64)
    if a.size == 0:
        return {}
    q = np.percentile(a, [50, 90, 99, 99.9], method="inverted_cdf")
    return {
        "n": int(a.size), "mean_us": float(a.mean() / 1e3), "p50_us": float(q[0] / 1e3),
        "p90_us": float(q[1] / 1e3), "p99_us": float(q[2] / 1e3), "p999_us": float(q[3] / 1e3),
        "max_us": float(a.max() / 1e3),
    }


class Broker:
    def __init__(self, kind, tansu, rtt_ms, work):
        self.kind, self.proc = kind, None
        if kind == "up":
            if not tansu:
                raise SystemExit("scenario needs --tansu HOST:PORT")
            self.bootstrap = tansu
        elif kind == "down":
            self.bootstrap = f"127.0.0.1:{DEAD_PORT}"
        elif kind == "later":
            # Nothing listens there until run_once starts tansu (backlog scenario).
            self.bootstrap = f"127.0.0.1:{DRAIN_PORT}"
        elif kind == "slow":
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "mock_broker.py"), "--rtt", str(rtt_ms)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            line = self.proc.stdout.readline().split()
            if len(line) != 2 or line[0] != "bootstrap":
                raise SystemExit(f"mock broker did not start: {line}")
            self.bootstrap = line[1]
        else:
            raise ValueError(kind)

    def create_topic(self, topic):
        """Creates the run's topic first: the pipeline time then does not include
        the broker creating it on the first record."""
        if self.kind not in ("up", "later"):
            # down: nothing to create; slow: the mock cluster does not answer
            # CreateTopics in time, and creates topics on first use quickly.
            return
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})
        try:
            admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(15)
        except Exception as exc:  # the plugin's first produce creates it then
            if "TOPIC_ALREADY_EXISTS" not in str(exc):  # backlog-*: the plugin was first
                log(f"create topic {topic}: {exc}")

    def stop(self):
        if self.proc:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def fresh_state(state):
    """The state directory of a workload is reused (its batch scripts take a while
    to write); what the plugin left there is removed before every run."""
    os.makedirs(state, exist_ok=True)
    for name in os.listdir(state):
        if name.startswith("jobcomp_kafka"):
            path = os.path.join(state, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)


def port_free(port):
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def in_ephemeral_range(port):
    low, high = ephemeral_range()
    return low <= port <= high


def drain_port_below_ephemeral_range():
    """A free port for the late broker below the kernel's ephemeral range. Inside
    it, the plugin's own reconnect attempts to the closed port can end up
    connected to themselves (TCP simultaneous open: source port = destination
    port) and hold the port, and tansu then cannot bind it (seen: AddrInUse)."""
    low, _ = ephemeral_range()
    for port in range(low - 1, max(1024, low - 4000), -1):
        if port_free(port):
            return port
    raise RuntimeError("no free port below the ephemeral range for the late broker")


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_late_broker(spec, args, work):
    """backlog-*: tansu on the scenario's port, pinned to its CPUs, now.
    Returns (its directory, the time it was started, the time its port accepted)."""
    tdir = os.path.join(work, "tansu-late")
    os.makedirs(tdir, exist_ok=True)
    cmd = [os.path.join(REPO, "ci/rig/tansu.sh"), "start", tdir, str(DRAIN_PORT)]
    if spec.get("broker_cpus"):
        cmd = ["taskset", "-c", spec["broker_cpus"]] + cmd
    t_start = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "tansu-late.log"), "w"))
    return tdir, t_start, time.monotonic()


def stop_late_broker(tdir):
    subprocess.run([os.path.join(REPO, "ci/rig/tansu.sh"), "stop", tdir], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def perf_report(data, out_txt, plugin):
    """The delivery thread's profile: top symbols, percentages of its own samples."""
    cmd = ["perf", "report", "-i", data, "--comm", "jobcomp_kafka", "--percentage", "relative", "--stdio",
           "--no-children", "-F", "overhead,dso,sym"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    with open(out_txt, "w") as f:
        f.write(f"# {' '.join(cmd)}\n# plugin: {plugin}\n")
        f.write(res.stdout if res.returncode == 0 else f"# perf report failed ({res.returncode}):\n{res.stderr}")
    top = []
    for line in res.stdout.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0].endswith("%") and not line.startswith("#"):
            try:
                pct = float(parts[0][:-1])
            except ValueError:
                continue
            top.append({"pct": pct, "dso": parts[1], "symbol": parts[3].strip().removesuffix("-      -").strip()})
    samples = None
    for line in res.stdout.splitlines():
        if line.startswith("# Samples:"):
            samples = line.split(":", 1)[1].split()[0]  # "# Samples: 448  of event 'cpu-clock'"
    return {"top": top[:20], "samples": samples, "ok": res.returncode == 0}


PAYLOADS_DIR = None


def prebuilt_payloads(args, host):
    """The JSON texts of the mix pool (10,000 records), as the plugin builds
    them: one host run with the broker down until every record is spooled, its
    .dlv files kept (once per invocation)."""
    global PAYLOADS_DIR
    if PAYLOADS_DIR:
        return PAYLOADS_DIR
    out = os.path.join(args.work, "payloads")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    state = os.path.join(args.work, "state-mix")
    fresh_state(state)
    loc = os.path.join(args.work, "payloads.conf")
    with open(loc, "w") as f:
        f.write(f"bootstrap.servers=127.0.0.1:{DEAD_PORT}\n")
    cmd = [host, args.plugin, "--state", state, "--loc", loc, "--params", "topic=bench-payloads",
           "--cluster", "bench", "--records", "10000", "--workload", "mix", "--interactive"]
    with open(os.path.join(args.work, "payloads.log"), "w") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            if not proc.stdout.readline().startswith("hot-done "):
                raise SystemExit("payloads: host failed")
            watch = SpoolWatch(state)
            deadline = time.monotonic() + args.timeout
            while watch.payloads < 10000 and time.monotonic() < deadline:
                watch.scan()
                time.sleep(0.1)
            watch.close()
            if watch.payloads < 10000:
                raise SystemExit(f"payloads: only {watch.payloads} spooled")
            for n in os.listdir(os.path.join(state, SPOOL)):
                if n.endswith(".dlv"):
                    shutil.copy(os.path.join(state, SPOOL, n), out)
            proc.stdin.write("quit\n")
            proc.stdin.flush()
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    fresh_state(state)
    PAYLOADS_DIR = out
    return out


def run_alone(name, spec, args, host, records):
    """librdkafka alone (examples/rdk_alone.rs) on the scenario's core."""
    if not args.rdk_alone:
        raise SystemExit(f"{name} needs --rdk-alone (cargo build --release --example rdk_alone)")
    payloads = prebuilt_payloads(args, host)
    broker = Broker("up", args.tansu, 0, args.work)
    topic = f"bench-{name}-{int(time.time())}"
    broker.create_topic(topic)
    cmd = ["taskset", "-c", spec["cpus"], args.rdk_alone, "--bootstrap", broker.bootstrap, "--topic", topic,
           "--spool", payloads, "--records", str(records)]
    log(f"{name}: librdkafka alone, {records} prebuilt mix payloads, cpus {spec['cpus']}")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=args.timeout)
    raw = json.loads(out.stdout.strip().splitlines()[-1])
    log(f"{name}: {raw['rate']:.0f}/s ({raw['seconds']:.1f} s), librdkafka "
        f"{raw['threads_cpu_s'].get('librdkafka', 0) * 1e6 / records:.1f} us/record, main "
        f"{raw['threads_cpu_s'].get('main', 0) * 1e6 / records:.1f} us/record")
    return raw


def run_once(name, spec, args, host, records, tag):
    """One host process. Returns the raw observations."""
    if spec.get("alone"):
        return run_alone(name, spec, args, host, records)
    work = os.path.join(args.work, f"{name}{tag}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    state = os.path.join(args.work, f"state-{spec['workload']}")
    fresh_state(state)
    late = spec["broker"] == "later"
    global DRAIN_PORT
    if late and (in_ephemeral_range(DRAIN_PORT) or not port_free(DRAIN_PORT)):
        DRAIN_PORT = drain_port_below_ephemeral_range()
    broker = Broker(spec["broker"], args.tansu, spec.get("rtt_ms", 0), work)
    loc = os.path.join(work, "jobcomp_kafka.conf")
    with open(loc, "w") as f:
        f.write(f"bootstrap.servers={broker.bootstrap}\n")
        # Defaults otherwise (linger.ms, queue sizes, message.timeout.ms): what a site gets.
        for prop in spec.get("props", []):
            f.write(prop + "\n")
    os.chmod(loc, 0o600)
    topic = f"bench-{name}{tag}-{int(time.time())}"
    if not late:
        broker.create_topic(topic)
    lat_path, kinds_path = os.path.join(work, "lat.u32"), os.path.join(work, "kinds.u8")
    params = f"topic={topic}"
    if spec.get("metrics"):
        params += f",metrics_file={os.path.join(work, 'jobcomp_kafka.prom')},metrics_interval=1"
    if spec.get("params"):
        params += "," + spec["params"]
    cmd = [host, args.plugin, "--state", state, "--loc", loc, "--params", params,
           "--cluster", "bench", "--records", str(records), "--workload", spec["workload"],
           "--lat", lat_path, "--kinds", kinds_path, "--interactive"]
    if spec.get("rate"):
        cmd += ["--rate", str(spec["rate"])]
    if spec.get("settle_ms"):
        cmd += ["--settle", str(spec["settle_ms"])]
    if spec.get("cpus"):
        cmd = ["taskset", "-c", spec["cpus"]] + cmd
    perf_data = os.path.join(work, "perf.data")
    if spec.get("perf"):
        # perf itself is not pinned; it follows the host and all its threads.
        cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-o", perf_data, "--"] + cmd
    log(f"{name}{tag}: {records} records, workload {spec['workload']}, broker {spec['broker']} ({broker.bootstrap})"
        + (f", cpus {spec['cpus']}" if spec.get("cpus") else "") + (f", {spec['rate']}/s" if spec.get("rate") else "")
        + (", under perf record" if spec.get("perf") else ""))
    stderr = open(os.path.join(work, "host.log"), "w")
    t_launch = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
    raw = {"records": records, "bootstrap": broker.bootstrap, "topic": topic}
    timeline = []
    stop_sampling = threading.Event()
    # The host's pid (under perf, proc is perf: the host's pid comes with hot-done).
    target = {"pid": None if spec.get("perf") else proc.pid}

    def sample():
        while not stop_sampling.is_set():
            pid = target["pid"]
            if pid is None:
                stop_sampling.wait(0.1)
                continue
            st = read_status(pid)
            try:
                cpu = proc_cpu_s(pid)
            except (FileNotFoundError, ProcessLookupError):
                break
            if st:
                timeline.append((time.monotonic(), st.get("VmRSS", 0), cpu))
            stop_sampling.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    watch = SpoolWatch(state)
    tansu_dir = None
    try:
        line = proc.stdout.readline()
        if not line.startswith("hot-done "):
            raise SystemExit(f"{name}: host failed: {line!r}; see {stderr.name}")
        hot = json.loads(line.split(" ", 1)[1])
        pid = target["pid"] = hot["pid"]
        raw["hot"] = hot
        t0 = hot["t0_mono_ns"] / 1e9
        deadline = time.monotonic() + args.timeout
        if late:
            # Phase 1: everything built and spooled while nothing listens.
            while time.monotonic() < deadline:
                watch.scan()
                if watch.payloads >= records:
                    break
                time.sleep(0.05)
            raw["spooled_s"] = time.monotonic() - t0
            raw["spooled_complete"] = watch.payloads >= records
            raw["acks_before_broker"] = watch.acks
            before = thread_snapshot(pid)
            tansu_dir, t_bstart, t_bup = start_late_broker(spec, args, work)
            broker.create_topic(topic)
            raw["drain"] = {"broker_start_to_listening_s": t_bup - t_bstart,
                            "broker_start_to_topic_s": time.monotonic() - t_bstart}
            t0 = t_bstart  # pipeline and progress from here: the drain
            deadline = time.monotonic() + args.timeout
        # Done: every record acknowledged (broker up/slow/later) or built and spooled (down).
        want_acks = spec["broker"] != "down"
        done_at = None
        progress = []  # (time since the first call, or since the broker started, records done)
        # spool-full: records past the spool's limit are built in memory (no
        # payload in the spool) or lost; the metrics file counts both.
        by_metrics = spec.get("metrics") and "spool_max_mb" in spec.get("params", "")
        while time.monotonic() < deadline:
            watch.scan()
            got = watch.acks if want_acks else watch.payloads
            if by_metrics:
                mx = read_metrics(os.path.join(work, "jobcomp_kafka.prom"))
                got = int(mx.get("slurm_jobcomp_kafka_records_waiting", 0)
                          + mx.get("slurm_jobcomp_kafka_records_lost_total", 0))
            now = time.monotonic()
            if not progress or progress[-1][1] != got:
                progress.append((now - t0, got))
            if got >= records:
                done_at = now
                break
            time.sleep(0.02)
        raw["progress"] = progress
        raw["complete"] = done_at is not None
        raw["acks"], raw["payloads"] = watch.acks, watch.payloads
        raw["payload_json_bytes"], raw["payload_body_bytes"] = watch.json_bytes, watch.payload_body_bytes
        raw["payloads_json_like"] = watch.json_like
        raw["payloads_compressed"] = watch.compressed
        if done_at is None:
            log(f"{name}: NOT complete after {args.timeout} s (acks {watch.acks}, payloads {watch.payloads})")
            done_at = time.monotonic()
        raw["pipeline_s"] = done_at - t0
        after = thread_snapshot(pid)
        raw["threads_cpu_s"] = thread_cpu(after, pid)
        if late:
            d = raw["drain"]
            d["threads_cpu_s"] = thread_delta(before, after, pid)
            d["drain_s"] = done_at - t0
            first = next((t for t, c in progress if c > 0), None)
            d["first_ack_s"] = first
        else:
            # From the first call (threads_at_start, read by the host) until done.
            raw["threads_cpu_loop_s"] = thread_delta(hot.get("threads_at_start", {}), after, pid)
        if spec.get("broker") == "down" and not late:
            # Memory through an outage is measured once the plugin knows it is
            # one: after 2 s without an acknowledgement it cuts the texts it
            # kept in memory for a quick hand-over (src/plugin/mod.rs,
            # STALLED_AFTER); a 100k burst is spooled in less than that.
            time.sleep(max(0.0, t0 + OUTAGE_SETTLE_S - time.monotonic()))
        proc.stdin.write("measure\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        raw["measure"] = json.loads(line.split(" ", 1)[1])
        raw["spool_bytes"] = dir_bytes(os.path.join(state, SPOOL))
        if spec.get("metrics"):
            raw["metrics_at_measure"] = read_metrics(os.path.join(work, "jobcomp_kafka.prom"))
        raw["spool_files"] = spool_files(os.path.join(state, SPOOL))
        if spec.get("fini"):
            proc.stdin.write("fini\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            raw["fini"] = json.loads(line.split(" ", 1)[1])
            try:
                raw["state_file_bytes"] = os.path.getsize(os.path.join(state, "jobcomp_kafka_state"))
            except FileNotFoundError:
                raw["state_file_bytes"] = 0
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        proc.wait(120)
    finally:
        stop_sampling.set()
        sampler.join()
        watch.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()
        broker.stop()
        if tansu_dir:
            stop_late_broker(tansu_dir)
    if spec.get("perf"):
        raw["perf"] = perf_report(perf_data, os.path.join(args.out, f"inproc-{name}.perf.txt"), args.plugin)
    raw["lat"] = np.fromfile(lat_path, dtype=np.uint32)
    raw["kinds"] = np.fromfile(kinds_path, dtype=np.uint8)
    t_first = hot["t0_mono_ns"] / 1e9
    raw["timeline"] = [(t - t_first, rss, cpu) for t, rss, cpu in timeline]
    raw["launch_to_first_call_s"] = hot["t0_mono_ns"] / 1e9 - t_launch
    # Keep the disk clean: spool and state files of big runs are large.
    if not args.keep:
        fresh_state(state)
        shutil.rmtree(work, ignore_errors=True)
    m = raw["measure"]
    log(f"{name}{tag}: hot p50 {np.percentile(raw['lat'], 50) / 1e3:.2f} us p99 "
        f"{np.percentile(raw['lat'], 99) / 1e3:.2f} us, hot rate {hot['hot_rate']:.0f}/s, "
        f"pipeline {records / raw['pipeline_s']:.0f}/s ({'complete' if raw['complete'] else 'INCOMPLETE'}), "
        f"cpu/rec {m['cpu_per_record_us']:.1f} us, hwm {m['hwm_kb'] / 1024:.0f} MiB, "
        f"RssAnon {m.get('rss_anon_kb', 0) / 1024:.0f} MiB RssFile {m.get('rss_file_kb', 0) / 1024:.0f} MiB, "
        f"spool {raw['spool_bytes'] / 2**20:.0f} MiB" + (f", fini {raw['fini']['fini_ms']:.0f} ms" if "fini" in raw else "")
        + (f", drain {raw['drain']['drain_s']:.1f} s (first ack {raw['drain']['first_ack_s']} s)" if late else ""))
    return raw


def summarize(name, spec, raws, args):
    """Merges the rounds of one scenario into its result JSON (same keys as one run)."""
    if spec.get("alone"):
        result = dict(raws[0], scenario=name, spec=spec)
        with open(os.path.join(args.out, f"inproc-{name}.json"), "w") as f:
            json.dump(result, f, indent=1)
        return result
    n = sum(r["records"] for r in raws)
    lat = np.concatenate([r["lat"] for r in raws])
    kinds = np.concatenate([r["kinds"] for r in raws])
    sum_call_s = float(lat.sum()) / 1e9
    loop_s = sum(r["hot"]["loop_wall_s"] for r in raws)
    hot_cpu = sum(r["hot"]["main_thread_cpu_s"] for r in raws)
    cpu = sum(r["measure"]["cpu_s"] for r in raws)
    threads = {}
    for r in raws:
        for k, v in r["threads_cpu_s"].items():
            threads[k] = threads.get(k, 0.0) + v
    first = raws[0]
    result = {
        "scenario": name, "spec": spec, "rounds": len(raws), "records": n,
        "topics": [r["topic"] for r in raws], "bootstrap": [r["bootstrap"] for r in raws],
        "hot": {
            "hot_rate": n / sum_call_s, "loop_rate": n / loop_s, "loop_wall_s": loop_s,
            "main_thread_cpu_s": hot_cpu, "hwm_kb": max(r["hot"]["hwm_kb"] for r in raws),
            "rss_kb": max(r["hot"]["rss_kb"] for r in raws),
            "failed_calls": sum(r["hot"]["failed_calls"] for r in raws),
            "timer_overhead_p50_ns": first["hot"]["timer_overhead"]["p50_ns"],
            "init_ms": [r["hot"]["init_ms"] for r in raws],
        },
        "complete": all(r["complete"] for r in raws),
        "acks": sum(r["acks"] for r in raws), "payloads": sum(r["payloads"] for r in raws),
        "pipeline_s": sum(r["pipeline_s"] for r in raws),
        "threads_cpu_s": threads,
        "measure": {
            "cpu_s": cpu, "cpu_per_record_us": cpu / n * 1e6,
            "rss_kb": max(r["measure"]["rss_kb"] for r in raws),
            "hwm_kb": max(r["measure"]["hwm_kb"] for r in raws),
            # RssAnon (heap, stacks: the plugin's bookkeeping) apart from
            # RssFile (mapped files: the spool's pages in the page cache).
            "rss_anon_kb": max(r["measure"].get("rss_anon_kb", 0) for r in raws),
            "rss_file_kb": max(r["measure"].get("rss_file_kb", 0) for r in raws),
            "log_errors": sum(r["measure"]["log_errors"] for r in raws),
        },
        "spool_bytes": max(r["spool_bytes"] for r in raws),
        "lat": dist(lat),
    }
    if "metrics_at_measure" in first:
        result["metrics_at_measure"] = first["metrics_at_measure"]
    result["pipeline_rate"] = n / result["pipeline_s"]
    # Steady rate: records done between 10% and 90% of each run, over the time that took
    # (excludes start-up and the last delivery reports, served at the next poll tick).
    done, spent = 0, 0.0
    for r in raws:
        prog, m = r.get("progress", []), r["records"]
        t10 = next((t for t, c in prog if c >= 0.1 * m), None)
        t90 = next((t for t, c in prog if c >= 0.9 * m), None)
        if t10 is not None and t90 is not None and t90 > t10:
            done += 0.8 * m
            spent += t90 - t10
    result["pipeline_rate_steady"] = done / spent if spent else None
    if "fini" in first:
        result["fini"] = first["fini"]
        result["state_file_bytes"] = first["state_file_bytes"]
    names = ["short", "array", "longnodes", "script100k", "nobatch"]
    result["lat_by_kind"] = {names[k]: dist(lat[kinds == k]) for k in range(len(names)) if (kinds == k).any()}
    # Per-call time along the (first) run: percentiles per block of 1% of the calls (backlog growth).
    l0 = first["lat"]
    block = max(1000, len(l0) // 100)
    result["lat_blocks"] = [
        {"first": int(i), "p50_us": float(np.percentile(l0[i:i + block], 50) / 1e3),
         "p99_us": float(np.percentile(l0[i:i + block], 99) / 1e3),
         "mean_us": float(l0[i:i + block].mean() / 1e3)}
        for i in range(0, len(l0), block)
    ]
    result["timeline"] = first["timeline"]
    result["progress"] = first.get("progress", [])[:2000]  # (s since the first call, records done), first run
    # Per-thread CPU from the first call until every record was done (acked), all rounds.
    if all("threads_cpu_loop_s" in r for r in raws):
        loop = {}
        for r in raws:
            for k, v in r["threads_cpu_loop_s"].items():
                loop[k] = loop.get(k, 0.0) + v
        per = {k: v * 1e6 / n for k, v in loop.items()}
        # The hot path: time inside the calls (no syscall, no lock wait: wall ~ CPU);
        # the main thread's own CPU also holds the host's loop and its sleeps.
        per["hot_path"] = sum_call_s * 1e6 / n
        per["plugin_total"] = per["hot_path"] + sum(per[k] for k in ("jobcomp_kafka", "jobcomp_sync", "librdkafka"))
        per["process_total"] = sum(v for k, v in per.items() if k not in ("hot_path", "plugin_total"))
        result["threads_cpu_loop_s"] = loop
        result["cpu_per_record_loop_us"] = per
        result["loop_to_done_s"] = sum(r["pipeline_s"] for r in raws)
    # The spool before fini (broker down): bytes on disk by file kind, and the
    # JSON text of the Payload entries.
    result["spool_files"] = first.get("spool_files", {})
    result["payload_json_bytes"] = first.get("payload_json_bytes")
    result["payload_body_bytes"] = first.get("payload_body_bytes")
    result["payloads_json_like"] = first.get("payloads_json_like")
    result["payloads_compressed"] = first.get("payloads_compressed")
    result["payloads_first"] = first.get("payloads")
    for key in ("drain", "spooled_s", "spooled_complete", "acks_before_broker", "perf"):
        if key in first:
            result[key] = first[key]
    if "drain" in first:
        d = result["drain"]
        d["records_per_s"] = n / d["drain_s"] if d["drain_s"] else None
        d["cpu_per_record_us"] = {k: v * 1e6 / n for k, v in d["threads_cpu_s"].items()}
    with open(os.path.join(args.out, f"inproc-{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    lt = result["lat"]
    log(f"{name}: {n} records in {len(raws)} round(s): p50 {lt['p50_us']:.2f} us p99 {lt['p99_us']:.2f} us "
        f"p99.9 {lt['p999_us']:.1f} us, hot rate {result['hot']['hot_rate']:.0f}/s, "
        f"pipeline {result['pipeline_rate']:.0f}/s, cpu/rec {result['measure']['cpu_per_record_us']:.1f} us")
    return result


def main():
    global DRAIN_PORT
    ap = argparse.ArgumentParser()
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--release", default="22.05.8")
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tansu")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--records-scale", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=1, help="split each scenario into this many interleaved runs")
    ap.add_argument("--keep", action="store_true", help="keep state directories and raw latencies")
    ap.add_argument("--drain-port", type=int, default=DRAIN_PORT,
                    help="backlog-*: the port nothing listens on until tansu is started there")
    ap.add_argument("--rdk-alone", help="rdk-alone*: the examples/rdk_alone binary")
    ap.add_argument("scenarios", nargs="+")
    args = ap.parse_args()
    for s in args.scenarios:
        if s not in SCENARIOS:
            raise SystemExit(f"unknown scenario {s}; known: {' '.join(SCENARIOS)}")
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    args.plugin = os.path.abspath(args.plugin)
    DRAIN_PORT = args.drain_port
    host = build_host(args.release, args.work)
    # Rounds interleave the scenarios (A B C A B C ...) so that a change of load
    # on the machine hits all of them alike; scenarios marked single run once.
    multi = [s for s in args.scenarios if not SCENARIOS[s].get("single")]
    single = [s for s in args.scenarios if SCENARIOS[s].get("single")]
    raws = {s: [] for s in args.scenarios}
    for k in range(args.rounds):
        for s in multi:
            spec = SCENARIOS[s]
            scale = 1 if spec.get("rate") else args.records_scale
            records = max(spec.get("min_records", 500), int(spec["records"] * scale / args.rounds))
            raws[s].append(run_once(s, spec, args, host, records, f"-r{k + 1}" if args.rounds > 1 else ""))
    for s in single:
        spec = SCENARIOS[s]
        records = max(1000, int(spec["records"] * args.records_scale))
        raws[s].append(run_once(s, spec, args, host, records, ""))
    for s in args.scenarios:
        summarize(s, SCENARIOS[s], raws[s], args)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
