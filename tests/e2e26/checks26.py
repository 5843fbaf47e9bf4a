"""Checks of one run's records: text form, schema, message key, the expected
records per job, and every field against scontrol's view of the job."""

import struct
from datetime import datetime

from mix26 import ACCOUNT, ADMIN_COMMENT, COMMENT, RESERVATION, WCKEY
from rig26 import (InvalidRecord, decode_record, expand_io_pattern, name_id, record_id_problems, schema_problems,
                   scontrol_null, scontrol_seconds, scontrol_time_utc)


def decode_all(messages, start, *, keyed=True):
    """[(message, pairs)] of the valid records, and the problems."""
    out, problems = [], []
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        try:
            pairs = decode_record(m.value)
        except InvalidRecord as exc:
            problems.append(f"{m.partition}/{m.offset}: invalid record: {exc}")
            continue
        rec = dict(pairs)
        for p in schema_problems(pairs, start):
            problems.append(f"job {rec.get('jobid')}: {'start' if start else 'finish'} schema: {p}")
        if keyed and m.key != str(rec.get("jobid")).encode():
            problems.append(f"job {rec.get('jobid')}: message key {m.key!r} is not the job id")
        out.append((m, pairs))
    if keyed:
        problems += record_id_problems(messages)
    return out, problems


def per_job(mix, decoded, ran_only):
    """Exactly one record per job of the mix (ran_only: per job that started)."""
    problems, recs = [], {}
    for _, pairs in decoded:
        rec = dict(pairs)
        recs.setdefault(rec.get("jobid"), []).append(rec)
    want = mix.jobids(ran_only=ran_only)
    for jid in sorted(set(recs) | want):
        n = len(recs.get(jid, []))
        if jid not in want:
            problems.append(f"{n} record(s) of job {jid} ({mix.label_of(jid)}), which should have none")
        elif n != 1:
            problems.append(f"job {jid} ({mix.label_of(jid)}): {n} records, expected 1")
    return {jid: r[0] for jid, r in recs.items()}, problems


def compare_with_scontrol(rec, snap, mix, *, start, params):
    """One record against scontrol's final view of the job."""
    bad = []
    label = mix.label_of(snap.jobid)
    job = mix.jobs[label]

    def eq(key, want):
        have = rec.get(key, "<absent>")
        if want is None:
            if key in rec and rec[key] is not None:
                bad.append(f"{key}: record has {have!r}, expected none")
        elif have != want:
            bad.append(f"{key}: record {have!r} != expected {want!r}")

    eq("jobid", snap.jobid)
    user, uid = name_id(snap["UserId"])
    group, gid = name_id(snap["GroupId"])
    eq("user_id", uid)
    eq("username", user)
    eq("group_id", gid)
    eq("groupname", group)
    eq("job_name", snap["JobName"] or None)
    eq("partition", snap["Partition"])
    ran = not scontrol_null(snap.get("NodeList"))
    eq("nodes", snap["NodeList"] if ran else None)
    eq("total_cpus", int(snap["NumCPUs"]) if ran else 0)
    eq("total_nodes", int(snap["NumNodes"]) if ran else 0)
    eq("work_dir", snap["WorkDir"])
    eq("std_in", None if scontrol_null(snap.get("StdIn")) else snap["StdIn"])
    for key, sk in (("std_out", "StdOut"), ("std_err", "StdErr")):
        if key in rec and expand_io_pattern(rec[key], snap) != snap[sk]:
            bad.append(f"{key}: {rec[key]!r} expands to {expand_io_pattern(rec[key], snap)!r}, "
                       f"scontrol {snap[sk]!r}")
    eq("time_limit", scontrol_seconds(snap["TimeLimit"]))
    if snap.get("ArrayJobId"):
        eq("array_job_id", int(snap["ArrayJobId"]))
        eq("array_task_id", int(snap["ArrayTaskId"]))
    else:
        eq("array_job_id", None)
        eq("array_task_id", None)
    st = scontrol_time_utc(snap.get("StartTime"))
    eq("@start", st)
    eq("@submit", scontrol_time_utc(snap.get("SubmitTime")))
    eq("@eligible", scontrol_time_utc(snap.get("EligibleTime")))
    if start:
        eq("state", None)
    else:
        eq("state", snap.state)
        # A job cancelled or killed while running: the record is written when
        # slurmctld marks it, before the batch script's status (0:15) arrives.
        eq("exit_code", "0:0" if label == "cancel_running" else snap["ExitCode"])
        eq("@end", scontrol_time_utc(snap.get("EndTime")))
        if st and "elapsed" in rec:
            t0 = datetime.strptime(st, "%Y-%m-%dT%H:%M:%S")
            t1 = datetime.strptime(scontrol_time_utc(snap["EndTime"]), "%Y-%m-%dT%H:%M:%S")
            eq("elapsed", max(0, int((t1 - t0).total_seconds())))
            want = float(struct.unpack("f", struct.pack("f", rec["elapsed"] * rec.get("total_cpus", 0) / 3600))[0])
            eq("cpu_hours", want)
    pr = snap.get("Priority")
    eq("priority", int(pr) if pr and pr.isdigit() and int(pr) not in (0xFFFFFFFE, 0xFFFFFFFF) else None)
    eq("account", ACCOUNT if label == "many" else None)
    eq("qos", None)  # no slurmdbd in the rig: no QOS record, no association
    eq("cluster", None)
    eq("parent_accounts", None)
    eq("reservation_name", RESERVATION if label in ("many", "dep_target") else None)
    eq("wc_key", WCKEY if label == "many" else None)
    eq("excluded_nodes", "ghost" if label == "many" else None)
    eq("admin_comment", ADMIN_COMMENT if label == "many" else None)
    eq("comment", COMMENT if label == "many" and "send_comment" in params else None)
    eq("script", job.script if "send_script" in params and job.script is not None else None)
    if label == "many":
        eq("ntasks", 2)
        eq("ntasks_per_node", 2)
        eq("cpus_per_task", 1)
        dep = job.snapshots["pending"]["Dependency"]
        eq("orig_dependency", dep)
    if snap.get("ReqTRES") is not None:
        eq("tres_req", None if scontrol_null(snap["ReqTRES"]) else snap["ReqTRES"])
        if ran:
            eq("tres_alloc", None if scontrol_null(snap.get("AllocTRES")) else snap["AllocTRES"])
    return bad


def check_run(run, *, start):
    """All problems of one run's finish (start=False) or start records, and
    the records by job id."""
    mix = run.mix
    consumed = run.start if start else run.finish
    expected = mix.expected_start() if start else mix.expected_finish()
    problems = []
    if consumed.rc != 0:
        problems.append(f"consumer: {'too few' if consumed.rc == 3 else 'too many'} records: "
                        f"{len(consumed.messages)}, expected {expected}")
    decoded, p = decode_all(consumed.messages, start, keyed=run.cluster.plugin == "ours")
    problems += p
    recs, p = per_job(mix, decoded, ran_only=start)
    problems += p
    for jid, rec in recs.items():
        snap = mix.final.get(jid)
        if snap is None:
            continue
        for b in compare_with_scontrol(rec, snap, mix, start=start, params=run.cluster.params):
            problems.append(f"job {jid} ({mix.label_of(jid)}) {'start' if start else 'finish'}: {b}")
    return recs, problems
