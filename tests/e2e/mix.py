"""The job mix: every kind of job end the tests check, driven on one cluster.

A MixRun submits the jobs, drives them (cancel, requeue, reservation,
dependency), records scontrol's view of each job before it can be purged
(MinJobAge is 300 s; the mix takes ~90 s) and knows which records Slurm must
produce for it. It runs in a thread so that the ~60-90 s of the time-limit
job overlap with the other tests of the session.
"""

import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone

from jk import (FINAL_STATES, InvalidRecord, RigError, check_script, compare_with_scontrol, decode_record, log,
                record_id_problems, schema_problems, scontrol_time_utc, wait_for, wrap_script)

# Names with quotes, a backslash, slashes, a tab, control characters, a
# newline and UTF-8 (never " Capital=": see jk.parse_scontrol_job).
WEIRD_NAME = "we\"ird 'q' back\\slash a/b\ttab\x01\x1f\x7f nl\nend é中😀"
# Working directory: nested through its slash.
WEIRD_DIR = "dir \"q\" 's' back\\slash/sub\ttab\x01\x1f é中😀"
WEIRD_SCRIPT = ("#!/bin/sh\n# é中😀 \"quotes\" 'single' back\\slash tab\t ctl\x01\x1f del\x7f\n"
                "pwd\nexit 0\n")
# Output files: Slurm turns %-expansion off for a path with a backslash (and
# drops it), so these have none.
WEIRD_OUT_DIR = "out \"q\" 's'\ttab\x01 é中😀"
WEIRD_OUT = "/o \"q\" %j é.txt"
WEIRD_ERR = "/e\t%j\x1f.txt"
# Invalid UTF-8: a lone 0xff, a truncated 2-byte sequence, a lone
# continuation byte. A valid record carries U+FFFD for each.
BAD_NAME = b"bad\xffname\xc3(x\x80"
BAD_DIR = b"baddir\xfe\xc3"
BAD_SCRIPT = b"#!/bin/sh\n# invalid UTF-8 here: \xff\xfe \xc3(\ntrue\n"

RESERVATION = "jkres"
ACCOUNT = "jkacct"
GHOST_CONF = ("NodeName=ghost CPUs=1 State=FUTURE\n"
              "NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=4000 State=UNKNOWN")
# The rig's single node "localhost" is the only one that runs jobs. To have
# an -x/--exclude that Slurm accepts, the mix clusters declare a second node,
# "ghost", in state FUTURE (never used). slurmctld 22.05 rejects a second
# NodeName line after localhost's ("Duplicated NodeHostName"), so it comes first.
MIX_EXTRA_CONF = (GHOST_CONF,)


def job_label(jobs, final, jobid):
    """The label of the mix's job `jobid` (an array task: of its array),
    from `jobs` {label: job with .jobid} and `final` {jobid: scontrol's last
    view}; None for a job the mix did not make."""
    for j in jobs.values():
        if j.jobid == jobid:
            return j.label
    s = final.get(jobid)
    if s is not None and s.get("ArrayJobId"):
        array = int(s["ArrayJobId"])
        for j in jobs.values():
            if j.jobid == array:
                return j.label
    return None


@dataclass
class MixJob:
    label: str
    jobid: int = 0
    records: int = 1  # records Slurm writes for it (array: one per task)
    script: object = None  # expected "script" field (str), None = not checked
    ntasks_given: bool = False
    dependency: str = None  # scontrol's Dependency= while it was pending
    expect_state: str = None  # final state the mix caused
    expect_exit: str = None
    # Record values that differ from scontrol's final view by Slurm's design
    # (the record is written at that moment, the job record changes later).
    record_expect: dict = field(default_factory=dict)
    snapshots: dict = field(default_factory=dict)  # name -> Snapshot


