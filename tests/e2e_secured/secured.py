"""Helpers of the secured-Kafka end-to-end tests (tests/e2e_secured).

Real parts only: Slurm 22.05.8's slurmctld on the host (through jk.Cluster and
ci/rig/slurm-host.sh); Apache Kafka 4.x itself (ci/rig/kafka.sh, through
kafka_rig.ApacheKafka) as the broker, ONE node for the whole session with a
listener per security setting (SecuredKafka below); certificates made by
openssl (ci/rig/tls.sh); MIT's KDC (ci/rig/kdc.sh); npm's oidc-provider
(ci/rig/oidc.sh). The JobCompLoc files are docs/securing-kafka.md's
examples with only host names, ports and directories replaced; the broker's
settings and the ACLs are docs/apache-kafka-security.md's blocks.

Ports: only 127.0.0.1:21100-21199 (PORTS below), so that this suite can run
next to the other end-to-end suites.
"""

import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

import jk  # noqa: E402
from jk import RIG, Message, RigError, log, run, wait_for  # noqa: E402
from kafka_rig import ApacheKafka  # noqa: E402

EXAMPLES_DOC = jk.REPO / "docs" / "securing-kafka.md"
SECURITY_DOC = jk.REPO / "docs" / "apache-kafka-security.md"

# Every port of this suite (127.0.0.1 only). The broker's listeners: the
# controller's and the broker's own (mutual TLS with the broker's
# certificate, the super user), then one per case.
LISTENERS = {
    "CONTROLLER": 21100, "BROKER": 21101, "TLS": 21102, "MTLS": 21103, "EXPIRED": 21104,
    "WRONGHOST": 21105, "SCRAM": 21106, "GSSAPI": 21107, "OIDC": 21108, "PLAIN": 21109,
}
KDC_PORT = 21110
PROVIDER_PORT = 21111
# The lifetime of every token the OpenID provider issues (ci/rig/oidc.sh
# OIDC_TOKEN_TTL), in seconds: short, so that a test sees tokens expire and
# be refreshed (test_oidc.py), long enough for a token to be fetched and a
# connection re-authenticated under load.
TOKEN_TTL = 20
# (slurmctld, slurmd) per test case.
PORTS = {name: {"cluster": (21120 + 2 * i, 21121 + 2 * i)} for i, name in enumerate(
    ["tls", "mtls", "mtls-other-ca", "wrong-ca", "expired", "wrong-host", "scram", "scram256", "scram-wrong",
     "kerberos", "kerberos-bad", "oidc", "oidc-audience", "oidc-secret", "acl", "acl-none", "plain-wrong",
     "acl-prefixed", "acl-wildcard", "oidc-refresh"])}
REALM = "EXAMPLE.ORG"
# The broker's own Kerberos service principal: librdkafka asks for
# <sasl.kerberos.service.name>/<the broker's host as it connects to it>.
BROKER_KRB_PRINCIPAL = f"kafka/127.0.0.1@{REALM}"

# What docs/securing-kafka.md's examples name, and what the tests put there instead.
EXAMPLE_HOST_PORTS = ("kafka1.example.org:9093", "kafka1.example.org:9092")
EXAMPLE_DIR = "/etc/slurm/kafka/"

# librdkafka properties the tests add after an example: no record may time
# out while a test runs, and reconnects come quickly (a flood of log lines
# would show within seconds).
TEST_PROPS = {"message.timeout.ms": "120000", "reconnect.backoff.max.ms": "1000"}


def doc_blocks(kind, path=SECURITY_DOC):
    """{name: text} of the `<!-- KIND: NAME -->` code blocks of a doc."""
    text = Path(path).read_text()
    found = dict(re.findall(r"<!-- " + re.escape(kind) + r": (\S+) -->\n```[a-z]*\n(.*?)```", text, re.S))
    if not found:
        raise RigError(f"no {kind} blocks in {path}")
    return found


# What docs/apache-kafka-security.md names, and what the suite puts there.
DOC_HOST = "kafka1.example.org"
DOC_ADMIN_PORT = "9091"
DOC_BROKER_DIR = "/etc/kafka/"
DOC_TOPIC = "hpc1"


