"""Issue 23: the plugin against a replicated Kafka cluster, fault by fault.

  python tests/e2e_cluster/run.py [--scenarios 1,2,...] [--seed N] [--out DIR]
                                  [--keep]

Three Kafka brokers (and three controllers) in network namespaces
(kafka_cluster.py), started once; for every scenario: the cluster restored,
a topic of its own (replication.factor=3, min.insync.replicas=2, 3
partitions), a fresh single-node Slurm cluster in a Debian chroot with the
plugin at its defaults (JobCompLoc holds bootstrap.servers and nothing else,
except where a scenario says why), a consumer reading the topic from its
beginning, a few jobs to see records flow, then the fault while slurmctld ends
at least MIN_JOBS jobs at the rate it can, then the recovery. What the
consumer read is counted (counting.py) and printed as one table row per
scenario. The table ends the output; the exit status is 1 when one of our
plugin's rows is not 0 lost, 0 duplicated, 0 out of order (SchedMD's rows are
measured, not judged).

Every random choice (which broker is killed, cut or leads, the restart order,
job lengths) comes from one random.Random(seed); the seed is printed first and
--seed repeats a run.
"""

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "e2e"), str(HERE)]

import jk  # noqa: E402
from jk import Cluster, RigError, log, wait_for  # noqa: E402
from counting import TopicReader, causes, count, error_lines  # noqa: E402
from kafka_cluster import KafkaCluster  # noqa: E402

jk.LOG_NAME = "e2e-cluster"
MIN_JOBS = int(os.environ.get("JK_CLUSTER_MIN_JOBS", "300"))
WARMUP_JOBS = 10
ARRAY = 25  # jobs per sbatch (array tasks are jobs of their own, with their own records)
REL24, REL26 = "24.11.5", "26.05.5"
# slurmctld/slurmd ports: a pair per scenario run, inside the range of this rig.
PORT_BASE = 21210
# Scenario 6: SchedMD's plugin's message.timeout.ms, so that the outage
# outlasts it; the brokers stay down at least OUTAGE_FACTOR times as long.
SHORT_MESSAGE_TIMEOUT_MS = 10000
OUTAGE_FACTOR = 2


@dataclass
class Row:
    scenario: int
    title: str
    plugin: str
    release: str
    jobs: int = 0
    expected: int = 0
    arrived: int = 0
    lost: int = 0
    duplicated: int = 0
    reruns: int = 0  # Slurm ended a job again (another record, other bytes)
    forgotten: int = 0  # records of jobs Slurm no longer knows (only after a slurmctld crash)
    slurm_crashed: bool = False
    counted_ok: bool = False
    fault_missed: bool = False  # the rig could not show that the fault happened as meant
    out_of_order: int = 0
    split: int = 0
    invalid: int = 0
    delivered_after_recovery_s: float | None = None
    longest_gap_s: float | None = None  # the longest time without a record arriving, from the fault on
    complete: bool = False
    error_lines: int = 0
    error_causes: dict = field(default_factory=dict)
    fault_s: float = 0.0
    wall_s: float = 0.0
    restore_s: float = 0.0
    notes: list = field(default_factory=list)
    admin: list = field(default_factory=list)  # what the rig did to Slurm as its administrator (after a crash)
    problems: list = field(default_factory=list)
    failed: str | None = None  # the rig itself failed (exception)

    @property
    def ok(self):
        return self.failed is None and self.counted_ok and self.complete and not self.fault_missed


class Submitter:
    """sbatch in a loop (arrays of ARRAY jobs, each a short sleep), as fast as
    slurmctld takes them until `min_jobs` are submitted; then, while the
    fault lasts (until stop()), PACE_JOBS more every PACE_S seconds, so that
    jobs keep ending through a long fault without flooding slurmctld. A
    refused sbatch (slurmctld down) is tried again."""

    PACE_S = 2.0
    PACE_JOBS = 5

    def __init__(self, cluster, rng, min_jobs, lengths=(0, 0.2, 0.5)):
        self.cluster = cluster
        self.min_jobs = min_jobs
        self.sleeps = []  # per array, chosen before the thread starts: the seed decides
        self.rng = rng
        self.lengths = lengths
        self.ids = []
        self.jobs = 0
        self.failures = 0
        self._stop = threading.Event()
        self._enough = threading.Event()
        self._thread = threading.Thread(target=self._run, name="submitter", daemon=True)
        self.t0 = self.t1 = None

    def start(self):
        self.t0 = time.time()
        self._thread.start()
        return self

    def _run(self):
        while not (self._stop.is_set() and self.jobs >= self.min_jobs):
            length = self.rng.choice(self.lengths)
            size = ARRAY if self.jobs < self.min_jobs else self.PACE_JOBS
            try:
                jid = self.cluster.sbatch(f"--array=0-{size - 1}", "-o", "/dev/null", "-J", "c23",
                                          "--wrap", f"sleep {length}")
            except RigError:
                self.failures += 1
                time.sleep(0.5)
                continue
            self.ids.append(jid)
            self.jobs += size
            if self.jobs >= self.min_jobs:
                self._enough.set()
                self._stop.wait(self.PACE_S)
        self.t1 = time.time()

    def wait_enough(self, timeout=600):
        if not self._enough.wait(timeout):
            raise RigError(f"only {self.jobs} jobs submitted in {timeout} s")

    def stop(self, timeout=600):
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RigError("submitter did not stop")


