"""Helpers of the 26.05.5 end-to-end tests: the rigs in ci/rig/ driven from
Python, for Slurm 26.05.5 in the Debian forky chroot (ci/rig/slurm-chroot.sh
with SUITE=forky), a tansu broker (ci/rig/tansu.sh) and the byte-exact
consumer (ci/rig/consume.py). Real parts only; waits poll with deadlines.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

# Helpers shared with the 22.05/24.11 end-to-end tests (tests/e2e/jk.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from jk import (  # noqa: E402
    KAFKA_PROPS, KEY_TYPES, NULLABLE, RECORD_ID_HEADER, SYSTEM_PLUGINDIR, TIME_RE, TZ, TZ_OFFSET, _KEY_AT,
    Consumed, InvalidRecord, RigError, _show, jsonc_dumps, name_id, scontrol_null, scontrol_seconds, wait_for,
    wrap_script,
)

REPO = Path(__file__).resolve().parents[2]
RIG = REPO / "ci" / "rig"
RELEASE = "26.05.5"
CHROOT_ROOT = Path(os.environ.get("JK_FORKY_ROOT")
                   or os.path.join(os.environ.get("RIG_CACHE", "/var/tmp/jobcomp-kafka"), "chroot-forky"))


FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}

_print_lock = threading.Lock()


def log(msg):
    """Progress on the real stderr (not captured by pytest)."""
    with _print_lock:
        print(f"[{time.strftime('%H:%M:%S')} e2e26] {msg}", file=sys.__stderr__, flush=True)


def run(argv, *, check=True, timeout=120, cwd=None, input=None, env=None):
    """Run argv with TZ (and SUITE=forky for the rig scripts); output as bytes."""
    e = dict(os.environ, TZ=TZ, SUITE="forky", JK_CHROOT_SUITE="forky")
    e.update(env or {})
    argv = [a if isinstance(a, bytes) else str(a) for a in argv]
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=cwd, input=input, env=e)
    except subprocess.TimeoutExpired as exc:
        raise RigError(f"{argv!r} did not finish within {timeout}s") from exc
    if check and p.returncode != 0:
        raise RigError(f"{argv!r} exited {p.returncode}\nstdout: {_show(p.stdout)}\nstderr: {_show(p.stderr)}")
    return p


def bindable(port):
    """True when 127.0.0.1:port can be bound now (as a daemon would, with
    SO_REUSEADDR). 47817/47818 lie in Linux's ephemeral range, so a client's
    outgoing socket can sit on them for a while."""
    import socket
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# --- Kafka -------------------------------------------------------------------


@dataclass
class Message:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict = field(default_factory=dict)


class Broker:
    """A tansu broker (in-memory storage) on 127.0.0.1:port."""

    def __init__(self, dir, port):
        self.dir = Path(dir)
        self.port = port

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        run([RIG / "tansu.sh", "start", self.dir, self.port], timeout=180)
        log(f"tansu up on {self.bootstrap}")

    def stop(self):
        run([RIG / "tansu.sh", "stop", self.dir], check=False, timeout=30)

    def consume(self, topic, expect, timeout=60.0, linger=2.0):
        """Read `topic` from its beginning until `expect` messages are in, then
        watch `linger` s more for extra ones."""
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
            msgs.append(Message(o["partition"], o["offset"], key, value, o.get("headers") or {}))
        if p.returncode not in (0, 3, 5):
            raise RigError(f"consume.py exited {p.returncode}: {_show(p.stderr)}")
        return Consumed(msgs, p.returncode, p.stderr.decode("utf-8", "replace"))

    def topics(self):
        """Names of the broker's topics (metadata; creates nothing)."""
        from confluent_kafka.admin import AdminClient
        md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=20)
        return set(md.topics)


