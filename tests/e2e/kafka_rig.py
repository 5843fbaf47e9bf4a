"""Apache Kafka itself for the tests: ci/rig/kafka.sh driven from Python.

`ApacheKafka` has the interface of jk.Broker (tansu): bootstrap, start, stop,
consume, topics; so a test takes either. It adds what only a real Kafka has:
topics with a replication factor and configs, ACLs, SCRAM users, kill (crash
tests) and the command-line tools. `ApacheKafkaCluster` runs N nodes, each
broker and controller, on distinct loopback ports.

    k = ApacheKafka(session_dir / "kafka4", 21000, version="4")
    k.start()
    k.create_topic("jobs", partitions=3, configs={"max.message.bytes": 1048588})
    ...
    k.stop()

Versions: "4" and "3.9" are the rig's aliases of the pinned exact versions
(`ci/rig/kafka.sh versions`); an exact version works too.
"""

import json
import os
import re
import threading
from pathlib import Path

from jk import RIG, Broker, RigError, log, run

KAFKA_SH = RIG / "kafka.sh"


def _props_text(props):
    if props is None:
        return None
    if isinstance(props, str):
        return props
    return "".join(f"{k}={v}\n" for k, v in props.items())


class ApacheKafka(Broker):
    """One KRaft node (broker + controller by default) of Apache Kafka.

    props: extra server.properties (dict or text); the last value of a key
    wins, so listeners, advertised.listeners, listener.security.protocol.map,
    inter.broker.listener.name, authorizer.class.name, super.users... may be
    replaced. client_config: librdkafka properties (dict) for the rig's
    readiness check when the node has no PLAINTEXT listener at host:port.
    command_config: a Java client properties file given to the tools
    (--command-config) when they must log in. scram_users: {name: password},
    SCRAM-SHA-512 users made when the directory is first formatted. jaas:
    path of a JAAS file, or its text. jvm_opts: more JVM options.
    """

    def __init__(self, dir, port, *, version="4", host="127.0.0.1", controller_port=None, node_id=1,
                 quorum=None, cluster_id=None, props=None, client_config=None, command_config=None,
                 scram_users=None, jaas=None, jvm_opts=(), heap=None, netns=None, start_timeout=240, roles=None):
        super().__init__(dir, port)
        self.version = version
        self.host = host
        self.controller_port = controller_port or port + 1
        self.node_id = node_id
        self.quorum = quorum
        self.cluster_id = cluster_id
        self.props = props
        self.client_config = client_config
        self.command_config = command_config
        self.scram_users = dict(scram_users or {})
        self.jaas = jaas
        self.jvm_opts = list(jvm_opts)
        self.heap = heap
        self.netns = netns
        self.start_timeout = start_timeout
        # process.roles: None for kafka.sh's default (broker,controller);
        # "controller" for a controller-only node (it serves no metadata to
        # clients: start it with wait=False), "broker" for a broker-only one.
        self.roles = roles

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def _start_argv(self, wait):
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [KAFKA_SH, "start", self.dir, "--version", self.version, "--host", self.host,
                "--port", self.port, "--controller-port", self.controller_port, "--node-id", self.node_id,
                "--timeout", self.start_timeout]
        if self.quorum:
            argv += ["--quorum", self.quorum]
        if self.cluster_id:
            argv += ["--cluster-id", self.cluster_id]
        text = _props_text(self.props)
        if text is not None:
            (self.dir / "extra.properties").write_text(text)
            argv += ["--props", self.dir / "extra.properties"]
        if self.client_config:
            (self.dir / "ready-client.properties").write_text(_props_text(self.client_config))
            argv += ["--client-config", self.dir / "ready-client.properties"]
        for name, password in self.scram_users.items():
            argv += ["--scram-user", f"{name}={password}"]
        if self.jaas:
            path = Path(self.jaas) if os.path.exists(str(self.jaas)) else None
            if path is None:
                path = self.dir / "jaas.conf"
                path.write_text(self.jaas)
            argv += ["--jaas", path]
        for o in self.jvm_opts:
            argv += ["--jvm-opt", o]
        if self.heap:
            argv += ["--heap", self.heap]
        if self.netns:
            argv += ["--netns", self.netns]
        if self.roles:
            argv += ["--roles", self.roles]
        if not wait:
            argv.append("--no-wait")
        return argv

    def start(self, wait=True):
        """Format once, start; with wait, return once the node serves metadata.
        The first start on a machine installs Kafka (Maven Central)."""
        run(self._start_argv(wait), timeout=self.start_timeout + 600)
        if wait:
            log(f"Apache Kafka {self.version} node {self.node_id} up on {self.bootstrap}")

    def wait(self):
        run([KAFKA_SH, "wait", self.dir, "--timeout", self.start_timeout], timeout=self.start_timeout + 30)
        log(f"Apache Kafka {self.version} node {self.node_id} up on {self.bootstrap}")

    def stop(self, grace=30):
        """SIGTERM (controlled shutdown), SIGKILL after `grace` s. Data kept."""
        run([KAFKA_SH, "stop", self.dir, "--grace", grace], check=False, timeout=grace + 30)

    def kill(self):
        """SIGKILL at once (a crash). Data kept; start() restarts the node."""
        run([KAFKA_SH, "stop", self.dir, "--kill"], check=False, timeout=30)

    def pid(self):
        p = run([KAFKA_SH, "pid", self.dir], check=False, timeout=30)
        return int(p.stdout) if p.returncode == 0 else None

    def running(self):
        return self.pid() is not None

    # --- Kafka's command-line tools ------------------------------------------

    def tool(self, name, *args, check=True, timeout=120, bootstrap_arg="--bootstrap-server"):
        """Run Kafka's tool `name` (topics, acls, configs, ...) against this
        node: bootstrap_arg and command_config are added; stdout as text."""
        argv = [KAFKA_SH, "tool", self.version, name]
        if bootstrap_arg:
            argv += [bootstrap_arg, self.bootstrap]
        if self.command_config:
            argv += ["--command-config", self.command_config]
        p = run(argv + [str(a) for a in args], check=check, timeout=timeout)
        return p.stdout.decode("utf-8", "replace")

    def create_topic(self, name, partitions=1, rf=1, configs=None):
        args = ["--create", "--topic", name, "--partitions", partitions, "--replication-factor", rf]
        for k, v in (configs or {}).items():
            args += ["--config", f"{k}={v}"]
        self.tool("topics", *args)

    def delete_topic(self, name):
        self.tool("topics", "--delete", "--topic", name)

    def describe_topic(self, name):
        return self.tool("topics", "--describe", "--topic", name)

    def alter_topic_config(self, name, configs):
        """Set topic configs (e.g. {"max.message.bytes": 4194304}) on a live topic."""
        self.tool("configs", "--alter", "--entity-type", "topics", "--entity-name", name, "--add-config",
                  ",".join(f"{k}={v}" for k, v in configs.items()))

    def add_scram_user(self, name, password):
        """Create or replace a SCRAM-SHA-512 user on the running node."""
        self.tool("configs", "--alter", "--entity-type", "users", "--entity-name", name, "--add-config",
                  f"SCRAM-SHA-512=[password={password}]")

    def _acl_args(self, principal, operations, topic, group, cluster, transactional_id, deny):
        args = ["--deny-principal" if deny else "--allow-principal", principal]
        for op in ([operations] if isinstance(operations, str) else operations):
            args += ["--operation", op]
        if topic is not None:
            args += ["--topic", topic]
        if group is not None:
            args += ["--group", group]
        if transactional_id is not None:
            args += ["--transactional-id", transactional_id]
        if cluster:
            args.append("--cluster")
        return args

    def add_acl(self, principal, operations, *, topic=None, group=None, cluster=False, transactional_id=None,
                deny=False):
        """kafka-acls --add, e.g. add_acl("User:jobcomp", ["Write", "Describe"], topic="jobs")."""
        self.tool("acls", "--add", *self._acl_args(principal, operations, topic, group, cluster,
                                                   transactional_id, deny))

    def remove_acl(self, principal, operations, *, topic=None, group=None, cluster=False, transactional_id=None,
                   deny=False):
        self.tool("acls", "--remove", "--force", *self._acl_args(principal, operations, topic, group, cluster,
                                                                 transactional_id, deny))

    def acls(self):
        """kafka-acls --list, as printed."""
        return self.tool("acls", "--list")