class Runner:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(args.seed)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.kc = KafkaCluster(self.out / "kafka")
        self.rows = []
        self.run_index = 0

    # --- one scenario run -----------------------------------------------------

    def slurm(self, n, plugin, release, *, params="", props=None, bootstrap=None, extra_conf=()):
        self.run_index += 1
        ctld = PORT_BASE + 2 * (self.run_index % 40)
        suite = jk.CHROOT_SUITES[jk.series(release)]
        name = f"c23s{n}{'o' if plugin == 'ours' else 'u'}{jk.series(release).replace('.', '')}"
        topic = f"jk23-s{n}-{plugin}-{jk.series(release).replace('.', '')}-{self.seed}-{os.getpid()}"
        d = jk.chroot_root(suite) / "rig" / f"cluster23-{name}"
        return Cluster(release=release, name=name, dir=d, ctld_port=ctld, slurmd_port=ctld + 1, plugin=plugin,
                       bootstrap=bootstrap or self.kc.bootstrap, topic=topic, params=params,
                       kafka_props=props or {}, debugflags="",
                       # Ended jobs stay known to slurmctld for the whole
                       # scenario (the default, 300 s, purged them from what
                       # the counting compares with in the slow scenario 9).
                       extra_conf=("MinJobAge=3600",) + tuple(extra_conf))

    def run_scenario(self, n, plugin="ours", release=REL24):
        fn, title = SCENARIOS[n]
        row = Row(n, title, plugin, release)
        t0 = time.time()
        log(f"=== scenario {n} ({title}), {plugin} plugin, Slurm {release}")
        ctx = Ctx(self, row, n, plugin, release)
        try:
            row.restore_s = round(self.kc.restore(), 1)
            fn(ctx)
        except Exception as exc:  # noqa: BLE001 - the row says what failed, the run goes on
            row.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            log(f"scenario {n} ({plugin}) failed: {row.failed}")
            traceback.print_exc(file=sys.__stderr__)
        finally:
            ctx.close()
        row.wall_s = round(time.time() - t0, 1)
        self.rows.append(row)
        log(f"scenario {n} ({plugin}, {release}): {summary(row)}")
        (self.out / "rows.json").write_text(json.dumps([asdict(r) for r in self.rows], indent=1))
        return row