class MixRun:
    def __init__(self, cluster):
        self.cluster = cluster
        self.jobs = {}
        self.error = None
        self.final = {}  # jobid -> final Snapshot
        self.requeue_window = None  # (utc text before, utc text after) the requeue
        self.thread = None
        self.t_start = None
        self.t_end = None
        self.consumed = None  # the messages test_job_mix_records read

    # --- bookkeeping -------------------------------------------------------
    def add(self, label, jobid, **kw):
        j = MixJob(label, jobid, **kw)
        self.jobs[label] = j
        return j

    def expected_total(self):
        return sum(j.records for j in self.jobs.values())

    def label_of(self, jobid):
        return job_label(self.jobs, self.final, jobid)

    def all_jobids(self):
        """Every job id the mix created (array tasks included)."""
        ids = set()
        for j in self.jobs.values():
            if j.label == "array":
                ids |= {jid for jid, s in self.final.items() if s.get("ArrayJobId") == str(j.jobid)}
            else:
                ids.add(j.jobid)
        return ids

    # --- driving -----------------------------------------------------------
    def start(self):
        self.thread = threading.Thread(target=self._run, name=f"mix-{self.cluster.name}", daemon=True)
        self.thread.start()

    def join(self, timeout):
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise RigError(f"job mix on {self.cluster.name} still running after {timeout}s")
        if self.error:
            raise RigError(f"job mix on {self.cluster.name} failed:\n{self.error}")

    def _run(self):
        try:
            self.t_start = time.monotonic()
            self._drive()
            self.t_end = time.monotonic()
            log(f"mix on {self.cluster.name}: {len(self.jobs)} submissions, "
                f"{self.expected_total()} records expected, driven in {self.t_end - self.t_start:.0f}s")
        except BaseException:  # reported by the test that joins
            self.error = traceback.format_exc()
            log(f"mix on {self.cluster.name} FAILED: {self.error.splitlines()[-1]}")

    def _drive(self):
        c = self.cluster
        sb = c.sbatch
        # First the time-limit job: it takes 60-90 s (limit 1 min, checked
        # every 30 s), everything else runs meanwhile.
        # Timed out / cancelled while running: slurmctld writes the record when
        # it marks the job (TIMEOUT/CANCELLED, exit code still 0:0); the batch
        # script's end (0:15, SIGTERM) reaches the job record only afterwards,
        # so scontrol shows 0:15 and the record, as Slurm defines it, 0:0.
        self.add("timeout", sb("-J", "timeout", "-t", "1", "--wrap", "sleep 600"),
                 script=wrap_script("sleep 600"), expect_state="TIMEOUT", expect_exit="0:0",
                 record_expect={"exit_code": "0:0"})
        self.add("cancel_running", sb("-J", "cancel-running", "--wrap", "sleep 600"),
                 script=wrap_script("sleep 600"), expect_state="CANCELLED", expect_exit="0:0",
                 record_expect={"exit_code": "0:0"})
        # The first run marks that it really runs (see _requeue), the second ends at once.
        rq_cmd = ('if [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ]; then exit 0; fi; '
                  'touch "requeue-started.$SLURM_JOB_ID"; sleep 600')
        self.add("requeue", sb("-J", "requeue", "--requeue", "--wrap", rq_cmd), records=2,
                 script=wrap_script(rq_cmd), expect_state="COMPLETED", expect_exit="0:0")
        self.add("ok", sb("-J", "ok", "--wrap", "echo ok"), script=wrap_script("echo ok"),
                 expect_state="COMPLETED", expect_exit="0:0")
        self.add("exit3", sb("-J", "exit3", "--wrap", "exit 3"), script=wrap_script("exit 3"),
                 expect_state="FAILED", expect_exit="3:0")
        self.add("signal9", sb("-J", "signal9", "--wrap", "kill -9 $$"), script=wrap_script("kill -9 $$"),
                 expect_state="FAILED", expect_exit="0:9")
        # Tricky names: job name, working directory, -o/-e paths, script text.
        wd = c.dir / "work" / WEIRD_DIR
        wd.mkdir(parents=True)
        od = c.dir / "work" / WEIRD_OUT_DIR
        od.mkdir(parents=True)
        self.add("weird", sb("-J", WEIRD_NAME, "-D", c.inpath(wd), "-o", c.inpath(od) + WEIRD_OUT,
                             "-e", c.inpath(od) + WEIRD_ERR, "-i", "/dev/null", input=WEIRD_SCRIPT.encode()),
                 script=WEIRD_SCRIPT, expect_state="COMPLETED", expect_exit="0:0")
        bad_dir = os.fsencode(str(c.dir / "work")) + b"/" + BAD_DIR
        os.makedirs(bad_dir)
        bad_in = c.inpath_b(bad_dir)
        self.add("bad_utf8", sb(b"-J", BAD_NAME, b"-D", bad_in, input=BAD_SCRIPT),
                 script=BAD_SCRIPT.decode("utf-8", "replace"), expect_state="COMPLETED", expect_exit="0:0")
        held = self.add("cancel_pending", sb("-J", "cancel-pending", "--hold", "--wrap", "true"),
                        script=wrap_script("true"), expect_state="CANCELLED")
        arr_cmd = "echo task $SLURM_ARRAY_TASK_ID"
        self.add("array", sb("-J", "array", "--array=0-99", "--wrap", arr_cmd), records=100,
                 script=wrap_script(arr_cmd), expect_state="COMPLETED", expect_exit="0:0")

        c.scontrol("show", "job", str(held.jobid))
        c.cmd("scancel", str(held.jobid))

        cr = self.jobs["cancel_running"]
        c.wait_state(cr.jobid, {"RUNNING"}, 60)
        c.cmd("scancel", str(cr.jobid))

        self._requeue(self.jobs["requeue"])

        quick = [j.jobid for j in self.jobs.values() if j.label != "timeout"]
        c.wait_done(quick, 150)
        self._reservation_phase()
        c.wait_done([self.jobs["timeout"].jobid], 200)
        # Everything ended: scontrol's final view of every job, well before
        # MinJobAge (300 s) lets slurmctld purge them.
        self.final = c.show_jobs()
        for j in self.jobs.values():
            if "final" in j.snapshots:
                self.final[j.jobid] = j.snapshots["final"]
        for j in self.jobs.values():
            if j.jobid not in self.final:
                raise RigError(f"{j.label} (job {j.jobid}) not shown by scontrol at the end")
        n_tasks = len([s for s in self.final.values() if s.get("ArrayJobId") == str(self.jobs["array"].jobid)])
        if n_tasks != 100:
            raise RigError(f"scontrol shows {n_tasks} array tasks, not 100")

    def _requeue(self, j):
        c = self.cluster
        c.wait_state(j.jobid, {"RUNNING"}, 60)
        # RUNNING in slurmctld is not yet running on the node: a requeue while
        # slurmd is still launching the batch script makes slurmd kill the job
        # ("killed while launch was in progress"), and the requeued job ends
        # CANCELLED. Wait for the script itself, plus a moment for slurmd to
        # register the launch as complete.
        marker = c.dir / f"requeue-started.{j.jobid}"
        wait_for(marker.exists, 60, f"the first run of job {j.jobid} to start its script")
        time.sleep(1)
        j.snapshots["running"] = c.wait_state(j.jobid, {"RUNNING"}, 10)
        before = datetime.now(timezone.utc).replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S")
        c.scontrol("requeue", str(j.jobid))
        requeued_at = time.monotonic()
        after = datetime.now(timezone.utc).replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S")
        self.requeue_window = (before, after)
        # Slurm delays a requeued batch job (BeginTime = end of the first run's
        # clean-up + 120 s, set once it has completed). Bring that forward, but
        # not within 2 s of the requeue: the requeue revokes the job's credential
        # on the node, with a time in whole seconds, and a new launch in that same
        # second is refused by slurmd ("Killing non-startable batch JobId=N: Job
        # credential revoked"), so the second run ends FAILED 1:0 (seen once in CI).
        deadline = requeued_at + 90
        while True:
            s = c.show_job(j.jobid)
            if s.state in FINAL_STATES or s.state == "RUNNING":
                break
            elig = scontrol_time_utc(s.get("EligibleTime"))
            now = datetime.now(timezone.utc).replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S")
            settled = time.monotonic() - requeued_at >= 2.0
            if s.state == "PENDING" and int(s.get("Restarts", "0")) >= 1 and elig and elig > now and settled:
                c.scontrol("update", f"jobid={j.jobid}", "StartTime=now", check=False)
            if time.monotonic() > deadline:
                raise RigError(f"requeued job {j.jobid} did not start again (state {s.state})")
            time.sleep(0.3)

    def _reservation_phase(self):
        """A whole-node reservation (IGNORE_JOBS: the time-limit job still runs)
        for two jobs, one of them with many options and a dependency on the
        other; deleted again at once, so the rest of the mix never waits on it."""
        c = self.cluster
        c.scontrol("create", "reservation", f"ReservationName={RESERVATION}", "StartTime=now",
                   "Duration=10", "Users=root", "Nodes=localhost", "Flags=IGNORE_JOBS")
        try:
            dep = self.add("dep_target", c.sbatch("-J", "dep-target", f"--reservation={RESERVATION}",
                                                  "--wrap", "sleep 3"),
                           script=wrap_script("sleep 3"), expect_state="COMPLETED", expect_exit="0:0")
            many = self.add(
                "many",
                c.sbatch("-J", "many", "-n", "2", "-c", "1", "--ntasks-per-node=2", "-x", "ghost",
                         f"--dependency=afterok:{dep.jobid}", "--comment=a \"comment\" é",
                         f"--reservation={RESERVATION}", "-A", ACCOUNT, "-t", "5", "--wrap", "true"),
                script=wrap_script("true"), ntasks_given=True, expect_state="COMPLETED", expect_exit="0:0")
            s = c.show_job(many.jobid)
            if s.state != "PENDING" or "unfulfilled" not in (s.get("Dependency") or ""):
                raise RigError(f"many-options job not pending on its dependency: {s.state} {s.get('Dependency')}")
            many.snapshots["pending"] = s
            many.dependency = s["Dependency"]
            c.wait_done([dep.jobid, many.jobid], 60)
            # scontrol stops naming the reservation once it is deleted: keep
            # the view from before.
            for j in (dep, many):
                j.snapshots["final"] = c.show_job(j.jobid)
        finally:
            c.scontrol("delete", f"ReservationName={RESERVATION}", check=False)


