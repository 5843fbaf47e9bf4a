"""Helpers of the end-to-end tests: the rigs in ci/rig/ driven from Python.

Both suites use this module: tests/e2e (Slurm 22.05.8 on the host, 24.11.5 in
the Debian trixie chroot) and tests/e2e26 (26.05.5 in the Debian forky chroot,
through tests/e2e26/rig26.py). What differs between Slurm series is a
parameter here (the release of a Cluster, the series of a schema check), so
that a fix to a helper reaches every suite.

Everything here talks to real parts only: Apache Kafka (ci/rig/kafka.sh; one
node per run, reached through a Broker gate per test), the byte-exact
consumer (ci/rig/consume.py), Slurm on the host
(ci/rig/slurm-host.sh) and in the chroots (ci/rig/slurm-chroot.sh). Waits
poll with deadlines; nothing sleeps for long.
"""

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from record_schema import contract_problems

REPO = Path(__file__).resolve().parents[2]
RIG = REPO / "ci" / "rig"
# The Debian suite of the chroot that runs each Slurm series (ci/rig/slurm-chroot.sh,
# SUITE=...); 22.05 runs on the host.
CHROOT_SUITES = {"24.11": "trixie", "26.05": "forky"}
# The variable ci/e2e.sh / ci/e2e26.sh export with the chroot's root directory.
_CHROOT_ROOT_ENV = {"trixie": "JK_ROOT", "forky": "JK_FORKY_ROOT"}


def chroot_root(suite):
    """The chroot of a Debian suite: the same defaults as ci/lib/common.sh and
    ci/rig/slurm-chroot.sh (RIG_CACHE/chroot-SUITE)."""
    return Path(os.environ.get(_CHROOT_ROOT_ENV[suite])
                or os.path.join(os.environ.get("RIG_CACHE", "/var/tmp/jobcomp-kafka"), f"chroot-{suite}"))


CHROOT_ROOT = chroot_root("trixie")
SYSTEM_PLUGINDIR = "/usr/lib/x86_64-linux-gnu/slurm-wlm"

# Daemons and clients run 5 h 30 min east of UTC. A POSIX TZ string needs no
# tzdata (the chroot has none it would use). scontrol prints local time; the
# record must carry UTC, so a plugin formatting local time is caught.
TZ = "XST-05:30"
TZ_OFFSET = timedelta(hours=5, minutes=30)

FINAL_STATES = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
    "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
}

def _port_map():
    """JK_E2E_PORT_MAP="FIRST-LAST:NEW,...": the default ports FIRST..LAST are
    moved to NEW.. (to run the suites in a private range next to other runs)."""
    out = []
    for item in filter(None, os.environ.get("JK_E2E_PORT_MAP", "").split(",")):
        span, new = item.split(":")
        first, last = span.split("-")
        out.append((int(first), int(last), int(new)))
    return out


_PORT_MAP = _port_map()


def port(default):
    """A default port of the suites, as JK_E2E_PORT_MAP moves it."""
    for first, last, new in _PORT_MAP:
        if first <= default <= last:
            return new + default - first
    return default


# Ports per Slurm series and role: (ctld, slurmd). Outside Linux's ephemeral
# range (32768-60999): there, any client socket of the machine can hold a
# port for as long as its connection lives (seen: 36827/36828, first chosen,
# held by other sessions' connections for over 90 s, so slurmd could not bind).
PORTS = {
    "22.05": {"mix": (61817, 61818), "schedmd": None, "restart": (61827, 61828), "reconf": (61837, 61838),
              "crash": (61847, 61848)},
    "24.11": {"mix": (62817, 62818), "schedmd": (62827, 62828), "restart": (62847, 62848),
              "reconf": (62837, 62838), "reexec": (62857, 62858), "crash": (62867, 62868)},
}
PORTS = {s: {role: ports and tuple(port(p) for p in ports) for role, ports in roles.items()}
         for s, roles in PORTS.items()}
# The restart test's own broker (down while the jobs run).
OUTAGE_BROKER_PORT = {"22.05": port(29094), "24.11": port(29095)}
# The crash tests' own broker (down while the jobs run, up after the crash).
CRASH_BROKER_PORT = {"22.05": port(29096), "24.11": port(29097)}
# librdkafka properties of every cluster: no record may time out while a
# test runs (the broker is up, or comes back within the test).
KAFKA_PROPS = {"message.timeout.ms": "120000", "reconnect.backoff.max.ms": "1000"}


def series(release):
    return ".".join(release.split(".")[:2])


_print_lock = threading.Lock()
# The suite's name in progress lines (rig26 sets "e2e26").
LOG_NAME = "e2e"


def log(msg):
    """Progress line on the real stderr (pytest does not capture it), so a CI
    log shows where a run is even when it hangs."""
    with _print_lock:
        print(f"[{time.strftime('%H:%M:%S')} {LOG_NAME}] {msg}", file=sys.__stderr__, flush=True)


class RigError(RuntimeError):
    pass


def _show(b, limit=3000):
    text = b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)
    return text if len(text) <= limit else "..." + text[-limit:]


def run(argv, *, check=True, timeout=120, cwd=None, input=None, env=None):
    """Run argv (str/bytes/Path items) with TZ set; output as bytes."""
    e = dict(os.environ, TZ=TZ)
    e.update(env or {})
    argv = [a if isinstance(a, bytes) else str(a) for a in argv]
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=cwd, input=input, env=e)
    except subprocess.TimeoutExpired as exc:
        raise RigError(f"{argv!r} did not finish within {timeout}s") from exc
    if check and p.returncode != 0:
        raise RigError(f"{argv!r} exited {p.returncode}\nstdout: {_show(p.stdout)}\nstderr: {_show(p.stderr)}")
    return p