class Ctx:
    """What a scenario function works with: the Kafka cluster, its Slurm
    cluster, the topic's reader, and the steps every scenario shares."""

    def __init__(self, runner, row, n, plugin, release):
        self.runner = runner
        self.kc = runner.kc
        self.rng = runner.rng
        self.row = row
        self.n = n
        self.plugin = plugin
        self.release = release
        self.cluster = None
        self.reader = None
        self.start_records = False
        self.job_lengths = (0, 0.2, 0.5)  # seconds a job sleeps, one chosen per sbatch
        self.t_fault = None
        self.t_recover = None
        self.watcher = None

    @property
    def topic(self):
        return self.cluster.finish_topic

    def setup(self, *, leader=None, params="", props=None, bootstrap=None, start_slurm=True, extra_conf=()):
        self.cluster = self.runner.slurm(self.n, self.plugin, self.release, params=params, props=props,
                                         bootstrap=bootstrap, extra_conf=extra_conf)
        self.cluster.params = params.format(topic=self.topic)
        leaders = self.kc.create_topic(self.topic, leader=leader)
        self.row.notes.append(f"topic {self.topic}, leaders {leaders}")
        self.reader = TopicReader(self.kc.bootstrap, self.topic).start()
        if start_slurm:
            self.start_slurm()

    def start_slurm(self):
        self.cluster.start()

    def per_job(self):
        return 2 if self.start_records else 1

    def warmup(self):
        """A few jobs whose records must arrive before the fault: the path
        works."""
        jid = self.cluster.sbatch(f"--array=0-{WARMUP_JOBS - 1}", "-o", "/dev/null", "--wrap", "true")
        self.cluster.wait_done([jid], timeout=120)
        want = WARMUP_JOBS * self.per_job()
        wait_for(lambda: self.reader.count() >= want, 120, f"the {want} warm-up records")

    def fault(self, what):
        self.t_fault = time.time()
        log(f"fault: {what}")
        self.row.notes.append(f"fault: {what}")

    def recovered(self, what):
        self.t_recover = time.time()
        self.row.fault_s = round(self.t_recover - self.t_fault, 1)
        log(f"recovered: {what} ({self.row.fault_s} s after the fault)")
        self.row.notes.append(f"recovery: {what}")

    def restart_brokers(self, brokers, what):
        """Start the brokers again; the recovery is the moment the topic is
        writable again (every partition led, at least 2 replicas in sync),
        not when the last broker has finished starting: the time to full
        delivery measures the plugin, not the JVMs' start-up."""
        for b in brokers:
            b.start(wait=False)
        wait_for(lambda: self.kc.writable(self.topic), 300, f"{self.topic} writable again", interval=0.2)
        self.recovered(f"{what}; the topic writable again")
        for b in brokers:
            b.wait_up()

    def jobs_window(self, during=None, min_seconds=0.0):
        """Submit at least MIN_JOBS jobs; `during(submitter)` runs meanwhile
        (the fault's own steps); returns once every submitted job has
        ended and min_seconds have passed since the fault."""
        sub = Submitter(self.cluster, self.rng, MIN_JOBS, lengths=self.job_lengths).start()
        try:
            if during is not None:
                during(sub)
            sub.wait_enough()
        finally:
            sub.stop()
        self.cluster.wait_done(sub.ids, timeout=600)
        rest = min_seconds - (time.time() - self.t_fault)
        if rest > 0:
            time.sleep(rest)
        self.row.notes.append(f"{sub.jobs} jobs submitted in {sub.t1 - sub.t0:.0f} s "
                              f"({sub.failures} sbatch refused and retried)")
        return sub

    def final_jobs(self):
        """({job id: @submit in UTC}, {ids of jobs that started}) of every
        job Slurm knows, all ended."""
        jobs = self.cluster.show_jobs()
        open_ = [s.jobid for s in jobs.values() if s.state not in jk.FINAL_STATES]
        if open_:
            raise RigError(f"jobs not ended: {open_[:10]}")
        submit = {s.jobid: jk.scontrol_time_utc(s.get("SubmitTime")) for s in jobs.values()}
        started = {s.jobid for s in jobs.values() if jk.scontrol_time_utc(s.get("StartTime")) is not None}
        return submit, started

    def settle(self, deadline_s=240, quiet_s=30):
        """Wait for full delivery: every expected record read (then 3 s more
        for stray copies), or nothing new for quiet_s once quiet_s have
        passed since the recovery, or the deadline."""
        jobs, started = self.final_jobs()
        t_end = time.time() + deadline_s
        while True:
            arrivals = self.reader.snapshot()
            c = count(arrivals, jobs, start_records=self.start_records, started=started, release=self.release)
            if c.lost == 0:
                time.sleep(3)
                break
            now = time.time()
            last = arrivals[-1].recv if arrivals else 0
            if now >= t_end or (now - self.t_recover > quiet_s and now - last > quiet_s):
                break
            time.sleep(0.5)
        arrivals = self.reader.snapshot()
        c = count(arrivals, jobs, start_records=self.start_records, started=started, release=self.release)
        r = self.row
        r.jobs = len(jobs)
        r.expected, r.arrived, r.lost, r.duplicated = c.expected, c.arrived, c.lost, c.duplicated
        r.reruns, r.out_of_order, r.split, r.invalid = c.reruns, c.out_of_order, c.split, c.invalid
        r.forgotten = c.unexpected
        r.counted_ok = c.ok(slurm_crashed=r.slurm_crashed)
        r.problems += c.problems
        r.notes += c.notes[:10]
        r.complete = c.lost == 0
        if c.complete_at is not None and self.t_recover is not None:
            r.delivered_after_recovery_s = round(c.complete_at - self.t_recover, 1)
        if self.t_fault is not None:
            # From the fault to full delivery (or now): the longest stretch
            # without a record arriving, while jobs kept ending.
            end = c.complete_at or time.time()
            times = [self.t_fault] + sorted(a.recv for a in arrivals if self.t_fault <= a.recv <= end) + [end]
            r.longest_gap_s = round(max(b - a for a, b in zip(times, times[1:])), 1)
        lines = error_lines(self.cluster.log_text())
        r.error_lines = len(lines)
        r.error_causes = causes(lines)
        if self.reader.errors:
            r.problems.append(f"consumer: {self.reader.errors}")

    def after_crash(self, t_restart, snapshot_s=15, check_s=2):
        """From the slurmctld restart to close(): every snapshot_s seconds,
        what Slurm says about its jobs and its node (squeue with state,
        reason and begin time; scontrol show node; sdiag) appended to
        OUT/slurm-watch-<run>-s<N>.log, so that a run in which Slurm stops
        scheduling leaves the evidence; and every check_s seconds, what a
        Slurm administrator does after a controller crash (undo_dup_jobid_drain)."""
        path = self.runner.out / f"slurm-watch-{self.runner.run_index}-s{self.n}.log"
        stop = threading.Event()
        state = {"drained": False}

        def snap():
            parts = [f"===== {time.strftime('%H:%M:%S', time.gmtime())} UTC"]
            for argv in (("squeue", "-h", "-o", "%i %T %r %S"), ("scontrol", "show", "node"), ("sdiag",)):
                try:
                    p = self.cluster.cmd(argv[0], *argv[1:], check=False, timeout=30)
                    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
                except Exception as exc:  # noqa: BLE001 - a snapshot that fails says so
                    out = f"{type(exc).__name__}: {exc}"
                if argv[0] == "squeue":
                    lines = out.splitlines()
                    kinds = {}
                    for ln in lines:
                        f = ln.split(" ", 3)
                        key = " ".join(f[1:3]) if len(f) >= 3 else ln
                        kinds[key] = kinds.get(key, 0) + 1
                    out = "\n".join(lines[:60])
                    parts.append(f"--- squeue: {len(lines)} jobs {kinds}\n{out}")
                else:
                    parts.append(f"--- {' '.join(argv)}\n{out}")
            with open(path, "a") as fh:
                fh.write("\n".join(parts) + "\n")

        def loop():
            last_snap = 0.0
            while True:
                try:
                    self.undo_dup_jobid_drain(state, t_restart)
                except Exception as exc:  # noqa: BLE001 - the next check tries again
                    log(f"checking the node after the crash: {type(exc).__name__}: {exc}")
                if time.time() - last_snap >= snapshot_s:
                    last_snap = time.time()
                    snap()
                if stop.wait(check_s):
                    return

        t = threading.Thread(target=loop, name="after-crash", daemon=True)
        t.start()
        self.watcher = (stop, t)
        self.row.notes.append(f"Slurm's view every {snapshot_s} s after the slurmctld restart: {path}")

    def undo_dup_jobid_drain(self, state, t_restart):
        """After the crash slurmctld hands out again the ids of jobs it had
        started after its last state save. slurmd still holds such an id as
        launched (it forgets one only when the controller tells it the job
        is over, which the killed controller never did; it keeps the last
        64), refuses the new launch ("Job N already running, do not launch
        second copy"), and slurmctld then drains the node (Reason "Duplicate
        jobid") and holds the job ("launch failed requeued held"). Neither
        ends by itself (ReturnToService does not undo a DRAIN): the rig
        does what the administrator does, and only for that cause: resumes
        the node (scontrol update State=RESUME) and releases the jobs held
        for the failed launch (scontrol release). The requeue made slurmd
        forget the id, so the second launch runs the job once."""
        p = self.cluster.scontrol("show", "node", "localhost", "-o", check=False)
        node = jk.parse_scontrol_job(p.stdout.decode(errors="replace"))
        st = (node.get("State") or [""])[0]
        reason = (node.get("Reason") or [""])[0]
        if "DRAIN" in st and reason.startswith("Duplicate jobid"):
            state["drained"] = True
            log(f"Slurm drained the node after the crash ({st}, Reason={reason}): resuming it")
            self.cluster.scontrol("update", "NodeName=localhost", "State=RESUME")
            self.row.admin.append(f"node drained (Reason={reason.split(' [')[0]}) "
                                  f"{time.time() - t_restart:.0f} s after the restart, resumed")
        self.requeue_ghosts(state, t_restart)
        if not state["drained"]:
            return
        held = sorted(s.jobid for s in self.cluster.show_jobs().values()
                      if s.state == "PENDING" and s.get("Reason") == "launch_failed_requeued_held")
        if held:
            log(f"releasing {len(held)} job(s) held for the refused launch: {held}")
            self.cluster.scontrol("release", ",".join(map(str, held)))
            self.row.admin.append(f"{len(held)} job(s) held 'launch failed requeued held' released")

    GHOST_AFTER_S = 240

    def requeue_ghosts(self, state, t_restart):
        """Jobs that ended while slurmctld was down, or after its last state
        save, are RUNNING again after the restart although slurmd no longer
        has them. Slurm requeues them itself when slurmd next registers (it
        asks every 21st ping: 194 s after the restart here, SlurmdTimeout=30),
        but not always every one: in one run a job stayed RUNNING for 10
        minutes, through two registrations, its batch step long gone from
        the node. Once Slurm's own pass is over (GHOST_AFTER_S after the
        restart), the rig does what the administrator does with a job the
        node does not have: checks on the node (scontrol listpids: the job's
        steps on this node) and requeues it (scontrol requeue), as Slurm
        itself does with the others; it runs again and ends with a second,
        different record (Slurm's own, as for the others)."""
        if time.time() - t_restart < self.GHOST_AFTER_S:
            return
        for s in self.cluster.show_jobs().values():
            if s.state != "RUNNING" or s.jobid in state.setdefault("requeued", set()):
                continue
            started = jk.scontrol_time_utc(s.get("StartTime"))
            restart = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_restart))
            if started is None or started >= restart:
                continue
            p = self.cluster.scontrol("listpids", str(s.jobid), "localhost", check=False)
            out = (p.stdout + p.stderr).decode(errors="replace").strip()
            if p.returncode == 0 or "does not exist" not in out:
                continue
            log(f"job {s.jobid} RUNNING since {started} (before the restart) but not on the node "
                f"({out.splitlines()[-1][:120]}): scontrol requeue")
            state["requeued"].add(s.jobid)  # once: a refusal is logged, not retried
            self.cluster.scontrol("requeue", str(s.jobid))
            self.row.admin.append(f"job {s.jobid} RUNNING per slurmctld since {started} UTC, before the restart, "
                                  f"but unknown to slurmd {time.time() - t_restart:.0f} s after the restart: requeued")

    def close(self):
        if self.watcher is not None:
            stop, t = self.watcher
            stop.set()
            t.join(60)
        if self.reader is not None:
            self.reader.stop()
        if self.cluster is not None:
            try:
                self.cluster.stop()
            except Exception as exc:  # noqa: BLE001
                log(f"stopping Slurm cluster {self.cluster.name}: {exc}")
            if not self.runner.args.keep and self.row.ok:
                self.cluster.remove()