# --- checking the records of a mix ----------------------------------------------


@dataclass
class MixCheck:
    expected: int = 0
    received: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    missing: int = 0
    unexpected: int = 0
    problems: list = field(default_factory=list)
    records: dict = field(default_factory=dict)  # jobid -> [dict, ...] in offset order

    def numbers(self):
        return (f"records expected={self.expected} received={self.received} valid={self.valid} "
                f"invalid={self.invalid} duplicates={self.duplicates} missing={self.missing} "
                f"unexpected={self.unexpected} mismatches={len(self.problems)}")


def check_mix_records(mix, messages, release, *, keyed=True):
    """Every message of the mix's topic against what Slurm defines for the mix:
    valid record text, schema, key, exactly the expected records per job, and
    every field against scontrol. Returns a MixCheck (problems listed)."""
    out = MixCheck(expected=mix.expected_total(), received=len(messages))
    p = out.problems
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        try:
            pairs = decode_record(m.value)
        except InvalidRecord as exc:
            out.invalid += 1
            p.append(f"partition {m.partition} offset {m.offset}: invalid record: {exc}")
            continue
        out.valid += 1
        rec = dict(pairs)
        for prob in schema_problems(pairs, release):
            p.append(f"job {rec.get('jobid')}: schema: {prob}")
        if keyed and m.key != str(rec.get("jobid")).encode():
            p.append(f"job {rec.get('jobid')}: message key {m.key!r} is not the job id")
        out.records.setdefault(rec.get("jobid"), []).append(rec)

    if keyed:
        p.extend(record_id_problems(messages))
    want = {jid: 1 for jid in mix.all_jobids()}
    want[mix.jobs["requeue"].jobid] = 2
    for jid, recs in out.records.items():
        if jid not in want:
            out.unexpected += len(recs)
            p.append(f"record(s) of job {jid}, which the mix did not create: {len(recs)}")
        elif len(recs) > want[jid]:
            out.duplicates += len(recs) - want[jid]
            p.append(f"job {jid} ({mix.label_of(jid)}): {len(recs)} records, expected {want[jid]}")
    for jid, n in want.items():
        have = len(out.records.get(jid, []))
        if have < n:
            out.missing += n - have
            p.append(f"job {jid} ({mix.label_of(jid)}): {have} record(s), expected {n}")

    for label, j in mix.jobs.items():
        if label == "array":
            tasks = {jid: s for jid, s in mix.final.items() if s.get("ArrayJobId") == str(j.jobid)}
            seen = []
            for jid, snap in tasks.items():
                for rec in out.records.get(jid, [])[:1]:
                    seen.append(rec.get("array_task_id"))
                    p.extend(f"array task job {jid}: {x}" for x in _check_one(rec, snap, j, release))
                    if rec.get("array_job_id") != j.jobid:
                        p.append(f"array task job {jid}: array_job_id {rec.get('array_job_id')} != {j.jobid}")
            if sorted(x for x in seen if isinstance(x, int)) != sorted(range(100)) and not out.missing:
                p.append(f"array: task ids {sorted(seen, key=str)} are not 0..99 once each")
            continue
        recs = out.records.get(j.jobid, [])
        if label == "requeue":
            if len(recs) == 2:
                first, second = recs  # one key -> one partition: in order
                lo, hi = mix.requeue_window
                end = first.get("@end")
                if not (isinstance(end, str) and lo <= end <= hi):
                    p.append(f"requeue: first run's @end {end!r} not within the requeue window {lo}..{hi}")
                    end = None
                p.extend(f"requeue first run: {x}" for x in _check_one(
                    first, j.snapshots["running"], j, release,
                    expect={"state": "PENDING", "@end": end}, final=False))
                p.extend(f"requeue final run: {x}" for x in _check_one(second, mix.final[j.jobid], j, release))
            continue
        for rec in recs[:1]:
            p.extend(f"{label} (job {j.jobid}): {x}" for x in _check_one(rec, mix.final[j.jobid], j, release))
        if recs:
            p.extend(f"{label}: {x}" for x in _label_specific(label, recs[0], mix))
    return out