def record_id_problems(messages):
    bad, seen = [], {}
    for m in messages:
        h = m.headers or {}
        rid = h.get(RECORD_ID_HEADER)
        if set(h) != {RECORD_ID_HEADER} or not isinstance(rid, str) or not re.fullmatch(r"[0-9]+", rid):
            bad.append(f"{m.partition}/{m.offset}: headers {h!r}, expected one decimal {RECORD_ID_HEADER}")
            continue
        if rid in seen:
            bad.append(f"{RECORD_ID_HEADER} {rid} at {seen[rid]} and {m.partition}/{m.offset}")
        seen[rid] = f"{m.partition}/{m.offset}"
    return bad


# --- the record's text form (json-c, compact) ----------------------------------


def _jsonc_string(s):
    out = ['"']
    esc = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
           "\t": "\\t"}
    for ch in s:
        if ch in esc:
            out.append(esc[ch])
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def jsonc_value(v):
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        t = "%.17g" % v
        return t if ("." in t or "e" in t) else t + ".0"
    if isinstance(v, str):
        return _jsonc_string(v)
    raise InvalidRecord(f"unexpected JSON value type {type(v).__name__}: {v!r}")


def decode_record(value, *, replace_invalid_utf8=False):
    """Message value -> [(key, value)] in emission order. InvalidRecord unless
    strict UTF-8 (or, with replace_invalid_utf8, after U+FFFD replacement), one
    flat JSON object without duplicate keys, in json-c's exact compact form."""
    if value is None:
        raise InvalidRecord("null message value")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not replace_invalid_utf8:
            raise InvalidRecord(f"not UTF-8: {exc}")
        text = value.decode("utf-8", "replace")
    try:
        obj = json.loads(text, object_pairs_hook=lambda p: ("obj", p))
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"not JSON: {exc}; around {text[max(0, exc.pos - 30):exc.pos + 30]!r}")
    if not (isinstance(obj, tuple) and obj[0] == "obj"):
        raise InvalidRecord("top level is not an object")
    pairs = obj[1]
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
        raise InvalidRecord(f"not json-c's compact form at char {i}: {text[max(0, i - 30):i + 30]!r} "
                            f"vs {canon[max(0, i - 30):i + 30]!r}")
    return pairs


# 26.05 emission order (shared/slurm/record-format.md).
RECORD_KEYS = [
    "jobid", "sluid", "original_sluid", "container", "username", "user_id", "groupname", "group_id",
    "@start", "@end", "elapsed", "partition", "alloc_node", "nodes", "total_cpus", "total_nodes",
    "derived_ec", "exit_code", "state", "failed_node", "cpu_hours", "array_job_id", "array_task_id",
    "pack_job_id", "pack_job_offset", "het_job_id", "het_job_offset", "priority", "@submit",
    "@eligible", "@queue_wait", "work_dir", "std_err", "std_in", "std_out", "cluster", "qos", "ntasks",
    "ntasks_per_node", "ntasks_per_tres", "cpus_per_task", "orig_dependency", "excluded_nodes",
    "features", "time_limit", "job_name", "reservation_name", "wc_key", "tres_req_raw", "tres_req",
    "tres_alloc_raw", "tres_alloc", "account", "admin_comment", "comment", "script", "parent_accounts",
]
# In finish records only (25.05+): record-format.md, column "when" = F.
FINISH_ONLY = ["@end", "elapsed", "derived_ec", "exit_code", "failed_node", "cpu_hours",
               "pack_job_id", "pack_job_offset"]
ALWAYS = ["jobid", "sluid", "container", "username", "user_id", "groupname", "group_id", "partition",
          "alloc_node", "nodes", "total_cpus", "total_nodes", "state"]
ALWAYS_FINISH = ["derived_ec", "exit_code", "failed_node", "cpu_hours", "elapsed"]
SLUID_RE = re.compile(r"^s[0-9A-HJKMNP-TV-Z]{13}$")


