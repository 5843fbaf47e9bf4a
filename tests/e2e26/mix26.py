"""The job mix of the 26.05.5 tests, driven on one cluster, and what Slurm
defines for it: which jobs end (and how), which of them started, how many
records each gives, scontrol's final view of every job.
"""

import os
import time
from dataclasses import dataclass, field

from rig26 import RigError, log, wrap_script  # first: it puts tests/e2e on sys.path
from mix import job_label  # noqa: E402 (tests/e2e/mix.py)

# Names and paths with quotes, a backslash, slashes, a tab, control
# characters, a newline and UTF-8 (never " Capital=", see parse_scontrol_jobs).
ODD_NAME = "odd \"dq\" 'sq' back\\slash a/b\ttab\x01\x1f\x7f nl\nend \u00e9\u4e2d\U0001f600"
ODD_DIR = "dir \"dq\" back\\slash/sub\ttab\x01 \u00e9\u4e2d\U0001f600"
ODD_SCRIPT = ("#!/bin/sh\n# \u00e9\u4e2d\U0001f600 \"dq\" 'sq' back\\slash tab\t ctl\x01\x1f del\x7f\n"
              "pwd\nexit 0\n")
# Output paths: a backslash would switch %-expansion off, so none here.
ODD_OUT_DIR = "out \"dq\" 'sq'\ttab \u00e9\u4e2d"
ODD_OUT = "/o \"dq\" %j \u00e9.txt"
ODD_ERR = "/e\t%j\x1f.txt"
# Invalid UTF-8: a lone 0xff, a truncated sequence, a lone continuation byte.
BAD_NAME = b"bad\xffname\xc3(x\x80"
BAD_DIR = b"baddir\xfe\xc3"
BAD_SCRIPT = b"#!/bin/sh\n# not UTF-8: \xff\xfe \xc3(\ntrue\n"

RESERVATION = "jkres26"
ACCOUNT = "jkacct26"
WCKEY = "jkwckey26"
COMMENT = "a \"comment\" with / and \u00e9"
ADMIN_COMMENT = "admin \"note\" / \u00e9"
ARRAY_TASKS = 4
# A second node, never used (FUTURE), so that -x/--exclude names a real node.
NODES_CONF = ("NodeName=ghost CPUs=1 State=FUTURE\n"
              "NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=4000 State=UNKNOWN")
MIX_EXTRA_CONF = (NODES_CONF,)


@dataclass
class MixJob:
    label: str
    jobid: int
    records: int = 1  # finish records (array: one per task)
    ran: bool = True  # got nodes, so one start record per record
    script: str = None  # the batch script (None: not a batch job)
    snapshots: dict = field(default_factory=dict)