def localize_doc(text, broker_dir, topic=None):
    """A docs block with the suite's host, ports, directory, OpenID provider
    (and topic) in place of the doc's; nothing else changes."""
    text = text.replace(f"{DOC_HOST}:{DOC_ADMIN_PORT}", f"127.0.0.1:{LISTENERS['BROKER']}")
    text = text.replace(DOC_HOST, "127.0.0.1").replace(EXAMPLE_IDP, f"127.0.0.1:{PROVIDER_PORT}")
    text = text.replace(DOC_BROKER_DIR, str(broker_dir).rstrip("/") + "/")
    if topic:
        text = re.sub(r"(--topic\s+)" + re.escape(DOC_TOPIC) + r"\b", r"\g<1>" + topic, text)
    return text


def acl_operations():
    """The operations the docs' kafka-acls block grants the plugin."""
    ops = re.findall(r"--operation\s+(\S+)", doc_blocks("kafka-acls")["plugin"])
    assert ops, "no --operation in the docs' kafka-acls block"
    return ops


# The docs' blocks of Kafka's own tools that the suite runs verbatim
# (run_doc_tool_block), by their marker kind.
DOC_TOOL_KINDS = ("kafka-acls", "kafka-configs")


def run_doc_tool_block(kafka, kind, name, replace=(), topic=None):
    """docs/apache-kafka-security.md's `kind` block `name` (kind: kafka-acls
    or kafka-configs), run verbatim with Kafka's own tool: its bootstrap,
    directory (and topic) replaced as localize_doc does, then each (old, new)
    of `replace`, each of which must be in the command. Returns (argv, the
    tool's output)."""
    assert kind in DOC_TOOL_KINDS, kind
    command = localize_doc(doc_blocks(kind)[name], kafka.conf, topic=topic)
    for old, new in replace:
        assert old in command, command
        command = command.replace(old, new)
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[0] == f"{kind}.sh", argv
    tool = kind.removeprefix("kafka-")
    return argv, run([RIG / "kafka.sh", "tool", kafka.version, tool, *argv[1:]], timeout=300).stdout.decode()


def readme_examples():
    """{name: text} of docs/securing-kafka.md's `<!-- secured-example: NAME -->` blocks."""
    text = EXAMPLES_DOC.read_text()
    found = dict(re.findall(r"<!-- secured-example: (\S+) -->\n```[a-z]*\n(.*?)```", text, re.S))
    if not found:
        raise RigError(f"no secured-example blocks in {EXAMPLES_DOC}")
    return found


def example_property(text, key):
    for line in text.splitlines():
        if line.startswith(key + "="):
            return line.split("=", 1)[1]
    raise KeyError(key)


# docs/securing-kafka.md's OpenID provider (token endpoint https://idp.example.org:8443/token).
EXAMPLE_IDP = "idp.example.org:8443"


def localize(text, bootstrap, conf_dir, idp=None):
    """The docs/securing-kafka.md example with the broker's address (and the OpenID
    provider's), and the directory of its files replaced; nothing else
    changes."""
    for hp in EXAMPLE_HOST_PORTS:
        text = text.replace(hp, bootstrap)
    if idp:
        text = text.replace(EXAMPLE_IDP, idp)
    return text.replace(EXAMPLE_DIR, str(conf_dir).rstrip("/") + "/")


class RigProcess:
    """A daemon started by a ci/rig script `start DIR ...` and stopped by
    `stop DIR` (kdc.sh, oidc.sh)."""

    def __init__(self, script, dir, *args, env=None):
        self.script = RIG / script
        self.dir = Path(dir)
        self.args = [str(a) for a in args]
        self.env = env

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        run([self.script, "start", self.dir, *self.args], timeout=300, env=self.env)
        return self

    def stop(self):
        run([self.script, "stop", self.dir], check=False, timeout=60)


def host_release():
    return run([jk.REPO / "ci" / "slurm-version.sh"]).stdout.decode().strip()


