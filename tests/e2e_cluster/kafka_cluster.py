"""A replicated Apache Kafka cluster in network namespaces, for the fault
scenarios of issue 23 (tests/e2e_cluster/run.py).

Topology (KRaft, separate controllers): node i (1..3) is the network namespace
PREFIX-k{i} (ci/rig/netns.sh) at SUBNET.(10+i), holding broker i
(process.roles=broker, client port BROKER_PORT) and controller 100+i
(process.roles=controller, port CONTROLLER_PORT); the three controllers are the
quorum. Separate controllers, so that two brokers can be down while the
quorum still decides (the ISR shrinks, and a produce with acks=all is refused
with NOT_ENOUGH_REPLICAS instead of waiting on a leaderless cluster), and so
that the active controller can be killed on its own. Cutting node i's link
cuts off broker i and controller i together, as a machine losing its network.

The nodes are started with ci/rig/kafka.sh (Apache Kafka from Maven Central,
through tests/e2e/kafka_rig.py)
once per run; a scenario stops, kills or cuts some of them, and restore()
brings the cluster back (start what is stopped, heal links, wait for every
replica of every topic to be in sync) before the next one.
"""

import re
import time
from pathlib import Path

import jk
from jk import RigError, log, run, wait_for
from kafka_rig import ApacheKafka

NETNS_SH = jk.RIG / "netns.sh"


def kafka_sh():
    return jk.RIG / "kafka.sh"


# Broker and controller settings that only make faults visible sooner (the
# defaults are 30 s, 9 s, 2 s): a follower that stops fetching leaves the ISR
# after 5 s, a broker that stops heartbeating is fenced after 3 s (its
# partitions get new leaders). What the scenarios prove does not depend on
# them, only how long they take.
FAST_FAILURE_PROPS = {
    "replica.lag.time.max.ms": "5000",
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
}
# Small nodes: 6 JVMs and slurmctld share 2 cores.
SMALL_NODE_PROPS = {
    "num.network.threads": "2",
    "num.io.threads": "2",
    "num.replica.fetchers": "1",
    "background.threads": "2",
    "log.cleaner.threads": "1",
    "num.recovery.threads.per.data.dir": "1",
}
CLUSTER_PROPS = {
    # Topics are made by the scenarios, with their replication settings.
    "auto.create.topics.enable": "false",
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "unclean.leader.election.enable": "false",
    # The scenarios restore the preferred leaders themselves when they need to.
    "auto.leader.rebalance.enable": "false",
}


