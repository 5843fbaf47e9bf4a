"""Helpers of the secured-Kafka end-to-end tests (tests/e2e_secured).

Real parts only: Slurm 22.05.8's slurmctld on the host (through jk.Cluster and
ci/rig/slurm-host.sh), tansu as the broker (ci/rig/tansu.sh), Debian's stunnel4
as its TLS endpoint with certificates made by openssl (ci/rig/tls.sh), MIT's
KDC (ci/rig/kdc.sh). The JobCompLoc files are the README's "Secured Kafka"
examples with only host names, ports and directories replaced.

Ports: only 127.0.0.1:20300-20399 (PORTS below), so that this suite can run
next to the other end-to-end suites.
"""

import os
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

import jk  # noqa: E402
from jk import RIG, Message, RigError, log, run, wait_for  # noqa: E402

README = jk.REPO / "README.md"

# Every port of this suite (127.0.0.1 only): (broker's plaintext listener,
# TLS endpoint in front of it) and (slurmctld, slurmd) per test.
PORTS = {
    "tls": {"broker": (20300, 20301), "cluster": (20310, 20311)},
    "mtls": {"broker": (20302, 20303), "cluster": (20312, 20313)},
    "wrong-ca": {"broker": (20304, 20305), "cluster": (20314, 20315)},
    "expired": {"broker": (20306, 20307), "cluster": (20316, 20317)},
    "wrong-host": {"broker": (20308, 20309), "cluster": (20318, 20319)},
    "scram": {"broker": (20320, 20321), "cluster": (20322, 20323)},
    "plain": {"broker": (20324, None), "cluster": (20326, 20327)},
    "kerberos": {"broker": (20330, None), "cluster": (20332, 20333), "kdc": 20334},
    "oidc": {"broker": (20340, 20341), "cluster": (20342, 20343), "provider": 20344},
}

# What the README's examples name, and what the tests put there instead.
EXAMPLE_HOST_PORTS = ("kafka1.example.org:9093", "kafka1.example.org:9092")
EXAMPLE_DIR = "/etc/slurm/kafka/"

# librdkafka properties the tests add after an example: no record may time
# out while a test runs, and reconnects come quickly (a flood of log lines
# would show within seconds).
TEST_PROPS = {"message.timeout.ms": "120000", "reconnect.backoff.max.ms": "1000"}


def readme_examples():
    """{name: text} of the README's `<!-- secured-example: NAME -->` blocks."""
    text = README.read_text()
    found = dict(re.findall(r"<!-- secured-example: (\S+) -->\n```[a-z]*\n(.*?)```", text, re.S))
    if not found:
        raise RigError(f"no secured-example blocks in {README}")
    return found


def example_property(text, key):
    for line in text.splitlines():
        if line.startswith(key + "="):
            return line.split("=", 1)[1]
    raise KeyError(key)


# The README's OpenID provider (token endpoint https://idp.example.org:8443/token).
EXAMPLE_IDP = "idp.example.org:8443"


def localize(text, bootstrap, conf_dir, idp=None):
    """The README example with the broker's address (and the OpenID
    provider's), and the directory of its files replaced; nothing else
    changes."""
    for hp in EXAMPLE_HOST_PORTS:
        text = text.replace(hp, bootstrap)
    if idp:
        text = text.replace(EXAMPLE_IDP, idp)
    return text.replace(EXAMPLE_DIR, str(conf_dir).rstrip("/") + "/")


class RigProcess:
    """A daemon started by a ci/rig script `start DIR ...` and stopped by
    `stop DIR` (noida.sh, kdc.sh, oidc.sh)."""

    def __init__(self, script, dir, *args):
        self.script = RIG / script
        self.dir = Path(dir)
        self.args = [str(a) for a in args]

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        run([self.script, "start", self.dir, *self.args], timeout=300)
        return self

    def stop(self):
        run([self.script, "stop", self.dir], check=False, timeout=60)


def host_release():
    return run([jk.REPO / "ci" / "slurm-version.sh"]).stdout.decode().strip()


class SecuredCluster(jk.Cluster):
    """A host cluster (Slurm 22.05) whose JobCompLoc file is `conf_text`
    (a localized README example) plus TEST_PROPS."""

    def __init__(self, *, conf_text, **kw):
        super().__init__(bootstrap=None, **kw)
        self.conf_text = conf_text

    def write_kafka_conf(self, props=None):
        lines = [self.conf_text.rstrip("\n"), "# added by the test"]
        lines += [f"{k}={v}" for k, v in TEST_PROPS.items()]
        (self.dir / "kafka.conf").write_text("\n".join(lines) + "\n")
        os.chmod(self.dir / "kafka.conf", 0o600)

    def plugin_lines(self, since=0):
        """The slurmctld log's jobcomp/kafka lines after byte offset `since`.
        The log must hold the plugin's start-up line (a line that must be
        there), so that a "no error" check cannot pass on a log not read."""
        data = self.log_path.read_bytes()
        assert b"jobcomp/kafka: started: " in data, f"no start-up line of the plugin in {self.log_path}"
        return [ln for ln in data[since:].decode("utf-8", "replace").splitlines() if "jobcomp/kafka" in ln]

    def log_size(self):
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def shutdown_ctld(self):
        pid = self.ctld_pid()
        assert pid and jk.pid_alive(pid), "slurmctld not running"
        self.scontrol("shutdown", "slurmctld")
        wait_for(lambda: not jk.pid_alive(pid), 60, f"slurmctld {pid} to exit after scontrol shutdown")


