"""Our plugin on Slurm 26.05.5 with start events on and off.

on  (JobCompParams enable_job_start,send_script,send_comment): every job of
    the mix gives exactly one finish record on <ClusterName>, and every job
    that started exactly one start record on <ClusterName>-job-start (the
    default topic_job_start); a job cancelled while pending gives none. A start
    record has "state": null and none of the finish-only fields. All records
    are valid JSON in json-c's form, keyed by the job id, with the values
    scontrol reports.
off (no JobCompParams): the finish records as above (without script and
    comment, which are off by default), no start record at all (the start
    topic never appears), and not one log line about a single job (SchedMD's
    plugin logs an error for every job start here).
"""

import re

from checks26 import check_run

# Keys of a start record that must equal the finish record's of the same job.
SHARED = ["jobid", "sluid", "original_sluid", "container", "username", "user_id", "groupname",
          "group_id", "@start", "partition", "alloc_node", "nodes", "total_cpus", "total_nodes",
          "array_job_id", "array_task_id", "het_job_id", "het_job_offset", "@submit", "@eligible",
          "@queue_wait", "work_dir", "std_err", "std_in", "std_out", "ntasks", "ntasks_per_node",
          "ntasks_per_tres", "cpus_per_task", "orig_dependency", "excluded_nodes", "features",
          "time_limit", "job_name", "reservation_name", "wc_key", "tres_req_raw", "tres_req",
          "account", "admin_comment", "comment", "script"]


def test_on_finish_records(runs, numbers):
    r = runs["on"].require()
    recs, problems = check_run(r, start=False)
    numbers(f"finish records expected={r.mix.expected_finish()} received={len(r.finish.messages)} "
            f"jobs={len(recs)} problems={len(problems)}")
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:60])


def test_on_start_records(runs, numbers):
    r = runs["on"].require()
    starts, problems = check_run(r, start=True)
    finishes, _ = check_run(r, start=False)
    pending = r.mix.jobs["cancel_pending"].jobid
    if pending in starts:
        problems.append(f"a start record for job {pending}, which was cancelled while pending")
    for jid, s in starts.items():
        f = finishes.get(jid)
        if f is None:
            continue
        for k in SHARED:
            if s.get(k, "<absent>") != f.get(k, "<absent>"):
                problems.append(f"job {jid} ({r.mix.label_of(jid)}): {k}: start {s.get(k, '<absent>')!r} "
                                f"!= finish {f.get(k, '<absent>')!r}")
    numbers(f"start records expected={r.mix.expected_start()} received={len(r.start.messages)} "
            f"topic={r.cluster.start_topic} problems={len(problems)}")
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:60])


def test_off_finish_records_only(runs, numbers):
    r = runs["off"].require()
    recs, problems = check_run(r, start=False)
    for jid, rec in recs.items():
        for k in ("script", "comment"):
            if k in rec:
                problems.append(f"job {jid}: {k} present although send_{k} is off")
    if r.topics is None:
        problems.append("could not list the broker's topics")
    elif r.cluster.start_topic in r.topics:
        problems.append(f"topic {r.cluster.start_topic} exists: something was produced to it")
    numbers(f"finish records expected={r.mix.expected_finish()} received={len(r.finish.messages)}; "
            f"start topic present={r.topics is not None and r.cluster.start_topic in r.topics}")
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:60])


def _job_lines(text, jobids):
    """slurmctld log lines of a jobcomp plugin that name one of the jobs."""
    out = []
    for line in text.splitlines():
        if "jobcomp" not in line.lower():
            continue
        for m in re.finditer(r"(?i)job(?:_?id)?[ =:]*(\d+)", line):
            if int(m.group(1)) in jobids:
                out.append(line)
                break
    return out


def _seen_log(r, ours=True):
    """r's slurmctld log, after proving it is the log these checks must read:
    readable, with lines that must be there (our plugin's start-up line, and
    slurmctld's own lines naming the mix's jobs). Fails otherwise."""
    assert r.log is not None, r.log_error
    if ours:
        assert "jobcomp/kafka: started: topic=" in r.log, \
            f"run {r.name}: the plugin's start-up line is not in the log read ({len(r.log)} bytes)"
    ids = r.mix.jobids()
    named = [ln for ln in r.log.splitlines()
             if "jobcomp" not in ln.lower() and any(int(m) in ids for m in re.findall(r"JobId=(\d+)", ln))]
    assert named, f"run {r.name}: no slurmctld line names a job of the mix: not the log of this run?"
    return r.log


def test_off_no_per_job_log_line(runs, numbers):
    r = runs["off"].require()
    lines = _job_lines(_seen_log(r), r.mix.jobids())
    theirs = runs["schedmd"]
    on_lines = _job_lines(_seen_log(runs["on"].require()), runs["on"].mix.jobids())
    numbers(f"per-job jobcomp log lines with start events off: ours {len(lines)}; "
            f"(with DebugFlags=JobComp and start events on: ours "
            f"{len(on_lines)}, SchedMD's "
            f"{len(_job_lines(_seen_log(theirs.require(), ours=False), theirs.mix.jobids()))})")
    # The same search finds lines where there are some (DebugFlags=JobComp):
    # it can fail.
    assert on_lines, "the per-job search finds no line even with DebugFlags=JobComp: it cannot fail"
    assert not lines, "per-job log lines:\n" + "\n".join(lines[:20])


def test_ours_logs_no_error(runs, numbers):
    bad = []
    for name in ("on", "off"):
        r = runs[name].require()
        bad += [f"[{name}] {ln}" for ln in _seen_log(r).splitlines()
                if "jobcomp" in ln.lower() and re.search(r"\b(error|fatal)\b", ln, re.I)]
    numbers(f"jobcomp error lines: {len(bad)}")
    assert not bad, "\n".join(bad[:20])