def wait_for(pred, timeout, what, interval=0.1):
    """Call pred() until it returns something truthy; that value is returned.
    RigError when the deadline passes first."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise RigError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def bindable(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            s.listen(1)
        except OSError:
            return False
    return True


def wait_bindable(ports, timeout):
    """A socket in the way (a client's ephemeral port, or a daemon still
    going) is gone within TIME_WAIT; a port taken for longer is an error."""
    t0 = time.monotonic()
    wait_for(lambda: all(bindable(p) for p in ports), timeout, f"ports {ports} to be free", interval=0.5)
    if time.monotonic() - t0 > 1:
        log(f"ports {ports} were busy for {time.monotonic() - t0:.0f}s")


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, ValueError, IndexError):
        return False


# --- Kafka -------------------------------------------------------------------


@dataclass
class Message:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    headers: dict = field(default_factory=dict)  # name -> str | None | {"b64": ...} | [values]


@dataclass
class Consumed:
    messages: list
    rc: int  # consume.py: 0 ok, 3 too few before the timeout, 5 more than expected
    stderr: str


class KafkaClients:
    """What the tests read from a broker through real Kafka clients: the
    byte-exact consumer (ci/rig/consume.py) and confluent-kafka's AdminClient.
    A subclass sets `bootstrap`."""

    def admin(self):
        from confluent_kafka.admin import AdminClient
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def consume(self, topic, expect, timeout=60.0, linger=2.0):
        """Read topic from its beginning with ci/rig/consume.py until `expect`
        messages are in, then watch `linger` s more for extra ones."""
        argv = [sys.executable, RIG / "consume.py", "--bootstrap", self.bootstrap, "--topic", topic,
                "--from-beginning", "--expect", str(expect), "--exact", "--linger", str(linger),
                "--timeout", str(timeout)]
        p = run(argv, check=False, timeout=timeout + linger + 60)
        msgs = []
        for line in p.stdout.decode().splitlines():
            o = json.loads(line)
            key = None
            if "key_b64" in o:
                key = base64.b64decode(o["key_b64"])
            elif o["key"] is not None:
                key = o["key"].encode()
            value = base64.b64decode(o["value_b64"]) if o["value_b64"] is not None else None
            msgs.append(Message(o["partition"], o["offset"], key, value, o["timestamp_ms"], o["headers"]))
        if p.returncode not in (0, 3, 5):
            raise RigError(f"consume.py exited {p.returncode}: {_show(p.stderr)}")
        check_contract(topic, msgs)
        return Consumed(msgs, p.returncode, p.stderr.decode("utf-8", "replace"))

    def topics(self):
        """Names of the broker's topics (metadata; creates nothing)."""
        md = self.admin().list_topics(timeout=20)
        return {name for name, t in md.topics.items() if t.error is None}

    def create_topic(self, name, partitions=1, rf=1, configs=None):
        """Create a topic (CreateTopics through confluent-kafka: no JVM tool to
        start) and wait until the broker serves it."""
        from confluent_kafka.admin import NewTopic
        new = NewTopic(name, partitions, rf, config={k: str(v) for k, v in (configs or {}).items()})
        admin = self.admin()  # alive until the result is in
        admin.create_topics([new], operation_timeout=30, request_timeout=60)[name].result(timeout=90)
        wait_for(lambda: name in self.topics(), 60, f"topic {name} in the metadata")
        log(f"topic {name} created ({partitions} partition(s), {configs or 'defaults'})")

    def alter_topic_config(self, name, configs):
        """Set topic configs on a live topic (IncrementalAlterConfigs SET),
        e.g. {"max.message.bytes": 5000000}."""
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
        res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
            ConfigEntry(k, str(v), incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])
        admin = self.admin()  # alive until the result is in
        for f in admin.incremental_alter_configs([res]).values():
            f.result(timeout=60)
        log(f"topic {name}: {configs}")


# The Apache Kafka node of this pytest session (use_kafka): every Broker is a
# way to it.
_KAFKA = None


def use_kafka(node):
    """Make `node` (an ApacheKafka or ExternalKafka, started) the node every
    Broker of this session leads to."""
    global _KAFKA
    _KAFKA = node