class SecuredCluster(jk.Cluster):
    """A host cluster (Slurm 22.05) whose JobCompLoc file is `conf_text`
    (a localized docs/securing-kafka.md example) plus TEST_PROPS."""

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
        The plugin's start-up line ("jobcomp/kafka: started: ...") must be in
        the log first: without it no line can come, and a check that there
        are none would prove nothing."""
        data = self.log_path.read_bytes().decode("utf-8", "replace")
        if "jobcomp/kafka: started: " not in data:
            raise RigError(f"{self.log_path}: no start-up line of the plugin (jobcomp/kafka: started: ...)")
        data = self.log_path.read_bytes()[since:].decode("utf-8", "replace")
        return [ln for ln in data.splitlines() if "jobcomp/kafka" in ln]

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


def start_cluster(stack, release, session_dir, name, conf_text, kafka=None, principal=None, ports=None):
    """A started SecuredCluster named after the test case `name`, with the
    cluster ports of PORTS[ports or name], stopped at the end of the test
    (through `stack`). With `kafka`: its topic made first, and with
    `principal` the docs' ACLs granted to it on that topic."""
    ctld, slurmd = PORTS[ports or name]["cluster"]
    topic = f"jk-sec-{name}"
    if kafka is not None:
        kafka.create_topic(topic)
        if principal:
            kafka.grant(principal, topic)
    c = SecuredCluster(release=release, name=f"jksec{name.replace('-', '')}", dir=session_dir / f"cluster-{name}",
                       ctld_port=ctld, slurmd_port=slurmd, plugin="ours", conf_text=conf_text,
                       topic=topic, params="flush_timeout=1000")
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
    """Copy `files` {name under conf_dir: path in certs} (docs/securing-kafka.md's file
    names), mode 0600, as an administrator lays out /etc/slurm/kafka/."""
    conf_dir = Path(conf_dir)
    conf_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(conf_dir, 0o700)
    for name, src in files.items():
        shutil.copyfile(Path(certs) / src, conf_dir / name)
        os.chmod(conf_dir / name, 0o600)


# --- Apache Kafka with a listener per security setting -------------------------

def broker_certs(certs):
    """The broker's PEM keystores (key then certificate) from tls.sh's
    certificates: its own (CN=kafka-broker), and for the refusal cases the
    expired one and the one for another host."""
    certs = Path(certs)
    for name in ("broker", "expired", "wronghost"):
        (certs / f"{name}-keystore.pem").write_bytes((certs / f"{name}.key").read_bytes() + (certs / f"{name}.pem").read_bytes())
        os.chmod(certs / f"{name}-keystore.pem", 0o600)