# --- the scenarios ----------------------------------------------------------------


def s1_leader_killed(ctx, crash_slurmctld=False):
    """The broker that leads every partition of the topic killed with SIGKILL
    while jobs end; restarted once they have all ended."""
    kc = ctx.kc
    leader = ctx.rng.choice(kc.brokers)
    # After a slurmctld crash, jobs that ended while it was down stay
    # "running" until slurmctld next pings slurmd (SlurmdTimeout/3: 100 s by
    # default); 30 s makes that 10 s. Only how long the scenario takes.
    ctx.setup(leader=leader.node_id, extra_conf=("SlurmdTimeout=30",) if crash_slurmctld else ())
    ctx.warmup()

    def during(sub):
        ctx.fault(f"SIGKILL {leader.name}, the leader of every partition")
        leader.stop(kill=True)
        if crash_slurmctld:
            # Mid-stream: half the jobs have ended (their records spooled,
            # some in flight to partitions whose leader just died).
            def ended():
                return sum(1 for j in ctx.cluster.show_jobs().values() if j.state in jk.FINAL_STATES)

            wait_for(lambda: ended() >= WARMUP_JOBS + MIN_JOBS // 2, 300, "half the jobs ended", interval=0.3)
            log("SIGKILL slurmctld")
            ctx.row.notes.append(f"SIGKILL slurmctld after {sub.jobs} jobs submitted, {ctx.reader.count()} records "
                                 "read; started again 2 s later")
            ctx.row.slurm_crashed = True
            ctx.cluster.rig("kill9-ctld", ctx.cluster.dir, timeout=60)
            time.sleep(2)
            t_restart = time.time()
            ctx.cluster.start_ctld()
            ctx.after_crash(t_restart)

    ctx.jobs_window(during)
    leader.start(wait=True)
    ctx.recovered(f"{leader.name} started again")
    ctx.settle()


def s2_rolling_restart(ctx):
    """Every node (broker and controller of each namespace) stopped with
    SIGTERM and started again, one at a time, each waited back into the ISR
    of every partition before the next; jobs end all along."""
    kc = ctx.kc
    order = list(range(1, kc.n + 1))
    ctx.rng.shuffle(order)
    ctx.setup()
    ctx.warmup()

    def during(sub):
        ctx.fault(f"rolling restart of nodes {order} (SIGTERM, start, wait for the ISR)")
        for i in order:
            for node in (kc.brokers[i - 1], kc.controllers[i - 1]):
                node.stop(kill=False)
            for node in (kc.controllers[i - 1], kc.brokers[i - 1]):
                node.start(wait=True)
            kc.wait_healthy(timeout=300)
            log(f"node {i} back, every replica in sync ({sub.jobs} jobs submitted so far)")

    ctx.jobs_window(during)
    ctx.recovered("the last node back in the ISR")
    ctx.settle()


def s3_two_down(ctx):
    """Two of the three brokers killed (SIGKILL): the ISR shrinks to the one
    left, below min.insync.replicas=2, and it refuses every produce with
    NOT_ENOUGH_REPLICAS; the records wait. Both started again after the
    jobs have ended."""
    kc = ctx.kc
    down = ctx.rng.sample(kc.brokers, 2)
    ctx.setup()
    ctx.warmup()

    def during(sub):
        ctx.fault(f"SIGKILL {down[0].name} and {down[1].name}")
        for b in down:
            b.stop(kill=True)

    ctx.jobs_window(during, min_seconds=15)
    # The fault as meant: the broker left refuses produce requests for want
    # of in-sync replicas (Kafka logs each refusal). The first requests of
    # the outage were appended before the ISR shrank and wait for their
    # acknowledgements; their retries, after librdkafka's request.timeout.ms
    # (30 s), are the ones refused: the outage lasts until one is.
    survivor = next(b for b in kc.brokers if b not in down)

    def refusals():
        try:
            text = (survivor.dir / "kafka.log").read_text(errors="replace")
        except OSError:
            return 0
        return sum(1 for ln in text.splitlines() if "NotEnoughReplicasException" in ln and ctx.topic in ln)

    try:
        wait_for(refusals, 120, f"a NOT_ENOUGH_REPLICAS refusal in {survivor.name}'s log", interval=1)
    except RigError:
        ctx.row.fault_missed = True
        ctx.row.problems.append(f"no NOT_ENOUGH_REPLICAS refusal in {survivor.name}'s log within 120 s: "
                                "the fault did not happen as meant")
    ctx.row.notes.append(f"{survivor.name} refused {refusals()} produce request(s) with NOT_ENOUGH_REPLICAS "
                         f"(its kafka.log) by the end of the outage; in-sync replicas then {kc.isr(ctx.topic)}; "
                         f"{ctx.reader.count()} records read")
    ctx.restart_brokers(down, "both brokers started")
    ctx.settle()


def s4_controller_killed(ctx):
    """The active controller (the KRaft quorum's leader) killed with SIGKILL
    while jobs end; another controller takes over; restarted afterwards."""
    kc = ctx.kc
    ctx.setup()
    ctx.warmup()
    active = kc.controller(kc.active_controller())

    def during(sub):
        ctx.fault(f"SIGKILL {active.name}, the active controller")
        active.stop(kill=True)

    ctx.jobs_window(during)
    ctx.row.notes.append(f"active controller afterwards: {kc.active_controller()}")
    active.start(wait=True)
    ctx.recovered(f"{active.name} started again")
    ctx.settle()


def s5_link_down(ctx):
    """The node that leads every partition cut off the network (its link
    down, processes running): connections to it hang, nothing refuses them.
    The link comes back after the jobs have ended (and at least 30 s)."""
    kc = ctx.kc
    victim = ctx.rng.choice(kc.brokers)
    ctx.setup(leader=victim.node_id)
    ctx.warmup()

    def during(sub):
        ctx.fault(f"link of namespace {victim.netns} down ({victim.name} and its controller cut off)")
        kc.cut(victim.index)

    ctx.jobs_window(during, min_seconds=30)
    kc.heal(victim.index)
    ctx.recovered(f"link of {victim.netns} up")
    ctx.settle()


def s6_all_down(ctx):
    """All three brokers killed for OUTAGE_FACTOR x SHORT_MESSAGE_TIMEOUT_MS,
    then started. SchedMD's plugin gets message.timeout.ms=SHORT_MESSAGE_TIMEOUT_MS
    in JobCompLoc, so that the outage outlasts it (its default, librdkafka's
    300 s, would make the scenario 10 minutes long); ours runs with its
    defaults, under which librdkafka never times a record out (with 10 s it
    stored 93 records twice: records in flight, handed back at the timeout and
    produced again as new messages)."""
    kc = ctx.kc
    ctx.setup(props={"message.timeout.ms": str(SHORT_MESSAGE_TIMEOUT_MS)} if ctx.plugin == "schedmd" else None)
    ctx.warmup()

    def during(sub):
        ctx.fault("SIGKILL all three brokers")
        for b in kc.brokers:
            b.stop(kill=True)

    ctx.jobs_window(during, min_seconds=OUTAGE_FACTOR * SHORT_MESSAGE_TIMEOUT_MS / 1000)
    ctx.row.notes.append(f"{ctx.reader.count()} records read by the end of the outage")
    ctx.restart_brokers(kc.brokers, "all three brokers started")
    ctx.settle()


def s7_first_bootstrap_down(ctx):
    """slurmctld starts while the first broker of bootstrap.servers is down;
    jobs end; that broker comes back afterwards."""
    kc = ctx.kc
    first = kc.brokers[0]
    ctx.setup(start_slurm=False)
    ctx.fault(f"SIGKILL {first.name}, the first of bootstrap.servers ({kc.bootstrap}), before slurmctld starts")
    first.stop(kill=True)
    ctx.start_slurm()
    ctx.jobs_window()
    first.start(wait=True)
    ctx.recovered(f"{first.name} started again")
    ctx.settle()


def s8_partitions_added(ctx):
    """Start and finish records in one topic (26.05: enable_job_start,
    topic_job_start = topic); partitions added (3 to 6) while jobs that last
    1-3 s run. Every job's finish record must follow its start record in the
    same partition. JobCompLoc: topic.metadata.refresh.interval.ms=1000, so
    that the producer sees the new partitions within the scenario (the
    default is 5 minutes; it only decides how soon)."""
    kc = ctx.kc
    ctx.start_records = True
    ctx.job_lengths = (1, 2, 3)
    ctx.setup(params="enable_job_start,topic_job_start={topic}",
              props={"topic.metadata.refresh.interval.ms": "1000"})
    ctx.warmup()

    def during(sub):
        wait_for(lambda: sub.jobs >= MIN_JOBS // 3, 300, "a third of the jobs submitted")
        ctx.fault("partitions of the topic 3 -> 6 while jobs run")
        kc.add_partitions(ctx.topic, 6)

    ctx.jobs_window(during)
    ctx.recovered("(nothing to undo) all jobs ended")
    ctx.settle()


def s9_slurmctld_killed(ctx):
    """Scenario 1, and slurmctld itself killed with SIGKILL half-way through
    the jobs (started again 2 s later)."""
    s1_leader_killed(ctx, crash_slurmctld=True)


SCENARIOS = {
    1: (s1_leader_killed, "leader broker SIGKILL, restarted later"),
    2: (s2_rolling_restart, "rolling restart of all three (SIGTERM)"),
    3: (s3_two_down, "two of three brokers down (NOT_ENOUGH_REPLICAS)"),
    4: (s4_controller_killed, "active controller SIGKILL"),
    5: (s5_link_down, "leader cut off the network (link down), healed"),
    6: (s6_all_down, "all three down 20 s (SchedMD: > its message.timeout.ms)"),
    7: (s7_first_bootstrap_down, "slurmctld starts, first bootstrap broker down"),
    8: (s8_partitions_added, "partitions 3 -> 6 while jobs run (start+finish)"),
    9: (s9_slurmctld_killed, "scenario 1 + slurmctld SIGKILL"),
}
# (scenario, plugin, release) in the order they run.
DEFAULT_PLAN = ([(n, "ours", REL24) for n in (1, 2, 3, 4, 5, 6, 7, 9)] + [(8, "ours", REL26)]
                + [(n, "schedmd", REL24) for n in (1, 3, 6)])


# --- the table -------------------------------------------------------------------


def summary(r):
    if r.failed:
        return f"RIG FAILED: {r.failed}"
    return (f"jobs {r.jobs} expected {r.expected} arrived {r.arrived} lost {r.lost} dup {r.duplicated} "
            f"order {r.out_of_order} re-ended {r.reruns} forgotten {r.forgotten} after-recovery {fmt_s(r.delivered_after_recovery_s, r)} "
            f"errors {r.error_lines}/{len(r.error_causes)} causes, wall {r.wall_s} s")


def fmt_s(v, r):
    if not r.complete:
        return "never"
    if v is None:
        return "-"
    return "before" if v <= 0 else f"{v:.1f}"


def slurm_own(r):
    """What Slurm did that is not the plugin's doing: jobs ended twice (a
    second, different record), jobs forgotten in a slurmctld crash (their
    records arrived, Slurm no longer knows them)."""
    parts = []
    if r.reruns:
        parts.append(f"{r.reruns} ended again")
    if r.forgotten:
        parts.append(f"{r.forgotten} forgotten")
    if any(a.startswith("node drained") for a in r.admin):
        parts.append("node drained for a duplicate job id, resumed")
    ghosts = sum(1 for a in r.admin if a.startswith("job "))
    if ghosts:
        parts.append(f"{ghosts} job(s) slurmd did not have requeued")
    return ", ".join(parts) or "-"


def table(rows):
    head = ("| # | fault | plugin | Slurm | jobs | expected | arrived | lost | dup | out of order "
            "| full delivery after recovery (s) | longest wait for a record (s) | error lines (causes) "
            "| fault s | wall s | Slurm's own |")
    out = [head, "|" + "---|" * 16]
    for r in rows:
        if r.failed:
            out.append(f"| {r.scenario} | {r.title} | {r.plugin} | {r.release} | rig failed: {r.failed} |"
                       + " |" * 11)
            continue
        order = "n/a" if r.release == REL24 else str(r.out_of_order)
        out.append(f"| {r.scenario} | {r.title} | {r.plugin} | {r.release} | {r.jobs} | {r.expected} | "
                   f"{r.arrived} | {r.lost} | {r.duplicated} | {order} | {fmt_s(r.delivered_after_recovery_s, r)} "
                   f"| {r.longest_gap_s} | {r.error_lines} ({len(r.error_causes)}) | {r.fault_s} | {r.wall_s} | {slurm_own(r)} |")
    return "\n".join(out)


def details(rows):
    out = []
    for r in rows:
        out.append(f"scenario {r.scenario} ({r.plugin}, {r.release}): {r.title}")
        for n in r.notes:
            out.append(f"  - {n}")
        for a in r.admin:
            out.append(f"  - as Slurm's administrator: {a}")
        for cause, k in sorted(r.error_causes.items(), key=lambda x: -x[1]):
            out.append(f"  log x{k}: {cause[:300]}")
        for p in r.problems[:15]:
            out.append(f"  PROBLEM: {p[:300]}")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", help="comma-separated runs: N (ours, its default release), N:schedmd, "
                                        "N:ours:26.05.5; default: issue 23's plan")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("JK_CLUSTER_SEED") or time.time()))
    ap.add_argument("--out", default=os.environ.get("JK_CLUSTER_OUT") or f"/tmp/cluster23-run-{os.getpid()}")
    ap.add_argument("--keep", action="store_true", help="keep the Kafka cluster running and the directories")
    args = ap.parse_args()
    print(f"seed {args.seed} (repeat with --seed {args.seed} or JK_CLUSTER_SEED={args.seed})", flush=True)
    plan = DEFAULT_PLAN
    if args.scenarios:
        plan = []
        for tok in args.scenarios.split(","):
            parts = tok.split(":")
            n = int(parts[0])
            plugin = parts[1] if len(parts) > 1 else "ours"
            rel = parts[2] if len(parts) > 2 else (REL26 if n == 8 else REL24)
            plan.append((n, plugin, rel))
    runner = Runner(args)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt("SIGTERM")))
    t0 = time.time()
    try:
        runner.kc.start()
        t_kafka = time.time() - t0
        for n, plugin, rel in plan:
            runner.run_scenario(n, plugin, rel)
    finally:
        rss = runner.kc.rss()
        if not args.keep:
            runner.kc.stop()
    print()
    print(details(runner.rows))
    print()
    print(f"seed {args.seed}; Kafka cluster start {t_kafka:.0f} s; all {time.time() - t0:.0f} s; node RSS MiB {rss}")
    print(table(runner.rows))
    (runner.out / "table.md").write_text(table(runner.rows) + "\n")
    ours = [r for r in runner.rows if r.plugin == "ours"]
    bad = [r for r in ours if not r.ok]
    print(f"{len(ours) - len(bad)} of {len(ours)} runs of our plugin as required"
          f"{'' if not bad else '; not: ' + ', '.join(f'{r.scenario}' for r in bad)} (SchedMD's rows are not judged)")
    sys.exit(1 if bad or len(runner.rows) < len(plan) else 0)


if __name__ == "__main__":
    main()