class Broker(KafkaClients):
    """The broker a test gives its clusters: 127.0.0.1:port, a bootstrap gate
    to the session's Apache Kafka node (use_kafka). Down until start(): nothing
    listens on the port (connection refused, as for a broker host that is
    down); start() forwards every connection to the node. Kafka's metadata
    advertises the node's own address, so once a client has bootstrapped
    through the gate it produces and fetches from the node directly: the gate
    carries only the first requests. Hence "down, then up" (the outage tests)
    is exact for a client that has not reached the node before; stop() does
    not cut a client that already has. One node serves every test: each uses
    topics of its own."""

    def __init__(self, dir, port):
        self.dir = Path(dir)  # kept for the callers; the gate keeps no files
        self.port = port
        self._listener = None
        self._conns = []
        self._lock = threading.Lock()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        if _KAFKA is None:
            raise RigError("no Apache Kafka node for this session (jk.use_kafka)")
        host, port = _KAFKA.bootstrap.rsplit(":", 1)
        upstream = (host, int(port))
        wait_bindable([self.port], 60)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self._listener = s
        threading.Thread(target=self._accept, args=(s, upstream), daemon=True).start()
        log(f"broker {self.bootstrap} up: a gate to Apache Kafka at {_KAFKA.bootstrap}")

    def _accept(self, listener, upstream):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                node = socket.create_connection(upstream, timeout=10)
                node.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, node]
            for a, b in ((client, node), (node, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def stop(self):
        if self._listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone
            # leaves the port listening until that call returns.
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


def _pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
        try:
            sock.shutdown(how)
        except OSError:
            pass


# -Xmx of a suite's Kafka node: one partition per topic and a few thousand
# small records need little (kafka.sh logs the node's RSS).
KAFKA_HEAP = "256m"


def add_kafka_options(group, default_port):
    """The pytest options of a suite's Kafka node (both suites' conftest.py)."""
    group.addoption("--kafka-bootstrap", help="an Apache Kafka node started by the caller (ci/e2e.sh: one for "
                    "both sessions); without it the session starts its own (--kafka-port, --kafka-version)")
    group.addoption("--kafka-port", type=int, default=default_port,
                    help="port of the session's own Kafka node (its controller: the next)")
    group.addoption("--kafka-version", default="4", help="Kafka version of the session's own node (kafka.sh alias)")


def session_kafka(config, dir):
    """The session's Apache Kafka node, started, and made the one every Broker
    leads to: the caller's (--kafka-bootstrap) or one of its own in `dir`."""
    given = config.getoption("--kafka-bootstrap")
    if given:
        node = ExternalKafka(given)
    else:
        from kafka_rig import ApacheKafka  # it imports this module
        node = ApacheKafka(dir, port(config.getoption("--kafka-port")), version=config.getoption("--kafka-version"),
                           heap=KAFKA_HEAP)
    node.start()
    use_kafka(node)
    return node


class ExternalKafka(KafkaClients):
    """A Kafka node another process started and stops (ci/e2e.sh starts one
    for both sessions of a run): start and stop do nothing."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap

    def start(self):
        log(f"using the Kafka node at {self.bootstrap}")

    def stop(self):
        pass


def cluster_dir(release, tag, session_dir, name):
    """A test cluster's directory: in the session directory on the host
    (22.05), inside the Debian chroot otherwise."""
    if release.startswith("22.05"):
        return session_dir / name
    return CHROOT_ROOT / "rig" / f"jk-e2e-{tag}-{series(release).replace('.', '')}-{name}"


def messages_by_job(messages):
    """({jobid: [Message, ...]}, invalid): messages grouped by their record's
    jobid; a message that is not a valid record, or whose key is not its
    jobid, counts as invalid."""
    out, invalid = {}, 0
    for m in messages:
        try:
            rec = dict(decode_record(m.value))
        except ValueError:
            invalid += 1
            continue
        if m.key != str(rec["jobid"]).encode():
            invalid += 1
        out.setdefault(rec["jobid"], []).append(m)
    return out, invalid


# Our plugin's only message header (README, The record): a decimal id unique
# to the record. SchedMD's plugin sends no header.
RECORD_ID_HEADER = "jobcomp.record_id"


def record_id_problems(messages):
    """Every message has exactly one header, jobcomp.record_id, a decimal
    number, and no two messages share one."""
    bad = []
    seen = {}
    for m in messages:
        h = m.headers or {}
        rid = h.get(RECORD_ID_HEADER)
        if set(h) != {RECORD_ID_HEADER} or not isinstance(rid, str) or not re.fullmatch(r"[0-9]+", rid):
            bad.append(f"partition {m.partition} offset {m.offset}: headers {h!r}, expected one "
                       f"decimal {RECORD_ID_HEADER}")
            continue
        if rid in seen:
            bad.append(f"{RECORD_ID_HEADER} {rid} at {seen[rid]} and {m.partition}/{m.offset}")
        seen[rid] = f"{m.partition}/{m.offset}"
    return bad


# --- the record contract (schema/) -----------------------------------------------

# The Slurm release of the running suite (set by each suite's conftest.py):
# every record Broker.consume returns is validated against that series'
# schema (schema/<series>/finish.schema.json, or start.schema.json for a
# record with state null, 25.05+). What breaks it is collected here, and the
# suites' autouse fixture record_contract fails the test that consumed it.
CONTRACT_RELEASE = None
CONTRACT_VIOLATIONS = []


def check_contract(topic, messages):
    """Validate each message that holds a JSON object (anything else is left
    to the text-form checks, decode_record) against CONTRACT_RELEASE's
    schema; a finish record, or from 25.05 on a start record when its state
    is null."""
    if CONTRACT_RELEASE is None:
        return
    starts = series_key(CONTRACT_RELEASE) >= "2505"
    for m in messages:
        try:
            rec = json.loads((m.value or b"").decode("utf-8", "replace").rstrip("\0"))
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        start = starts and "state" in rec and rec["state"] is None
        for prob in contract_problems(rec, CONTRACT_RELEASE, start):
            CONTRACT_VIOLATIONS.append(f"topic {topic} {m.partition}/{m.offset} job {rec.get('jobid')}: {prob}")


def take_contract_violations():
    """The violations collected so far (and forget them)."""
    out = list(CONTRACT_VIOLATIONS)
    CONTRACT_VIOLATIONS.clear()
    return out


# --- the record's text form --------------------------------------------------


class InvalidRecord(ValueError):
    pass


def _jsonc_string(s):
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "/":
            out.append("\\/")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20:
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def jsonc_value(v):
    """One value the way json-c (JSON_C_TO_STRING_PLAIN) writes it."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        t = "%.17g" % v
        if "." not in t and "e" not in t:
            t += ".0"
        return t
    if isinstance(v, str):
        return _jsonc_string(v)
    raise InvalidRecord(f"unexpected JSON value type {type(v).__name__}: {v!r}")


def jsonc_dumps(pairs):
    return "{" + ",".join(_jsonc_string(k) + ":" + jsonc_value(v) for k, v in pairs) + "}"


def decode_record(value, *, replace_invalid_utf8=False):
    """Kafka message value -> list of (key, value) pairs in emission order.

    InvalidRecord unless the bytes are strict UTF-8, one JSON object of flat
    values without duplicate keys, in json-c's compact text form (so a stray
    byte, a NUL, other escaping or whitespace is caught too).

    replace_invalid_utf8: decode invalid UTF-8 to U+FFFD first, and check the
    rest as above. Only for SchedMD's records of the job whose name is not
    UTF-8 (an accepted difference, see differential.py)."""
    if value is None:
        raise InvalidRecord("null message value")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not replace_invalid_utf8:
            raise InvalidRecord(
                f"not UTF-8: {exc}; bytes around: {value[max(0, exc.start - 20):exc.end + 20]!r}")
        text = value.decode("utf-8", "replace")
    try:
        pairs = json.loads(text, object_pairs_hook=lambda p: ("obj", p))
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"not JSON: {exc}; text around: {text[max(0, exc.pos - 30):exc.pos + 30]!r}")
    if not (isinstance(pairs, tuple) and pairs[0] == "obj"):
        raise InvalidRecord("top level is not an object")
    pairs = pairs[1]
    keys = [k for k, _ in pairs]
    dups = sorted({k for k in keys if keys.count(k) > 1})
    if dups:
        raise InvalidRecord(f"duplicate keys {dups}")
    for k, v in pairs:
        if isinstance(v, (tuple, list)):
            raise InvalidRecord(f"nested value under {k!r}")
    canon = jsonc_dumps(pairs)
    if canon != text:
        i = next((i for i, (a, b) in enumerate(zip(canon, text)) if a != b), min(len(canon), len(text)))
        raise InvalidRecord(
            f"not json-c's compact form at char {i}: got {text[max(0, i - 30):i + 30]!r}, "
            f"json-c writes {canon[max(0, i - 30):i + 30]!r} (lengths {len(text)} vs {len(canon)})")
    return pairs


# Emission order of every key (shared/slurm/record-format.md) and the first
# series that has it ("2302" = 23.02, which 22.05 uses too).
RECORD_KEYS = [
    ("jobid", "2302"), ("sluid", "2605"), ("original_sluid", "2605"), ("container", "2302"),
    ("username", "2302"), ("user_id", "2302"), ("groupname", "2302"), ("group_id", "2302"),
    ("@start", "2302"), ("@end", "2302"), ("elapsed", "2302"), ("partition", "2302"),
    ("alloc_node", "2302"), ("nodes", "2302"), ("total_cpus", "2302"), ("total_nodes", "2302"),
    ("derived_ec", "2302"), ("exit_code", "2302"), ("state", "2302"), ("failed_node", "2302"),
    ("cpu_hours", "2302"), ("array_job_id", "2302"), ("array_task_id", "2302"),
    ("pack_job_id", "2302"), ("pack_job_offset", "2302"), ("het_job_id", "2302"),
    ("het_job_offset", "2302"), ("priority", "2405"), ("@submit", "2302"), ("@eligible", "2302"),
    ("@queue_wait", "2302"), ("work_dir", "2302"), ("std_err", "2302"), ("std_in", "2302"),
    ("std_out", "2302"), ("cluster", "2302"), ("qos", "2302"), ("ntasks", "2302"),
    ("ntasks_per_node", "2302"), ("ntasks_per_tres", "2302"), ("cpus_per_task", "2302"),
    ("orig_dependency", "2302"), ("excluded_nodes", "2302"), ("features", "2302"),
    ("time_limit", "2302"), ("job_name", "2302"), ("reservation_name", "2302"), ("wc_key", "2302"),
    ("tres_req_raw", "2311"), ("tres_req", "2302"), ("tres_alloc_raw", "2311"), ("tres_alloc", "2302"),
    ("account", "2302"), ("admin_comment", "2605"), ("comment", "2605"), ("script", "2302"),
    ("parent_accounts", "2302"),
]
# Present in every record (finish and start), null or not, with the first
# series that has it.
ALWAYS_KEYS = [("jobid", "2302"), ("sluid", "2605"), ("container", "2302"), ("username", "2302"),
               ("user_id", "2302"), ("groupname", "2302"), ("group_id", "2302"), ("partition", "2302"),
               ("alloc_node", "2302"), ("nodes", "2302"), ("total_cpus", "2302"), ("total_nodes", "2302"),
               ("state", "2302")]
# Present in every finish record too.
ALWAYS_FINISH_KEYS = ["derived_ec", "exit_code", "failed_node", "cpu_hours", "elapsed"]
# Never in a start record (25.05+; record-format.md, column "when" = F).
FINISH_ONLY_KEYS = ["@end", "elapsed", "derived_ec", "exit_code", "failed_node", "cpu_hours",
                    "pack_job_id", "pack_job_offset"]
KEY_TYPES = {
    "jobid": int, "user_id": int, "group_id": int, "elapsed": int, "total_cpus": int, "total_nodes": int,
    "cpu_hours": float, "array_job_id": int, "array_task_id": int, "pack_job_id": int,
    "pack_job_offset": int, "het_job_id": int, "het_job_offset": int, "priority": int,
    "@queue_wait": int, "ntasks": int, "ntasks_per_node": int, "ntasks_per_tres": int,
    "cpus_per_task": int, "time_limit": int,
}
NULLABLE = {"container", "username", "groupname", "partition", "alloc_node", "nodes", "state", "failed_node"}
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
# sluid, original_sluid (26.05+): "s" + 13 Crockford base32 characters.
SLUID_RE = re.compile(r"^s[0-9A-HJKMNP-TV-Z]{13}$")


def series_key(release):
    major, minor = release.split(".")[:2]
    return f"{int(major):02d}{int(minor):02d}"


def schema_problems(pairs, release, *, start=False):
    """Key set, order and types of a finish record (start=False) or a start
    record (26.05's enable_job_start) against record-format.md for `release`'s
    series (22.05 uses the 23.02 field set)."""
    s = max(series_key(release), "2302")
    allowed = [k for k, since in RECORD_KEYS if since <= s]
    order = {k: i for i, k in enumerate(allowed)}
    problems = []
    keys = [k for k, _ in pairs]
    unknown = [k for k in keys if k not in order]
    if unknown:
        problems.append(f"keys not in the {release} schema: {unknown}")
    idx = [order[k] for k in keys if k in order]
    if idx != sorted(idx):
        problems.append(f"key order differs from the schema: {keys}")
    always = [k for k, since in ALWAYS_KEYS if since <= s] + ([] if start else ALWAYS_FINISH_KEYS)
    missing = [k for k in always if k not in keys]
    if missing:
        problems.append(f"always-present keys missing: {missing}")
    d = dict(pairs)
    if start:
        extra = [k for k in FINISH_ONLY_KEYS if k in keys]
        if extra:
            problems.append(f"finish-only keys in a start record: {extra}")
        if d.get("state", "absent") is not None:
            problems.append(f"start record has state {d.get('state', '<absent>')!r}, not null")
    elif not isinstance(d.get("state"), str):
        problems.append(f"finish record has state {d.get('state')!r}")
    for k, v in pairs:
        if v is None:
            if k not in NULLABLE:
                problems.append(f"{k} is null")
            continue
        want = KEY_TYPES.get(k, str)
        if type(v) is not want:
            problems.append(f"{k}={v!r} is {type(v).__name__}, not {want.__name__}")
        elif k.startswith("@") and k != "@queue_wait" and not TIME_RE.match(v):
            problems.append(f"{k}={v!r} is not %Y-%m-%dT%H:%M:%S")
        elif k in ("derived_ec", "exit_code") and not re.fullmatch(r"\d+:\d+", v):
            problems.append(f"{k}={v!r} is not exit:signal")
        elif k in ("sluid", "original_sluid") and not SLUID_RE.match(v):
            problems.append(f"{k}={v!r} is not s + 13 Crockford base32 characters")
    # The published contract: the series' JSON Schema (schema/).
    problems += contract_problems(d, release, start)
    return problems


# --- scontrol ----------------------------------------------------------------

_KEY_AT = re.compile(r"(?:^| )([A-Z][A-Za-z0-9_/:]*)=")


def parse_scontrol_job(text):
    """One job of `scontrol show job -d -o` -> {key: [values...]} (a key can
    repeat in the -d node block). Fields are split at ' Key=' (Key starting
    with a capital letter); the names and paths the tests use never contain
    that sequence, but may contain spaces, tabs, newlines and '='."""
    out = {}
    ms = list(_KEY_AT.finditer(text))
    for i, m in enumerate(ms):
        end = ms[i + 1].start() if i + 1 < len(ms) else len(text)
        out.setdefault(m.group(1), []).append(text[m.end():end].rstrip(" \n"))
    return out


def parse_scontrol_jobs(raw):
    """Whole `scontrol show job -d -o` output (bytes) -> {jobid: Snapshot}.
    Invalid UTF-8 is decoded to U+FFFD per maximal invalid subpart (what a
    valid record must carry)."""
    text = raw.decode("utf-8", "replace")
    jobs = {}
    for chunk in re.split(r"(?:^|\n)(?=JobId=\d+ )", text):
        if not chunk.strip():
            continue
        f = parse_scontrol_job(chunk)
        snap = Snapshot(f)
        jobs[snap.jobid] = snap
    return jobs


@dataclass
class Snapshot:
    fields: dict

    def get(self, key, default=None):
        v = self.fields.get(key)
        return v[0] if v else default

    def __getitem__(self, key):
        v = self.fields.get(key)
        if not v:
            raise KeyError(f"scontrol printed no {key}= (keys: {sorted(self.fields)})")
        return v[0]

    @property
    def jobid(self):
        return int(self["JobId"])

    @property
    def state(self):
        return self["JobState"]


def scontrol_null(v):
    return v in (None, "", "(null)", "N/A")


def scontrol_time_utc(v):
    """scontrol's local time (TZ above) -> the record's UTC text; None for
    Unknown/None/N/A."""
    if v in (None, "", "Unknown", "None", "N/A", "(null)"):
        return None
    t = datetime.strptime(v, "%Y-%m-%dT%H:%M:%S") - TZ_OFFSET
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def scontrol_seconds(v):
    """TimeLimit text -> seconds; None for UNLIMITED."""
    if v in ("UNLIMITED", "Partition_Limit", "NONE"):
        return None
    days = 0
    if "-" in v:
        d, v = v.split("-", 1)
        days = int(d)
    parts = [int(x) for x in v.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return ((days * 24 + h) * 60 + m) * 60 + s


def name_id(v):
    """'root(0)' -> ('root', 0)"""
    m = re.fullmatch(r"(.*)\((\d+)\)", v)
    assert m, f"unexpected user/group text {v!r}"
    return m.group(1), int(m.group(2))


def expand_io_pattern(pattern, snap):
    """The %-patterns Slurm expands in StdOut/StdErr for scontrol (the record
    carries the pattern as submitted). A backslash anywhere turns expansion
    off and is dropped (sbatch(1), "filename pattern")."""
    if "\\" in pattern:
        return pattern.replace("\\", "")
    jobid = snap.jobid
    arr_job = snap.get("ArrayJobId")
    arr_task = snap.get("ArrayTaskId")

    def sub(m):
        flag, c = m.group(1), m.group(2)
        if c == "%":
            return "%"
        val = {
            "j": str(jobid),
            "A": str(arr_job) if arr_job else str(jobid),
            "a": str(arr_task) if arr_task else "4294967294",
            "x": snap.get("JobName", ""),
            "u": name_id(snap["UserId"])[0],
            "N": "localhost",
            "n": "0",
            "t": "0",
            "s": "batch",
        }.get(c)
        if val is None:
            return m.group(0)
        if flag and c in "jAa":
            return val.zfill(int(flag))
        return val

    return re.sub(r"%(\d*)([jAaxuNnts%])", sub, pattern)


# --- Slurm clusters ----------------------------------------------------------


class Cluster:
    """A single-node cluster started through ci/rig, with our plugin or
    SchedMD's: Slurm 22.05 on the host, 24.11 in the trixie chroot, 26.05 in
    the forky chroot (CHROOT_SUITES).

    topic: JobCompParams topic=; None leaves the plugin's default (ClusterName).
    debugflags: None for the series' usual flag (22.05 names the JobComp flag
    "Elasticsearch"), "" for none."""

    def __init__(self, *, release, name, dir, ctld_port, slurmd_port, plugin, bootstrap, topic=None,
                 params="", kafka_props=None, debugflags=None, extra_conf=()):
        self.release = release
        self.suite = CHROOT_SUITES.get(series(release))  # None: on the host
        self.kind = "chroot" if self.suite else "host"
        self.root = chroot_root(self.suite) if self.suite else None
        self.name = name
        self.dir = Path(dir)
        self.ctld_port = ctld_port
        self.slurmd_port = slurmd_port
        self.plugin = plugin  # "ours" | "schedmd"
        self.bootstrap = bootstrap
        self.topic = topic
        self.params = params
        self.kafka_props = dict(kafka_props or {})
        if debugflags is None:
            debugflags = "JobComp" if self.kind == "chroot" else "Elasticsearch"
        self.debugflags = debugflags
        self.extra_conf = list(extra_conf)
        self.started = False
        if self.kind == "chroot":
            assert str(self.dir).startswith(str(self.root) + "/"), self.dir

    # paths
    @property
    def rig_script(self):
        return RIG / ("slurm-host.sh" if self.kind == "host" else "slurm-chroot.sh")

    def rig(self, *args, **kw):
        """Run the rig script of this cluster (for a chroot: with its suite)."""
        env = {"SUITE": self.suite, "JK_CHROOT_SUITE": self.suite} if self.suite else None
        return run([self.rig_script, *args], env=env, **kw)

    def inpath(self, host_path):
        """Host path -> the path the daemons and jobs see."""
        p = str(host_path)
        if self.kind == "chroot":
            assert p.startswith(str(self.root) + "/"), p
            return p[len(str(self.root)):]
        return p

    def inpath_b(self, host_path_b):
        if self.kind == "chroot":
            root = os.fsencode(str(self.root))
            assert host_path_b.startswith(root + b"/")
            return host_path_b[len(root):]
        return host_path_b

    @property
    def indir(self):
        return self.inpath(self.dir)

    @property
    def finish_topic(self):  # JobCompParams topic=, default ClusterName
        return self.topic or self.name

    @property
    def start_topic(self):  # topic_job_start default (26.05): <ClusterName>-job-start
        return f"{self.name}-job-start"

    @property
    def state_dir(self):
        return self.dir / "state"

    @property
    def log_path(self):
        return self.dir / "slurmctld.log"

    def ctld_pid(self):
        try:
            return int((self.dir / "slurmctld.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def plugin_build(self):
        return REPO / "build" / f"slurm-{self.release}" / "jobcomp_kafka.so"

    def write_kafka_conf(self, props=None):
        props = props if props is not None else self.kafka_props
        lines = ["# JobCompLoc of the e2e tests", f"bootstrap.servers={self.bootstrap}"]
        lines += [f"{k}={v}" for k, v in props.items()]
        (self.dir / "kafka.conf").write_text("\n".join(lines) + "\n")
        os.chmod(self.dir / "kafka.conf", 0o600)

    def start(self, attempts=3):
        """Start the cluster: once both ports can be bound (a daemon of an
        earlier run may still be going), and again (after stopping what did
        come up) when it did not start, e.g. a daemon could not bind its port
        anyway or, in the forky chroot, slurmd did not come up the first time."""
        for attempt in range(1, attempts + 1):
            wait_bindable([self.ctld_port, self.slurmd_port], 90)
            try:
                return self._start()
            except RigError as exc:
                if attempt == attempts:
                    raise
                log(f"{self.name}: did not start ({str(exc).splitlines()[0][:200]}); "
                    f"starting again ({attempt})")
                self.stop()

    def start_ctld(self, attempts=3):
        """`start-ctld` (slurmctld again with the same slurm.conf), with the
        same care for the port as start()."""
        for attempt in range(1, attempts + 1):
            wait_bindable([self.ctld_port], 90)
            try:
                self.rig("start-ctld", self.dir, timeout=90)
                break
            except RigError as exc:
                if "Address already in use" not in str(exc) or attempt == attempts:
                    raise
                log(f"{self.name}: ctld port taken; starting slurmctld again ({attempt})")
        self.check_plugin_loaded()

    def _start(self):
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        os.chmod(self.dir, 0o755)
        self.write_kafka_conf()
        args = ["start"]
        if self.kind == "chroot":
            args.append(self.root)
        args += [self.dir, "--jobcomp", "jobcomp/kafka", "--jobcomp-loc", self.inpath(self.dir / "kafka.conf"),
                 "--ctld-port", str(self.ctld_port), "--slurmd-port", str(self.slurmd_port),
                 "--cluster", self.name, "--fresh"]
        if self.debugflags:
            args += ["--debugflags", self.debugflags]
        params = ",".join(x for x in (f"topic={self.topic}" if self.topic else "", self.params) if x)
        if params:
            args += ["--jobcomp-params", params]
        if self.plugin == "ours":
            so = self.plugin_build()
            if not so.is_file():
                raise RigError(f"{so} missing: run make build SLURM_VERSION={self.release}")
            pdir = self.dir / "plugins"
            pdir.mkdir()
            shutil.copy2(so, pdir / "jobcomp_kafka.so")
            # Ours first: in the chroot the system directory holds SchedMD's
            # jobcomp_kafka.so, and Slurm loads the first one it finds.
            args += ["--conf", f"PluginDir={self.inpath(pdir)}:{SYSTEM_PLUGINDIR}"]
        for kv in self.extra_conf:
            args += ["--conf", kv]
        self.rig(*args, timeout=240)
        self.started = True
        self.check_plugin_loaded()
        log(f"{self.kind} cluster {self.name} (Slurm {self.release}, {self.plugin} plugin, "
            f"JobCompParams={params or '-'}) up: ctld :{self.ctld_port}, topic {self.finish_topic}, dir {self.dir}")

    def check_plugin_loaded(self):
        """The jobcomp_kafka.so mapped into slurmctld is the one we meant."""
        pid = self.ctld_pid()
        want = (self.inpath(self.dir / "plugins" / "jobcomp_kafka.so") if self.plugin == "ours"
                else f"{SYSTEM_PLUGINDIR}/jobcomp_kafka.so")

        def mapped():
            try:
                maps = Path(f"/proc/{pid}/maps").read_text()
            except OSError:
                return None
            return [ln.split()[-1] for ln in maps.splitlines() if ln.endswith("jobcomp_kafka.so")]

        paths = wait_for(mapped, 10, f"jobcomp_kafka.so mapped into slurmctld {pid}")
        ok = all(p == want or p.endswith(want) for p in paths)
        if not ok:
            raise RigError(f"slurmctld {pid} maps {sorted(set(paths))}, expected {want}")

    def stop(self):
        if self.dir.exists() and (self.dir / "rig.env").exists():
            self.rig("stop", self.dir, check=False, timeout=120)
        self.started = False

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    # clients
    def cmd(self, name, *args, check=True, timeout=60, input=None):
        """Run a Slurm client of this cluster (the DIR/bin wrappers: inside the
        chroot for 24.11, with this cluster's slurm.conf)."""
        return run([self.dir / "bin" / name, *args], check=check, timeout=timeout, cwd=self.dir, input=input)

    def sbatch(self, *args, input=None):
        p = self.cmd("sbatch", "--parsable", *args, input=input)
        return int(p.stdout.decode().strip().split(";")[0])

    def scontrol(self, *args, check=True):
        return self.cmd("scontrol", *args, check=check)

    def show_jobs(self, jobid=None):
        """{jobid: Snapshot} of `scontrol show job -d -o [jobid]`."""
        args = ["show", "job", "-d", "-o"] + ([str(jobid)] if jobid is not None else [])
        p = self.scontrol(*args, check=False)
        if p.returncode != 0:
            if b"Invalid job id" in p.stderr:
                return {}
            raise RigError(f"scontrol show job failed: {_show(p.stderr)}")
        return parse_scontrol_jobs(p.stdout)

    def show_job(self, jobid):
        return self.show_jobs(jobid).get(jobid)

    def wait_state(self, jobid, states, timeout=60):
        def check():
            s = self.show_job(jobid)
            return s if s is not None and s.state in states else None

        return wait_for(check, timeout, f"job {jobid} in {states} on {self.name}", interval=0.2)

    def wait_done(self, jobids, timeout=120):
        """All listed jobs (array ids cover their tasks) in a final state."""
        pending = set(jobids)

        def check():
            jobs = self.show_jobs()
            for jid in list(pending):
                mine = [s for s in jobs.values() if s.jobid == jid or s.get("ArrayJobId") == str(jid)]
                if mine and all(s.state in FINAL_STATES for s in mine):
                    pending.discard(jid)
            return not pending

        try:
            wait_for(check, timeout, f"jobs {sorted(pending)} to end on {self.name}", interval=0.3)
        except RigError as exc:
            # The message above lists what was pending at the start; say what still is.
            raise RigError(f"{exc}; still not ended: {sorted(pending)}") from None

    def run_jobs(self, n, timeout=60, prefix="j"):
        ids = [self.sbatch("-J", f"{prefix}{i}", "--wrap", f"echo {prefix}{i}") for i in range(n)]
        self.wait_done(ids, timeout)
        return ids

    def shutdown_ctld(self):
        """`scontrol shutdown slurmctld` (fini runs; slurmd stays), and wait
        for the process to end."""
        pid = self.ctld_pid()
        assert pid and pid_alive(pid), "slurmctld not running"
        self.scontrol("shutdown", "slurmctld")
        wait_for(lambda: not pid_alive(pid), 30, f"slurmctld {pid} to exit after scontrol shutdown")

    def log_text(self):
        """slurmctld's log. An unreadable or missing log raises (never "":
        a check that nothing was logged must not pass on a log it cannot see)."""
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def ping_ok(self):
        p = self.scontrol("ping", check=False)
        return p.returncode == 0 and b"is UP" in p.stdout


# --- state file --------------------------------------------------------------


def read_state_file(path, with_event=False):
    """SchedMD's jobcomp_kafka_state: u16 version, u32 count, per record
    [u32 event,] u32 job id, u32 length (incl. NUL), bytes, NUL. Big-endian."""
    data = Path(path).read_bytes()
    version, count = struct.unpack_from(">HI", data, 0)
    pos = 6
    recs = []
    for _ in range(count):
        if with_event:
            pos += 4
        jobid, length = struct.unpack_from(">II", data, pos)
        pos += 8
        body = data[pos:pos + length]
        pos += length
        if len(body) != length or not body.endswith(b"\0"):
            raise InvalidRecord(f"state file record of job {jobid} truncated or not NUL-terminated")
        recs.append((jobid, body[:-1]))
    if pos != len(data):
        raise InvalidRecord(f"state file has {len(data) - pos} trailing bytes")
    return version, recs


def read_state_file_events(path):
    """A 25.05+ state file: (version, [(event, jobid, body)]); event 1 is a
    finish record, 2 a start record (jobcomp_event_t)."""
    data = Path(path).read_bytes()
    version, count = struct.unpack_from(">HI", data, 0)
    pos = 6
    recs = []
    for _ in range(count):
        event, jobid, length = struct.unpack_from(">III", data, pos)
        pos += 12
        body = data[pos:pos + length]
        pos += length
        if len(body) != length or not body.endswith(b"\0"):
            raise InvalidRecord(f"state file record of job {jobid} truncated or not NUL-terminated")
        recs.append((event, jobid, body[:-1]))
    if pos != len(data):
        raise InvalidRecord(f"state file has {len(data) - pos} trailing bytes")
    return version, recs


def extra_copies(messages, in_flight=()):
    """Checks a topic's messages for copies: every message carries a record id
    (record_id_problems, except that a copy repeats its first's id); a job's
    second message counts as a copy only with the first one's bytes and record
    id, and only for a job in `in_flight`. Returns (copies, problems)."""
    first, copies, problems = {}, 0, []
    for m in messages:
        rid = (m.headers or {}).get(RECORD_ID_HEADER)
        if not isinstance(rid, str) or not re.fullmatch(r"[0-9]+", rid):
            problems.append(f"offset {m.offset}: no single decimal {RECORD_ID_HEADER} header: {m.headers!r}")
            continue
        key = m.key
        if key not in first:
            first[key] = (m.value, rid)
            continue
        copies += 1
        if (m.value, rid) != first[key]:
            problems.append(f"job {key!r}: another record (other bytes or record id) at offset {m.offset}")
        elif key is None or int(key) not in set(in_flight):
            problems.append(f"job {key!r}: an identical copy although it was never in flight")
    return copies, problems


# --- a record checked against what scontrol reported --------------------------


def compare_with_scontrol(rec, snap, *, release, ntasks_given=False, dependency=None, expect=None):
    """Field-by-field comparison of one record (dict) with scontrol's view of
    the same job (the final snapshot, taken before the job was purged).
    Returns a list of mismatch descriptions."""
    bad = []
    expect = expect or {}

    def eq(key, want):
        if key in expect:  # what Slurm defines for the record differs from scontrol's later view
            want = expect[key]
        have = rec.get(key, "<absent>")
        if want is None:
            if key in rec:
                bad.append(f"{key}: record has {have!r}, scontrol has none")
        elif have != want:
            bad.append(f"{key}: record {have!r} != scontrol {want!r}")

    eq("jobid", snap.jobid)
    user, uid = name_id(snap["UserId"])
    group, gid = name_id(snap["GroupId"])
    eq("user_id", uid)
    eq("username", user)
    eq("group_id", gid)
    eq("groupname", group)
    eq("job_name", snap["JobName"] or None)
    eq("partition", snap["Partition"])
    ran = not scontrol_null(snap.get("NodeList")) and snap.get("NodeList") != ""
    if ran:
        eq("nodes", snap["NodeList"])
        eq("total_cpus", int(snap["NumCPUs"]))
        eq("total_nodes", int(snap["NumNodes"]))
    else:
        # Never allocated: scontrol prints the requested counts for a job
        # that never ran; the job record holds 0 and no node list.
        if rec.get("nodes") is not None:
            bad.append(f"nodes: {rec.get('nodes')!r} for a job that never ran")
        eq("total_cpus", 0)
        eq("total_nodes", 0)
    eq("state", snap.state)
    eq("exit_code", snap["ExitCode"])
    eq("derived_ec", snap["DerivedExitCode"])
    eq("work_dir", snap["WorkDir"])
    eq("std_in", None if scontrol_null(snap.get("StdIn")) else snap["StdIn"])
    for key, sk in (("std_out", "StdOut"), ("std_err", "StdErr")):
        if key in rec:
            got = expand_io_pattern(rec[key], snap)
            if got != snap[sk]:
                bad.append(f"{key}: record {rec[key]!r} expands to {got!r} != scontrol {snap[sk]!r}")
    if "std_err" not in rec and snap.get("StdErr") != snap.get("StdOut"):
        bad.append(f"std_err absent but scontrol StdErr {snap.get('StdErr')!r} differs from StdOut")
    if "std_out" not in rec:
        bad.append("std_out absent (every batch job has one)")
    eq("time_limit", scontrol_seconds(snap["TimeLimit"]))
    if snap.get("ArrayJobId"):
        eq("array_job_id", int(snap["ArrayJobId"]))
        eq("array_task_id", int(snap["ArrayTaskId"]))
    else:
        eq("array_job_id", None)
        eq("array_task_id", None)
    start = scontrol_time_utc(snap.get("StartTime"))
    end = expect.get("@end", scontrol_time_utc(snap.get("EndTime")))
    eq("@start", start)
    eq("@end", end)
    eq("@submit", scontrol_time_utc(snap.get("SubmitTime")))
    eq("@eligible", scontrol_time_utc(snap.get("EligibleTime")))
    if start and end and "elapsed" in rec:
        t0 = datetime.strptime(start, "%Y-%m-%dT%H:%M:%S")
        t1 = datetime.strptime(end, "%Y-%m-%dT%H:%M:%S")
        eq("elapsed", max(0, int((t1 - t0).total_seconds())))
        cpus = rec.get("total_cpus", 0)
        want = float(struct.unpack("f", struct.pack("f", rec["elapsed"] * cpus / 3600))[0]) \
            if isinstance(rec.get("elapsed"), int) else None
        if want is not None and rec.get("cpu_hours") != want:
            bad.append(f"cpu_hours {rec.get('cpu_hours')!r} != float32(elapsed*cpus/3600) {want!r}")
    elig = scontrol_time_utc(snap.get("EligibleTime"))
    if start and elig and "@queue_wait" in rec:
        qw = int((datetime.strptime(start, "%Y-%m-%dT%H:%M:%S")
                  - datetime.strptime(elig, "%Y-%m-%dT%H:%M:%S")).total_seconds())
        eq("@queue_wait", qw)
    eq("account", None if scontrol_null(snap.get("Account")) else snap["Account"])
    eq("qos", None if scontrol_null(snap.get("QOS")) else snap["QOS"])
    # No slurmdbd in the rigs: no association, so no cluster/parent_accounts.
    eq("cluster", None)
    eq("parent_accounts", None)
    if ntasks_given:
        eq("ntasks", int(snap["NumTasks"]))
    npn = snap["NtasksPerN:B:S:C"].split(":")[0]
    eq("ntasks_per_node", int(npn) if npn.isdigit() else None)
    cpt = snap.get("CPUs/Task")
    eq("cpus_per_task", int(cpt) if cpt and cpt.isdigit() else None)
    if dependency is not None:
        eq("orig_dependency", dependency)
    else:
        eq("orig_dependency", None)
    eq("excluded_nodes", None if scontrol_null(snap.get("ExcNodeList")) else snap["ExcNodeList"])
    eq("features", None if scontrol_null(snap.get("Features")) else snap["Features"])
    eq("reservation_name", None if scontrol_null(snap.get("Reservation")) else snap["Reservation"])
    # The comment is published from 26.05 on (and only with send_comment).
    eq("comment", None)
    eq("admin_comment", None)
    if series_key(release) >= "2405":
        pr = snap.get("Priority")
        eq("priority", int(pr) if pr and pr.isdigit() and int(pr) not in (0xFFFFFFFE, 0xFFFFFFFF) else None)
    else:
        eq("priority", None)
    if snap.get("ReqTRES") is not None:
        eq("tres_req", None if scontrol_null(snap["ReqTRES"]) else snap["ReqTRES"])
        if ran:
            eq("tres_alloc", None if scontrol_null(snap.get("AllocTRES")) else snap["AllocTRES"])
    elif ran and snap.get("TRES") is not None:
        # 22.05 prints one TRES= (the allocated ones once the job ran).
        eq("tres_alloc", snap["TRES"])
    return bad


def check_script(rec, expected, label):
    if expected is None:
        return []
    if rec.get("script") != expected:
        return [f"{label}: script {rec.get('script')!r} != submitted {expected!r}"]
    return []


def wrap_script(cmd):
    """The batch script sbatch --wrap creates (22.05 and 24.11 alike)."""
    return f"#!/bin/sh\n# This script was created by sbatch --wrap.\n\n{cmd}\n"


# --- pytest session reporting (both suites' conftest.py) -----------------------

# Lines for the CI log, printed as they come and again in the summary.
NUMBERS = []


def note_number(line):
    NUMBERS.append(line)
    log(line)


def terminal_summary(terminalreporter, exitstatus, config, title):
    """The numbers section, and the outcome counts as JSON in --counts-file
    (ci/e2e.sh and ci/e2e26.sh read them for their last line)."""
    if NUMBERS:
        terminalreporter.section(title)
        for line in NUMBERS:
            terminalreporter.write_line(line)
    path = config.getoption("--counts-file")
    if path:
        st = terminalreporter.stats
        counts = {k: len(st.get(k, [])) for k in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")}
        counts["exitstatus"] = int(exitstatus)
        with open(path, "w") as f:
            json.dump(counts, f)


def remove_dirs(request):
    """Whether a session's directories go at its end: only when nothing failed
    (they are what one inspects after a failure) and JK_E2E_KEEP is unset."""
    return request.session.testsfailed == 0 and not os.environ.get("JK_E2E_KEEP")


def session_dir_at(request, path):
    """For a session fixture, `yield from` it: `path` emptied and made anew
    (mode 0755: the rigs' Slurm users cross it), yielded as a Path; at the
    session's end removed when remove_dirs says so, else logged as kept."""
    d = Path(path)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    os.chmod(d, 0o755)
    yield d
    if remove_dirs(request):
        shutil.rmtree(d, ignore_errors=True)
    else:
        log(f"kept {d} for inspection")


class StartedClusters:
    """The clusters a factory fixture makes: each started as it is added; at
    the fixture's end all stopped, then their directories removed when
    remove_dirs says so, else logged as kept."""

    def __init__(self, request):
        self.request = request
        self.made = []

    def start(self, cluster):
        self.made.append(cluster)
        cluster.start()
        return cluster

    def stop_all(self):
        for c in self.made:
            c.stop()
        for c in self.made:
            if remove_dirs(self.request):
                c.remove()
            else:
                log(f"kept {c.dir} for inspection")