def start_cluster(stack, release, session_dir, name, conf_text, ports=None):
    """A started SecuredCluster named after the test case `name`, with the
    cluster ports of PORTS[ports or name], stopped at the end of the test
    (through `stack`)."""
    ctld, slurmd = PORTS[ports or name]["cluster"]
    c = SecuredCluster(release=release, name=f"jksec{name.replace('-', '')}", dir=session_dir / f"cluster-{name}",
                       ctld_port=ctld, slurmd_port=slurmd, plugin="ours", conf_text=conf_text,
                       topic=f"jk-sec-{name}", params="flush_timeout=1000")
    stack.append(c)
    c.start()
    return c


def saved_at_shutdown(c, ids):
    """Stop slurmctld; every one of the jobs' records must be in the state
    file (nothing lost). Returns [(job id, bytes)]."""
    c.shutdown_ctld()
    _, saved = jk.read_state_file(c.state_dir / "jobcomp_kafka_state")
    assert sorted(j for j, _ in saved) == sorted(ids), f"saved {[j for j, _ in saved]}, jobs {sorted(ids)}"
    return saved


class TlsBroker:
    """tansu on 127.0.0.1:plain_port, advertised as 127.0.0.1:tls_port where
    stunnel accepts TLS and forwards to it (clients must come back through
    the TLS port). tls_port None: tansu alone, advertised as itself."""

    def __init__(self, dir, plain_port, tls_port, tansu_args=()):
        self.dir = Path(dir)
        self.plain_port = plain_port
        self.tls_port = tls_port
        self.tansu_args = list(tansu_args)
        self.tansu_pid = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.tls_port or self.plain_port}"

    def start_tansu(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        tansu = run([RIG / "tansu.sh", "bin"], timeout=300).stdout.decode().strip()
        jk.wait_bindable([self.plain_port], 60)
        adv = self.tls_port or self.plain_port
        logf = open(self.dir / "tansu.log", "ab")
        import subprocess
        p = subprocess.Popen([tansu, "broker", "--listener-url", f"tcp://127.0.0.1:{self.plain_port}",
                              "--advertised-listener-url", f"tcp://127.0.0.1:{adv}",
                              "--storage-engine", "memory://tansu/", *self.tansu_args],
                             stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        logf.close()
        self.tansu_pid = p.pid
        self._proc = p
        wait_for(lambda: jk.port_open(self.plain_port), 20, f"tansu on {self.plain_port}")
        log(f"tansu pid {p.pid} on 127.0.0.1:{self.plain_port} (advertised {adv}) {' '.join(self.tansu_args)}")

    def tls_connections(self):
        """Connections stunnel accepted on the TLS port so far (its log has a
        line for each)."""
        try:
            return (self.dir / "stunnel.log").read_text(errors="replace").count("accepted connection")
        except OSError:
            return 0

    def wait_retries(self, since, what, timeout=90):
        """Waits until at least two more connections than `since` reached the
        TLS port: a client that keeps retrying was watched while it did."""
        wait_for(lambda: self.tls_connections() >= since + 2, timeout, f"two more connection attempts ({what})")

    def start_tls(self, cert, key, verify=None):
        args = [RIG / "tls.sh", "start", self.dir, self.tls_port, self.plain_port, cert, key]
        if verify:
            args += ["--verify", verify]
        jk.wait_bindable([self.tls_port], 60)
        run(args, timeout=300)

    def stop_tls(self):
        run([RIG / "tls.sh", "stop", self.dir], check=False, timeout=30)

    def stop(self):
        if self.tls_port:
            self.stop_tls()
        if self.tansu_pid and jk.pid_alive(self.tansu_pid):
            os.kill(self.tansu_pid, 15)
            try:
                self._proc.wait(3)
            except Exception:  # noqa: BLE001 - tansu 0.6 takes > 5 s on SIGTERM
                os.kill(self.tansu_pid, 9)
                self._proc.wait(10)
        self.tansu_pid = None


def consume(bootstrap, conf, topic, expect, timeout=60.0, linger=3.0):
    """Read `topic` from its beginning with confluent-kafka (the rig venv's)
    and the client properties `conf` until `expect` messages are in, then
    `linger` s more for extra ones. Returns [jk.Message]."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"jk-secured-{os.getpid()}-{time.time()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", **conf})
    msgs = []
    try:
        deadline = time.monotonic() + timeout
        md = None
        while time.monotonic() < deadline:
            md = c.list_topics(timeout=10)
            if topic in md.topics and md.topics[topic].partitions:
                break
            time.sleep(0.5)
        else:
            return msgs
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.topics[topic].partitions])
        stop_at = deadline
        while time.monotonic() < stop_at:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise RigError(f"consumer: {m.error()}")
            headers = {}
            for name, value in m.headers() or []:
                headers[name] = value.decode("utf-8", "replace") if value is not None else None
            msgs.append(Message(m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1], headers))
            if len(msgs) == expect:
                stop_at = min(stop_at, time.monotonic() + linger)
    finally:
        c.close()
    return msgs


def lay_out_conf_dir(conf_dir, certs, files):
    """Copy `files` {name under conf_dir: path in certs} (the README's file
    names), mode 0600, as an administrator lays out /etc/slurm/kafka/."""
    conf_dir = Path(conf_dir)
    conf_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(conf_dir, 0o700)
    for name, src in files.items():
        shutil.copyfile(Path(certs) / src, conf_dir / name)
        os.chmod(conf_dir / name, 0o600)