def schema_problems(pairs, start):
    """Keys, order and types of a 26.05 finish (start=False) or start record."""
    order = {k: i for i, k in enumerate(RECORD_KEYS)}
    keys = [k for k, _ in pairs]
    problems = []
    unknown = [k for k in keys if k not in order]
    if unknown:
        problems.append(f"keys not in the 26.05 schema: {unknown}")
    idx = [order[k] for k in keys if k in order]
    if idx != sorted(idx):
        problems.append(f"key order differs from the schema: {keys}")
    missing = [k for k in ALWAYS + ([] if start else ALWAYS_FINISH) if k not in keys]
    if missing:
        problems.append(f"always-present keys missing: {missing}")
    if start:
        extra = [k for k in FINISH_ONLY if k in keys]
        if extra:
            problems.append(f"finish-only keys in a start record: {extra}")
    d = dict(pairs)
    if start and d.get("state", "absent") is not None:
        problems.append(f"start record has state {d.get('state', '<absent>')!r}, not null")
    if not start and not isinstance(d.get("state"), str):
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
    return problems


# --- scontrol ----------------------------------------------------------------


@dataclass
class Snapshot:
    fields: dict

    def get(self, key, default=None):
        v = self.fields.get(key)
        return v[0] if v else default

    def __getitem__(self, key):
        v = self.fields.get(key)
        if not v:
            raise KeyError(f"scontrol printed no {key}=")
        return v[0]

    @property
    def jobid(self):
        return int(self["JobId"])

    @property
    def state(self):
        return self["JobState"]


def parse_scontrol_jobs(raw):
    """`scontrol show job -d -o` output -> {jobid: Snapshot}. Fields split at
    ' Key=' (capital first letter); the tests' names never contain that."""
    text = raw.decode("utf-8", "replace")
    jobs = {}
    for chunk in re.split(r"(?:^|\n)(?=JobId=\d+ )", text):
        if not chunk.strip():
            continue
        out = {}
        ms = list(_KEY_AT.finditer(chunk))
        for i, m in enumerate(ms):
            end = ms[i + 1].start() if i + 1 < len(ms) else len(chunk)
            out.setdefault(m.group(1), []).append(chunk[m.end():end].rstrip(" \n"))
        s = Snapshot(out)
        jobs[s.jobid] = s
    return jobs


def scontrol_time_utc(v):
    if v in (None, "", "Unknown", "None", "N/A", "(null)"):
        return None
    return (datetime.strptime(v, "%Y-%m-%dT%H:%M:%S") - TZ_OFFSET).strftime("%Y-%m-%dT%H:%M:%S")


# --- a Slurm 26.05.5 cluster in the forky chroot --------------------------------