class Node:
    """One process of the cluster (a broker or a controller) in its
    namespace: a kafka_rig.ApacheKafka with its role."""

    def __init__(self, cluster, index, role):
        self.cluster = cluster
        self.index = index  # 1..n: the namespace
        self.role = role  # "broker" | "controller"
        self.node_id = index if role == "broker" else 100 + index
        self.dir = cluster.dir / f"{role}{index}"
        self.netns = f"{cluster.prefix}-k{index}"
        self.host = f"{cluster.subnet}.{10 + index}"
        self.port = cluster.broker_port if role == "broker" else cluster.controller_port
        self._rig = None  # made when first needed: the cluster id is known then

    @property
    def name(self):
        return f"{self.role} {self.node_id} ({self.host})"

    @property
    def kafka(self):
        if self._rig is None:
            self._rig = self._make_rig()
        return self._rig

    def _make_rig(self):
        c = self.cluster
        props = dict(CLUSTER_PROPS, **FAST_FAILURE_PROPS, **SMALL_NODE_PROPS)
        if self.role == "broker":
            # kafka.sh lists a controller listener too; a broker-only node
            # must not have one.
            props["listeners"] = f"PLAINTEXT://{self.host}:{c.broker_port}"
        return ApacheKafka(self.dir, c.broker_port, version=c.version, host=self.host,
                           controller_port=c.controller_port, node_id=self.node_id, quorum=c.quorum,
                           cluster_id=c.cluster_id, props=props, heap=c.heap[self.role], netns=self.netns,
                           roles=self.role)

    def pid(self):
        try:
            pid = int((self.dir / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if jk.pid_alive(pid) else None

    def running(self):
        return self.pid() is not None

    def start(self, wait=False):
        self.kafka.start(wait=False)
        if wait:
            self.wait_up()

    def wait_up(self, timeout=240):
        if self.role == "broker":
            self.kafka.wait()
        else:
            wait_for(lambda: self.running() and jk.port_open(self.port, self.host), timeout,
                     f"{self.name} to listen", interval=0.5)

    def stop(self, kill=False):
        if kill:
            self.kafka.kill()
        else:
            self.kafka.stop(grace=60)
        if self.running():
            raise RigError(f"{self.name} still running after stop")

    def rss_mib(self):
        pid = self.pid()
        if pid is None:
            return None
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
        return None


class KafkaCluster:
    def __init__(self, dir, *, prefix="jk23", subnet="10.213.23", broker_port=21201, controller_port=21202,
                 version="4", heap=None, n=3):
        self.dir = Path(dir)
        self.prefix = prefix
        self.subnet = subnet
        self.broker_port = broker_port
        self.controller_port = controller_port
        self.version = version
        self.heap = heap or {"broker": "256m", "controller": "160m"}
        self.n = n
        self.brokers = [Node(self, i, "broker") for i in range(1, n + 1)]
        self.controllers = [Node(self, i, "controller") for i in range(1, n + 1)]
        self.quorum = ",".join(f"{c.node_id}@{c.host}:{controller_port}" for c in self.controllers)
        self.cut_links = set()
        self.cluster_id = None
        self._admin = None

    @property
    def nodes(self):
        return self.controllers + self.brokers

    @property
    def bootstrap(self):
        return ",".join(f"{b.host}:{self.broker_port}" for b in self.brokers)

    def broker(self, node_id):
        return next(b for b in self.brokers if b.node_id == node_id)

    def controller(self, node_id):
        return next(c for c in self.controllers if c.node_id == node_id)

    # --- whole cluster ----------------------------------------------------

    def netns(self, *args, check=True):
        return run([NETNS_SH, *args], timeout=120, check=check)

    def start(self):
        t0 = time.monotonic()
        self.netns("up", self.prefix, self.subnet, str(self.n))
        self.dir.mkdir(parents=True, exist_ok=True)
        id_file = self.dir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(run([kafka_sh(), "cluster-id"]).stdout.decode().strip() + "\n")
        self.cluster_id = id_file.read_text().strip()
        # All six JVMs start at once; the controllers first, so that the
        # brokers find a quorum.
        for node in self.nodes:
            if not node.running():
                node.start(wait=False)
        for node in self.nodes:
            node.wait_up()
        self.wait_healthy(timeout=240)
        log(f"Kafka cluster up in {time.monotonic() - t0:.0f} s: brokers {self.bootstrap}, "
            f"controllers {self.quorum}; RSS MiB " +
            ", ".join(f"{n.role[0]}{n.node_id}={n.rss_mib()}" for n in self.nodes))

    def stop(self):
        for node in self.brokers + self.controllers:
            if node.dir.exists():
                try:
                    node.stop(kill=True)
                except RigError as exc:
                    log(f"stopping {node.name}: {exc}")
        self.netns("down", self.prefix, check=False)

    def restore(self, timeout=240):
        """Undo what a scenario did: heal cut links, start stopped nodes,
        wait until every broker is registered and every replica of every
        topic is in sync again. Returns the seconds it took."""
        t0 = time.monotonic()
        for i in sorted(self.cut_links):
            self.heal(i)
        stopped = [n for n in self.nodes if not n.running()]
        for node in stopped:
            log(f"restore: starting {node.name}")
            node.start(wait=False)
        for node in stopped:
            node.wait_up()
        self.wait_healthy(timeout)
        return time.monotonic() - t0

    # --- faults -----------------------------------------------------------

    def cut(self, index):
        self.netns("cut", self.prefix, str(index))
        self.cut_links.add(index)

    def heal(self, index):
        self.netns("heal", self.prefix, str(index))
        self.cut_links.discard(index)

    # --- state --------------------------------------------------------------

    def admin(self):
        """One AdminClient for the run (a client that goes out of scope
        while a request is outstanding fails it with _DESTROY)."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": "5000",
                                       "socket.connection.setup.timeout.ms": "3000",
                                       "reconnect.backoff.max.ms": "500", "log_level": 2})
        return self._admin

    def metadata(self, topic=None, timeout=5):
        return self.admin().list_topics(topic, timeout=timeout)

    def healthy(self, topics=None):
        """Every broker registered (unfenced), every partition of every
        topic (or of `topics`) led and fully in sync. A reason when not."""
        try:
            md = self.metadata()
        except Exception as exc:  # noqa: BLE001 - any client error means "not yet"
            return f"metadata: {exc}"
        ids = sorted(md.brokers)
        if ids != [b.node_id for b in self.brokers]:
            return f"brokers registered: {ids}"
        missing = set(topics or ()) - set(md.topics)
        if missing:
            return f"topics {sorted(missing)} not in the metadata yet"
        for name, t in md.topics.items():
            if topics is not None and name not in topics:
                continue
            if t.error is not None:
                return f"topic {name}: {t.error}"
            for p in t.partitions.values():
                if p.leader < 0 or sorted(p.isrs) != sorted(p.replicas):
                    return f"{name}[{p.id}] leader {p.leader} replicas {p.replicas} isr {p.isrs}"
        return None

    def wait_healthy(self, timeout=240, topics=None):
        last = []

        def ok():
            why = self.healthy(topics)
            last[:] = [why]
            return why is None

        try:
            wait_for(ok, timeout, "every broker registered and every replica in sync", interval=0.5)
        except RigError as exc:
            raise RigError(f"{exc}: {last[0] if last else '?'}") from None

    def create_topic(self, name, *, partitions=3, leader=None, timeout=60):
        """replication.factor=3, min.insync.replicas=2. leader: the broker
        that is preferred leader of every partition (the others follow in
        turn); otherwise leaders are spread over the brokers."""
        from confluent_kafka.admin import NewTopic
        ids = [b.node_id for b in self.brokers]
        if leader is not None:
            others = [i for i in ids if i != leader]
            assignment = [[leader] + (others if p % 2 == 0 else others[::-1]) for p in range(partitions)]
        else:
            assignment = [ids[p % 3:] + ids[:p % 3] for p in range(partitions)]
        nt = NewTopic(name, num_partitions=partitions, replication_factor=-1, replica_assignment=assignment,
                      config={"min.insync.replicas": "2", "unclean.leader.election.enable": "false"})
        fut = self.admin().create_topics([nt], operation_timeout=30)[name]
        fut.result(timeout=timeout)
        self.wait_healthy(timeout, topics={name})
        md = self.metadata(name).topics[name]
        return {p.id: p.leader for p in md.partitions.values()}

    def writable(self, name):
        """Every partition of topic `name` has a leader and at least
        min.insync.replicas (2) replicas in sync: a produce with acks=all
        can succeed again."""
        try:
            t = self.metadata(name, timeout=3).topics.get(name)
        except Exception:  # noqa: BLE001 - not yet
            return False
        return bool(t and t.error is None and t.partitions and
                    all(p.leader >= 0 and len(p.isrs) >= 2 for p in t.partitions.values()))

    def add_partitions(self, name, total):
        from confluent_kafka.admin import NewPartitions
        fut = self.admin().create_partitions([NewPartitions(name, total)], operation_timeout=30)[name]
        fut.result(timeout=60)

    def isr(self, name):
        md = self.metadata(name).topics[name]
        return {p.id: sorted(p.isrs) for p in md.partitions.values()}

    def leaders(self, name):
        md = self.metadata(name).topics[name]
        return {p.id: p.leader for p in md.partitions.values()}

    def active_controller(self):
        """Node id of the quorum's leader (kafka-metadata-quorum describe
        --status through the brokers)."""
        p = run([kafka_sh(), "tool", self.version, "metadata-quorum", "--bootstrap-server", self.bootstrap,
                 "describe", "--status"], timeout=120)
        m = re.search(r"^LeaderId:\s*(\d+)", p.stdout.decode(), re.M)
        if not m:
            raise RigError(f"no LeaderId in metadata-quorum output: {p.stdout.decode()[:500]}")
        return int(m.group(1))

    def rss(self):
        return {f"{n.role} {n.node_id}": n.rss_mib() for n in self.nodes}