def _check_one(rec, snap, j, release, expect=None, final=True):
    if expect is None:
        expect = j.record_expect
    bad = compare_with_scontrol(rec, snap, release=release, ntasks_given=j.ntasks_given,
                                dependency=j.dependency, expect=expect)
    if not j.ntasks_given and rec.get("ntasks") != 0:
        # No -n: the job record's num_tasks stays 0 (scontrol prints a
        # derived NumTasks instead).
        bad.append(f"ntasks {rec.get('ntasks')!r} != 0 (no -n given)")
    bad += check_script(rec, j.script, "script")
    if final:
        if j.expect_state and rec.get("state") != j.expect_state:
            bad.append(f"state {rec.get('state')!r}, the mix made it {j.expect_state}")
        if j.expect_exit and rec.get("exit_code") != j.expect_exit:
            bad.append(f"exit_code {rec.get('exit_code')!r}, the job ended with {j.expect_exit}")
    return bad


def _label_specific(label, rec, mix):
    """Literal expectations, independent of how scontrol's text was parsed."""
    c = mix.cluster
    want = {}
    if label == "weird":
        od = c.inpath(c.dir / "work" / WEIRD_OUT_DIR)
        want = {"job_name": WEIRD_NAME, "work_dir": c.inpath(c.dir / "work" / WEIRD_DIR),
                "std_in": "/dev/null", "std_out": od + WEIRD_OUT, "std_err": od + WEIRD_ERR,
                "state": "COMPLETED", "exit_code": "0:0"}
    elif label == "bad_utf8":
        wd = c.inpath_b(os.fsencode(str(c.dir / "work")) + b"/" + BAD_DIR)
        want = {"job_name": BAD_NAME.decode("utf-8", "replace"), "work_dir": wd.decode("utf-8", "replace")}
    elif label == "many":
        want = {"excluded_nodes": "ghost", "reservation_name": RESERVATION, "account": ACCOUNT,
                "ntasks": 2, "ntasks_per_node": 2, "cpus_per_task": 1, "total_cpus": 2, "total_nodes": 1,
                "time_limit": 300, "orig_dependency": f"afterok:{mix.jobs['dep_target'].jobid}(unfulfilled)"}
    elif label == "timeout":
        want = {"state": "TIMEOUT", "time_limit": 60, "exit_code": "0:0"}
    elif label == "signal9":
        want = {"exit_code": "0:9", "state": "FAILED"}
    elif label == "exit3":
        want = {"exit_code": "3:0", "state": "FAILED"}
    elif label == "cancel_pending":
        want = {"state": "CANCELLED", "nodes": None, "total_cpus": 0}
    elif label == "cancel_running":
        want = {"state": "CANCELLED", "nodes": "localhost", "exit_code": "0:0"}
    bad = [f"{k} {rec.get(k, '<absent>')!r} != {v!r}" for k, v in want.items() if rec.get(k, "<absent>") != v]
    if label == "weird":
        # The job really ran in that directory and wrote to that file.
        out = c.dir / "work" / WEIRD_OUT_DIR / WEIRD_OUT[1:].replace("%j", str(rec["jobid"]))
        try:
            text = out.read_text()
        except OSError as exc:
            text = f"<{exc}>"
        if text != c.inpath(c.dir / "work" / WEIRD_DIR) + "\n":
            bad.append(f"job output {out} holds {text!r}, not the working directory")
    return bad