class SecuredKafka(ApacheKafka):
    """One Apache Kafka 4.x node (ci/rig/kafka.sh) for the whole session, with
    the listeners of LISTENERS and docs/apache-kafka-security.md's settings.
    The suite's own additions (not in the doc): the EXPIRED and WRONGHOST
    listeners, whose certificates are the bad ones, and the ports.

    The tests read and administer it as the super user (the broker's own
    certificate) through the BROKER listener: admin(), create_topic(), grant()."""

    def __init__(self, dir, certs, kdc_dir, *, scram_users):
        self.certs = Path(certs)
        self.conf = Path(dir) / "etc"
        ports = LISTENERS
        names = [n for n in ports]
        listeners = ",".join(f"{n}://127.0.0.1:{ports[n]}" for n in names)
        advertised = ",".join(f"{n}://127.0.0.1:{ports[n]}" for n in names if n != "CONTROLLER")
        proto = {"CONTROLLER": "SSL", "BROKER": "SSL", "TLS": "SSL", "MTLS": "SSL", "EXPIRED": "SSL",
                 "WRONGHOST": "SSL", "SCRAM": "SASL_SSL", "GSSAPI": "SASL_PLAINTEXT", "OIDC": "SASL_SSL",
                 "PLAIN": "SASL_SSL"}
        docs = doc_blocks("kafka-broker")
        jvm = doc_blocks("kafka-jvm")
        lines = [
            "# the suite's listeners (docs/apache-kafka-security.md shows the same names)",
            f"listeners={listeners}",
            f"advertised.listeners={advertised}",
            "listener.security.protocol.map=" + ",".join(f"{n}:{proto[n]}" for n in names),
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=BROKER",
            f"controller.quorum.voters=1@127.0.0.1:{ports['CONTROLLER']}",
            "# the suite's refusal cases: a listener with an expired certificate, one for another host",
            f"listener.name.expired.ssl.keystore.location={self.certs}/expired-keystore.pem",
            f"listener.name.wronghost.ssl.keystore.location={self.certs}/wronghost-keystore.pem",
            "# (their fix replaces the certificate while the broker runs: another subject)",
            "listener.name.expired.ssl.allow.dn.changes=true",
            "listener.name.wronghost.ssl.allow.dn.changes=true",
            "listener.name.wronghost.ssl.allow.san.changes=true",
        ]
        for name in ("common", "mtls", "scram", "plain", "gssapi", "oidc"):
            lines += [f"# docs/apache-kafka-security.md kafka-broker: {name}", localize_doc(docs[name], self.conf).rstrip("\n")]
        # The broker's SaslServerAuthenticator at DEBUG (ci/rig/kafka/log4j2.properties):
        # one line per (re-)authentication with the session lifetime it gives the client.
        jvm_opts = ["-Dkafka.rig.sasl.loglevel=DEBUG"]
        for name in ("gssapi", "oidc"):
            jvm_opts += localize_doc(jvm[name], self.conf).split()
        self.admin_conf = {"bootstrap.servers": f"127.0.0.1:{ports['BROKER']}", "security.protocol": "SSL",
                           "ssl.ca.location": str(self.certs / "ca.pem"),
                           "ssl.certificate.location": str(self.certs / "broker.pem"),
                           "ssl.key.location": str(self.certs / "broker.key")}
        super().__init__(dir, ports["BROKER"], version="4", controller_port=ports["CONTROLLER"],
                         props="\n".join(lines) + "\n", client_config=self.admin_conf,
                         command_config=str(self.conf / "admin.properties"), scram_users=scram_users,
                         jvm_opts=jvm_opts, heap="512m", start_timeout=300)
        self.kdc_dir = Path(kdc_dir)
        self._admin = None

    def _start_argv(self, wait):
        argv = super()._start_argv(wait)
        # The same users for SCRAM-SHA-256 (docs/securing-kafka.md: it works the same way).
        for name, password in self.scram_users.items():
            argv += ["--add-scram", f"SCRAM-SHA-256=[name={name},password={password}]"]
        return argv

    def lay_out(self):
        """/etc/kafka/ as the doc names it: ssl/ (CA, keystore), the broker's
        keytab, krb5.conf, admin.properties."""
        (self.conf / "ssl").mkdir(parents=True, exist_ok=True)
        os.chmod(self.conf, 0o700)
        for src, dst in (("ca.pem", "ssl/ca.pem"), ("broker-keystore.pem", "ssl/broker-keystore.pem")):
            shutil.copyfile(self.certs / src, self.conf / dst)
        shutil.copyfile(self.kdc_dir / "krb5.conf", self.conf / "krb5.conf")
        run([RIG / "kdc.sh", "keytab", self.kdc_dir, BROKER_KRB_PRINCIPAL, self.conf / "kafka.keytab"])
        (self.conf / "admin.properties").write_text(
            "security.protocol=SSL\nssl.truststore.type=PEM\n"
            f"ssl.truststore.location={self.conf}/ssl/ca.pem\nssl.keystore.type=PEM\n"
            f"ssl.keystore.location={self.conf}/ssl/broker-keystore.pem\n")

    def start(self, wait=True):
        self.lay_out()
        super().start(wait)

    @property
    def log_path(self):
        return self.dir / "kafka.log"

    def log_size(self):
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_lines(self, since, pattern):
        """The broker's log lines after byte offset `since` matching `pattern`."""
        data = self.log_path.read_bytes()[since:].decode("utf-8", "replace")
        return [ln for ln in data.splitlines() if re.search(pattern, ln)]

    def refused_connections(self, since, listener):
        """Connections the broker refused on LISTENERS[listener] after `since`:
        its Selector's "Failed authentication" lines (TLS handshake or SASL)."""
        return self.log_lines(since, rf"Failed authentication with /127\.0\.0\.1 \(channelId=127\.0\.0\.1:{LISTENERS[listener]}-")

    def admin(self):
        from confluent_kafka.admin import AdminClient
        if self._admin is None:
            self._admin = AdminClient(self.admin_conf)
        return self._admin

    def create_topic(self, name, partitions=1, rf=1, configs=None):
        from confluent_kafka.admin import NewTopic
        for f in self.admin().create_topics([NewTopic(name, partitions, rf, config=configs or {})]).values():
            f.result(60)

    def grant(self, principal, topic, operations=None):
        """The docs' ACLs (acl_operations()) for `principal` on `topic`,
        through the Admin API (the test of the ACL block itself runs the
        kafka-acls command verbatim)."""
        from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType
        ops = [getattr(AclOperation, o.upper()) for o in (operations or acl_operations())]
        bindings = [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, principal, "*", op,
                               AclPermissionType.ALLOW) for op in ops]
        for f in self.admin().create_acls(bindings).values():
            f.result(60)

    def set_listener_keystore(self, listener, path):
        """Replace a listener's certificate while the broker runs (dynamic
        broker config): the fix of a bad broker certificate."""
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
        key = f"listener.name.{listener.lower()}.ssl.keystore.location"
        res = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
            ConfigEntry(key, str(path), incremental_operation=AlterConfigOpType.SET)])
        for f in self.admin().incremental_alter_configs([res]).values():
            f.result(60)

    def read(self, topic, expect, timeout=60.0, linger=3.0):
        """The topic from its beginning, as the super user."""
        conf = {k: v for k, v in self.admin_conf.items() if k != "bootstrap.servers"}
        return consume(self.admin_conf["bootstrap.servers"], conf, topic, expect, timeout=timeout, linger=linger)

    def stop(self, grace=30):
        self._admin = None
        super().stop(grace)