class Cluster:
    """A single-node cluster (ci/rig/slurm-chroot.sh, SUITE=forky) with our
    plugin ("ours") or SchedMD's ("schedmd"), JobCompParams `params`."""

    def __init__(self, *, name, dir, ctld_port, slurmd_port, plugin, bootstrap, params,
                 debugflags="JobComp", extra_conf=()):
        self.name = name
        self.dir = Path(dir)
        assert str(self.dir).startswith(str(CHROOT_ROOT) + "/"), self.dir
        self.ctld_port, self.slurmd_port = ctld_port, slurmd_port
        self.plugin = plugin
        self.bootstrap = bootstrap
        self.params = params
        self.debugflags = debugflags
        self.extra_conf = list(extra_conf)

    def inpath(self, host_path):
        p = str(host_path)
        assert p.startswith(str(CHROOT_ROOT) + "/"), p
        return p[len(str(CHROOT_ROOT)):]

    def inpath_b(self, host_path_b):
        root = os.fsencode(str(CHROOT_ROOT))
        assert host_path_b.startswith(root + b"/")
        return host_path_b[len(root):]

    @property
    def indir(self):
        return self.inpath(self.dir)

    @property
    def finish_topic(self):  # JobCompParams topic default: ClusterName
        return self.name

    @property
    def start_topic(self):  # topic_job_start default: <ClusterName>-job-start
        return f"{self.name}-job-start"

    def ctld_pid(self):
        try:
            return int((self.dir / "slurmctld.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self):
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        os.chmod(self.dir, 0o755)
        lines = ["# JobCompLoc of the 26.05.5 e2e tests", f"bootstrap.servers={self.bootstrap}"]
        lines += [f"{k}={v}" for k, v in KAFKA_PROPS.items()]
        (self.dir / "kafka.conf").write_text("\n".join(lines) + "\n")
        os.chmod(self.dir / "kafka.conf", 0o600)
        args = ["start", CHROOT_ROOT, self.dir, "--jobcomp", "jobcomp/kafka",
                "--jobcomp-loc", self.inpath(self.dir / "kafka.conf"),
                "--ctld-port", str(self.ctld_port), "--slurmd-port", str(self.slurmd_port),
                "--cluster", self.name, "--fresh"]
        if self.params:
            args += ["--jobcomp-params", self.params]
        if self.debugflags:
            args += ["--debugflags", self.debugflags]
        if self.plugin == "ours":
            so = REPO / "build" / f"slurm-{RELEASE}" / "jobcomp_kafka.so"
            if not so.is_file():
                raise RigError(f"{so} missing: run make build SLURM_VERSION={RELEASE}")
            pdir = self.dir / "plugins"
            pdir.mkdir()
            shutil.copy2(so, pdir / "jobcomp_kafka.so")
            # Ours first: the system directory holds SchedMD's jobcomp_kafka.so.
            args += ["--conf", f"PluginDir={self.inpath(pdir)}:{SYSTEM_PLUGINDIR}"]
        for kv in self.extra_conf:
            args += ["--conf", kv]
        for attempt in (1, 2):
            ports = [self.ctld_port, self.slurmd_port]
            wait_for(lambda: all(bindable(p) for p in ports), 90, f"ports {ports} to be free", interval=0.5)
            try:
                run([RIG / "slurm-chroot.sh", *args], timeout=240)
                break
            except RigError as exc:
                if attempt == 2:
                    raise
                log(f"cluster {self.name} did not start ({str(exc).splitlines()[0][:200]}); once more")
                self.stop()
        self.check_plugin_loaded()
        log(f"cluster {self.name} ({self.plugin} plugin, JobCompParams={self.params or '-'}) up: "
            f"ctld :{self.ctld_port}, dir {self.dir}")

    def check_plugin_loaded(self):
        """The jobcomp_kafka.so mapped into slurmctld is the one meant."""
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
        if not all(p.endswith(want) for p in paths):
            raise RigError(f"slurmctld {pid} maps {sorted(set(paths))}, expected {want}")

    def stop(self):
        if (self.dir / "rig.env").exists():
            run([RIG / "slurm-chroot.sh", "stop", self.dir], check=False, timeout=120)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def cmd(self, name, *args, check=True, timeout=60, input=None):
        return run([self.dir / "bin" / name, *args], check=check, timeout=timeout, cwd=self.dir, input=input)

    def sbatch(self, *args, input=None):
        p = self.cmd("sbatch", "--parsable", *args, input=input)
        return int(p.stdout.decode().strip().split(";")[0])

    def scontrol(self, *args, check=True):
        return self.cmd("scontrol", *args, check=check)

    def show_jobs(self, jobid=None):
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
        pending = set(jobids)

        def check():
            jobs = self.show_jobs()
            for jid in list(pending):
                mine = [s for s in jobs.values() if s.jobid == jid or s.get("ArrayJobId") == str(jid)]
                if mine and all(s.state in FINAL_STATES for s in mine):
                    pending.discard(jid)
            return not pending

        wait_for(check, timeout, f"jobs {sorted(pending)} to end on {self.name}", interval=0.3)

    def log_text(self):
        try:
            return (self.dir / "slurmctld.log").read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""