class ApacheKafkaCluster:
    """N nodes (each broker and controller) on host, node i (1..N) with client
    port base_port + 2(i-1) and controller port one above. Same interface as
    a Broker for bootstrap/consume/topics/tools (through node 1)."""

    def __init__(self, dir, base_port, n=3, *, version="4", host="127.0.0.1", heap="384m", **node_kwargs):
        self.dir = Path(dir)
        ports = [base_port + 2 * i for i in range(n)]
        quorum = ",".join(f"{i + 1}@{host}:{p + 1}" for i, p in enumerate(ports))
        cid = run([KAFKA_SH, "cluster-id"]).stdout.decode().strip()
        self.nodes = [ApacheKafka(self.dir / f"node{i + 1}", p, version=version, host=host, node_id=i + 1,
                                  quorum=quorum, cluster_id=cid, heap=heap, **node_kwargs)
                      for i, p in enumerate(ports)]

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id):
        return self.nodes[node_id - 1]

    def start(self):
        """Start every node, then wait for each (a node alone has no quorum)."""
        for n in self.nodes:
            n.start(wait=False)
        for n in self.nodes:
            n.wait()

    def stop(self):
        """Stop every node at once: a node stopped last, alone, has no quorum
        for its controlled shutdown and would wait for SIGKILL."""
        threads = [threading.Thread(target=n.stop) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def voters(self):
        """Node ids of the controller quorum's current voters."""
        out = run([KAFKA_SH, "tool", self.nodes[0].version, "metadata-quorum", "--bootstrap-server",
                   self.bootstrap, "describe", "--status"]).stdout.decode()
        m = re.search(r"CurrentVoters:\s*(\[.*\])", out)
        if not m:
            raise RigError(f"no CurrentVoters in: {out}")
        return sorted(v["id"] if isinstance(v, dict) else v for v in json.loads(m.group(1)))

    def consume(self, *a, **kw):
        return self._any().consume(*a, **kw)

    def topics(self):
        return self._any().topics()

    def create_topic(self, name, partitions=1, rf=3, configs=None):
        self._any().create_topic(name, partitions, rf, configs)

    def _any(self):
        for n in self.nodes:
            if n.running():
                return n
        raise RigError("no node of the cluster is running")