def check_delivered(msgs, ids, prefix, saved=None):
    """Each job's record exactly once, valid (its text form, and the record
    contract: schema/ of the host's release), keyed by its job id, with one
    record id; byte for byte `saved` {job id: bytes} when given."""
    jk.check_contract("secured", msgs)
    bad = jk.take_contract_violations()
    assert not bad, f"{len(bad)} record(s) break the schema: " + "; ".join(bad[:10])
    by_job = {}
    for m in msgs:
        rec = dict(jk.decode_record(m.value))
        by_job.setdefault(rec["jobid"], []).append(rec)
        assert m.key == str(rec["jobid"]).encode()
    assert sorted(by_job) == sorted(ids), f"jobs in the topic {sorted(by_job)}, submitted {sorted(ids)}"
    assert all(len(v) == 1 for v in by_job.values()), {k: len(v) for k, v in by_job.items() if len(v) > 1}
    assert not jk.record_id_problems(msgs), jk.record_id_problems(msgs)
    for recs in by_job.values():
        assert recs[0]["state"] == "COMPLETED" and recs[0]["job_name"].startswith(prefix)
    if saved is not None:
        for m in msgs:
            assert m.value == saved[int(m.key)], f"job {int(m.key)}: delivered bytes differ from the saved ones"


# How long a refusal is watched after its error line: with
# reconnect.backoff.max.ms=1000 (TEST_PROPS) a dozen more attempts.
WATCH_S = 15


def one_error_line(c, kafka, listener, cause, since_log, since_broker, what):
    """A refused setting: the error line naming `cause` (a regex) comes,
    then for WATCH_S more seconds, with the broker refusing at least two
    connection attempts in that window, slurmctld's log holds exactly one
    jobcomp/kafka error line. Returns it."""
    def cause_lines():
        return [ln for ln in c.plugin_lines(since_log) if re.search(cause, ln)]

    wait_for(cause_lines, 90, f"the error line of {what} ({cause})")
    time.sleep(WATCH_S)
    errors = [ln for ln in c.plugin_lines(since_log) if re.search(r"\berror: ", ln)]
    attempts = len(kafka.refused_connections(since_broker, listener)) if listener else None
    jk.note_number(f"{what}: {len(errors)} error line(s) in slurmctld's log, {attempts} connection(s) refused by "
                   f"the broker on {listener}: {errors[:1]}")
    if listener:
        assert attempts >= 2, f"the broker refused {attempts} connection(s) on {listener}: the window proves no flood"
    assert len(cause_lines()) == 1 and len(errors) == 1, "\n".join(errors[:20])
    return errors[0]