class Mix:
    def __init__(self, cluster):
        self.cluster = cluster
        self.jobs = {}
        self.final = {}  # jobid -> Snapshot (scontrol, after every job ended)
        self.seconds = None

    def add(self, label, jobid, **kw):
        self.jobs[label] = MixJob(label, jobid, **kw)
        return self.jobs[label]

    def expected_finish(self):
        return sum(j.records for j in self.jobs.values())

    def expected_start(self):
        return sum(j.records for j in self.jobs.values() if j.ran)

    def label_of(self, jobid):
        return job_label(self.jobs, self.final, jobid)

    def jobids(self, ran_only=False):
        """Every job id the mix created (array tasks included)."""
        ids = set()
        for j in self.jobs.values():
            if ran_only and not j.ran:
                continue
            if j.label == "array":
                ids |= {jid for jid, s in self.final.items() if s.get("ArrayJobId") == str(j.jobid)}
            else:
                ids.add(j.jobid)
        return ids

    def ident(self, rec):
        """A record's job, the same on every cluster: (label[, array task])."""
        label = self.label_of(rec.get("jobid"))
        return ("array", rec.get("array_task_id")) if label == "array" else (label,)

    def drive(self):
        t0 = time.monotonic()
        c = self.cluster
        sb = c.sbatch
        self.add("cancel_running", sb("-J", "cancel-running", "--wrap", "sleep 600"),
                 script=wrap_script("sleep 600"))
        self.add("ok", sb("-J", "ok", "--wrap", "echo ok"), script=wrap_script("echo ok"))
        self.add("exit3", sb("-J", "exit3", "--wrap", "exit 3"), script=wrap_script("exit 3"))
        self.add("signal9", sb("-J", "signal9", "--wrap", "kill -9 $$"), script=wrap_script("kill -9 $$"))
        wd = c.dir / "work" / ODD_DIR
        wd.mkdir(parents=True)
        od = c.dir / "work" / ODD_OUT_DIR
        od.mkdir(parents=True)
        self.add("odd", sb("-J", ODD_NAME, "-D", c.inpath(wd), "-o", c.inpath(od) + ODD_OUT,
                           "-e", c.inpath(od) + ODD_ERR, "-i", "/dev/null", input=ODD_SCRIPT.encode()),
                 script=ODD_SCRIPT)
        bad_dir = os.fsencode(str(c.dir / "work")) + b"/" + BAD_DIR
        os.makedirs(bad_dir)
        self.add("bad_utf8", sb(b"-J", BAD_NAME, b"-D", c.inpath_b(bad_dir), input=BAD_SCRIPT),
                 script=BAD_SCRIPT.decode("utf-8", "replace"))
        held = self.add("cancel_pending", sb("-J", "cancel-pending", "--hold", "--wrap", "true"),
                        ran=False, script=wrap_script("true"))
        arr_cmd = "echo task $SLURM_ARRAY_TASK_ID"
        self.add("array", sb("-J", "array", f"--array=0-{ARRAY_TASKS - 1}", "--wrap", arr_cmd),
                 records=ARRAY_TASKS, script=wrap_script(arr_cmd))
        c.cmd("scancel", str(held.jobid))
        cr = self.jobs["cancel_running"]
        c.wait_state(cr.jobid, {"RUNNING"}, 60)
        c.cmd("scancel", str(cr.jobid))
        # An interactive job (no batch script).
        c.cmd("srun", "-J", "interactive", "-n", "1", "true", timeout=60)
        j = self.add("interactive", 0)
        quick = [x.jobid for x in self.jobs.values() if x.jobid]
        c.wait_done(quick, 120)
        jobs = c.show_jobs()
        j.jobid = max(s.jobid for s in jobs.values() if s.get("JobName") == "interactive")
        self._reservation_phase()
        self.final = c.show_jobs()
        for x in self.jobs.values():
            if "final" in x.snapshots:
                self.final[x.jobid] = x.snapshots["final"]
            if x.jobid not in self.final:
                raise RigError(f"{x.label} (job {x.jobid}) not shown by scontrol at the end")
        n = len(self.jobids()) - (len(self.jobs) - 1)
        if n != ARRAY_TASKS:
            raise RigError(f"scontrol shows {n} array tasks, not {ARRAY_TASKS}")
        self.seconds = time.monotonic() - t0
        log(f"mix on {c.name}: {len(self.jobs)} submissions, {self.expected_finish()} finish / "
            f"{self.expected_start()} start records expected, driven in {self.seconds:.0f}s")

    def _reservation_phase(self):
        """A reservation for two jobs, one with many options, an admin comment
        and a dependency on the other; deleted when both have ended."""
        c = self.cluster
        c.scontrol("create", "reservation", f"ReservationName={RESERVATION}", "StartTime=now",
                   "Duration=10", "Users=root", "Nodes=localhost", "Flags=IGNORE_JOBS")
        try:
            dep = self.add("dep_target", c.sbatch("-J", "dep-target", f"--reservation={RESERVATION}",
                                                  "--wrap", "sleep 2"), script=wrap_script("sleep 2"))
            many = self.add("many", c.sbatch(
                "-J", "many", "-n", "2", "-c", "1", "--ntasks-per-node=2", "-x", "ghost",
                f"--dependency=afterok:{dep.jobid}", f"--comment={COMMENT}", f"--wckey={WCKEY}",
                f"--reservation={RESERVATION}", "-A", ACCOUNT, "-t", "5", "--wrap", "true"),
                script=wrap_script("true"))
            c.scontrol("update", f"JobId={many.jobid}", f"AdminComment={ADMIN_COMMENT}")
            s = c.show_job(many.jobid)
            if s.state != "PENDING" or "unfulfilled" not in (s.get("Dependency") or ""):
                raise RigError(f"many-options job not pending on its dependency: {s.state} {s.get('Dependency')}")
            many.snapshots["pending"] = s
            c.wait_done([dep.jobid, many.jobid], 60)
            # scontrol stops naming the reservation once it is deleted.
            for x in (dep, many):
                x.snapshots["final"] = c.show_job(x.jobid)
        finally:
            c.scontrol("delete", f"ReservationName={RESERVATION}", check=False)
