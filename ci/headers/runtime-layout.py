#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Runtime evidence of struct offsets: match what ci/headers/runtime-probe.c saw
# of real job records (ci/headers/runtime-probe.sh's output directory) with
# what `scontrol show job` and the submission said of the same jobs.
#
# For every member the layout header declares, a predicate says what the
# member must hold for each job (job_id == JobId, name == JobName, priority ==
# 4242 for the job whose priority was set, ...). The predicate is tried at
# every suitably aligned offset of the struct; the offsets where it holds for
# every job and event form the member's candidates. Candidates inside the span
# of a member already pinned to one offset are dropped, repeatedly (each byte
# belongs to one member). Then, for the declared offset:
#   confirmed   the only candidate left;
#   consistent  one of several (a weak predicate such as "is NULL" or "is 0");
#   MISMATCH    not a candidate (exit status 1);
#   unobservable  nothing in the run shows the member (e.g. assoc_ptr is NULL
#               without accounting): the binary evidence must cover it.
# sizeof(struct) is confirmed by the size word xmalloc() keeps in front of the
# block slurmctld allocated for it.
#
# Usage: runtime-layout.py PROBE_DIR OURS
#   OURS: the probe output for our header ("S.F offset N size N type T" and
#   "S sizeof N" lines; see ci/check-headers.sh).
# Prints one line per member/sizeof, then a summary line.
import calendar
import json
import os
import re
import struct
import sys
import time

JOB_MAGIC = 0xF0B7392C
DETAILS_MAGIC = 0x0DEA84E7
PART_MAGIC = 0xAEFE8495
XMALLOC_MAGIC = 0x42
NO_VAL = 0xFFFFFFFE
NO_VAL16 = 0xFFFE
STATES = {"PENDING": 0, "RUNNING": 1, "SUSPENDED": 2, "COMPLETED": 3, "CANCELLED": 4,
          "FAILED": 5, "TIMEOUT": 6, "NODE_FAIL": 7, "PREEMPTED": 8, "BOOT_FAIL": 9,
          "DEADLINE": 10, "OUT_OF_MEMORY": 11}
TRES_IDS = {"cpu": 1, "mem": 2, "energy": 3, "node": 4, "billing": 5}
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Structs whose blocks are never reached in the probe's run (NULL without
# accounting) or are embedded (no block of their own).
UNOBSERVABLE = {
    "slurmdb_assoc_rec": "job_record.assoc_ptr is NULL without accounting",
    "slurmdb_assoc_usage": "reached through assoc_ptr only (NULL without accounting)",
    "slurmdb_qos_rec": "job_record.qos_ptr is NULL without accounting",
    "slurm_step_id": "embedded in job_record, no block of its own",
    "slurm_conf_t": "not a job record member",
}


def sluid_value(text):
    v = 0
    for ch in text[1:]:
        v = v * 32 + CROCKFORD.index(ch)
    return v & (2 ** 64 - 1)


def epoch(text):
    if not text or text in ("None", "Unknown", "N/A"):
        return None
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def minutes(text):
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+):(\d+)", text or "")
    if not m:
        return None
    d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return d * 1440 + h * 60 + mi + (1 if s else 0)


def wait_status(text):
    a, b = text.split(":")
    return (int(a) << 8) | int(b)


def tres(text):
    out = {}
    for item in text.split(","):
        k, v = item.split("=")
        mult = 1
        if v[-1:] in "MGT" and v[-1:]:
            mult = {"M": 1, "G": 1024, "T": 1024 * 1024}[v[-1]]
            v = v[:-1]
        out[k] = int(float(v) * mult)
    return out


def raw_matches(raw, fmt):
    """raw ("1=15,2=1500,...") carries the same numbers as fmt ("cpu=15,mem=1500M,...");
    ids missing from fmt may only be energy (3)."""
    if raw is None or not re.fullmatch(r"\d+=\d+(,\d+=\d+)*", raw):
        return False
    r = {int(k): int(v) for k, v in (i.split("=") for i in raw.split(","))}
    f = tres(fmt)
    for name, value in f.items():
        if TRES_IDS.get(name) not in r or r[TRES_IDS[name]] != value:
            return False
    return all(k == 3 or k in (TRES_IDS[n] for n in f) for k in r)


class Block:
    def __init__(self, node):
        self.node = node
        self.data = bytes.fromhex(node["hex"])
        self.xmalloc = node["xmalloc"]
        self.strs = {int(k): v for k, v in node["strs"].items()}
        self.kids = {int(k): Block(v) for k, v in node.get("kids", {}).items()}

    def u(self, fmt, off):
        size = struct.calcsize(fmt)
        if off + size > len(self.data):
            return None
        return struct.unpack_from("<" + fmt, self.data, off)[0]

    def size(self):
        return self.xmalloc[1] if self.xmalloc[0] == XMALLOC_MAGIC else None


def parse_jobs(path):
    jobs = {}
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.strip()
        if not line:
            continue
        fields = {}
        for token in re.split(r"\s+(?=[A-Za-z][A-Za-z0-9_:/]*=)", line):
            k, _, v = token.partition("=")
            fields[k] = v.strip()
        jobs[int(fields["JobId"])] = fields
    return jobs


def null(v):
    return v in (None, "", "(null)")


class Instance:
    """One job record dump with the facts of its job."""

    def __init__(self, dump, job, facts, sluids):
        self.event = dump["event"]
        self.record = Block(dump["record"])
        self.job = job
        self.jid = int(job["JobId"])
        self.sub = facts["submitted"].get(job["JobName"], {})
        self.sluid = sluids.get(self.jid)
        user = job["UserId"].split("(")[0]
        self.user = user
        self.uinfo = facts["users"].get(user)
        self.facts = facts

    def kid_where(self, test):
        found = [b for b in self.record.kids.values() if test(b)]
        return found[0] if len(found) == 1 else None

    def details(self):
        return self.kid_where(lambda b: b.u("I", 0) == DETAILS_MAGIC)

    def part(self):
        return self.kid_where(lambda b: b.u("I", 0) == PART_MAGIC)

    def identity(self):
        if not self.uinfo:
            return None
        gids, groups = self.uinfo["gids"], self.uinfo["groups"]
        return self.kid_where(lambda b: self.user in b.strs.values() and any(
            [k.u("I", 4 * i) for i in range(len(gids))] == gids for k in b.kids.values()) and any(
            [k.strs.get(8 * i) for i in range(len(groups))] == groups for k in b.kids.values()))


def s(block, off):
    return block.strs.get(off)


def ptr(block, off):
    return block.u("Q", off)


def is_null(block, off):
    return ptr(block, off) == 0


def text_or_null(block, off, want):
    return is_null(block, off) if null(want) else s(block, off) == want


# Predicates: (struct, member) -> f(instance, block, off) -> True / False /
# None (no fact for this instance). The block is that struct's block.
def job_predicates():
    P = {}

    def add(name, f):
        P[("job_record", name)] = f

    def step_id(i, b, o):
        if i.sluid is None:
            return b.u("I", o + 8) == i.jid
        return b.u("Q", o) == i.sluid and b.u("I", o + 8) == i.jid
    add("step_id", step_id)
    add("magic", lambda i, b, o: b.u("I", o) == JOB_MAGIC)
    add("account", lambda i, b, o: text_or_null(b, o, i.job.get("Account")))
    add("admin_comment", lambda i, b, o: text_or_null(b, o, i.job.get("AdminComment")))
    add("alloc_node", lambda i, b, o: s(b, o) == i.job["AllocNode:Sid"].split(":")[0])
    add("array_job_id", lambda i, b, o: b.u("I", o) == int(i.job.get("ArrayJobId", 0)))
    add("array_task_id", lambda i, b, o: b.u("I", o) == int(i.job.get("ArrayTaskId", NO_VAL)))
    add("assoc_ptr", lambda i, b, o: is_null(b, o))
    add("batch_flag", lambda i, b, o: b.u("H", o) == int(i.job["BatchFlag"]))
    add("comment", lambda i, b, o: text_or_null(b, o, i.job.get("Comment")))
    add("container", lambda i, b, o: is_null(b, o))
    add("db_index", lambda i, b, o: None if i.sluid is None else b.u("Q", o) == i.sluid)
    add("derived_ec", lambda i, b, o: None if "DerivedExitCode" not in i.job or i.event != "end"
        else b.u("I", o) == wait_status(i.job["DerivedExitCode"]))
    add("details", lambda i, b, o: (b.kids.get(o) is not None and b.kids[o].u("I", 0) == DETAILS_MAGIC))
    add("end_time", lambda i, b, o: None if i.event != "end" else b.u("q", o) == epoch(i.job["EndTime"]))
    add("exit_code", lambda i, b, o: None if i.event != "end" else b.u("I", o) == wait_status(i.job["ExitCode"]))
    add("failed_node", lambda i, b, o: is_null(b, o))
    add("group_id", lambda i, b, o: b.u("I", o) == int(i.job["GroupId"].split("(")[1].rstrip(")")))
    add("het_job_id", lambda i, b, o: b.u("I", o) == int(i.job.get("HetJobId", 0)))
    add("het_job_offset", lambda i, b, o: b.u("I", o) == int(i.job.get("HetJobOffset", 0)))
    add("job_id", lambda i, b, o: b.u("I", o) == i.jid)

    def ident(i, b, o):
        if not i.uinfo:
            return None
        k = b.kids.get(o)
        return k is not None and k is i.identity_block
    add("id", ident)

    def state(i, b, o):
        v = b.u("I", o)
        want = STATES["RUNNING"] if i.event == "start" else STATES.get(i.job["JobState"])
        return v is not None and (v & 0xFF) == want
    add("job_state", state)
    add("name", lambda i, b, o: s(b, o) == i.job["JobName"])
    add("nodes", lambda i, b, o: text_or_null(b, o, i.job.get("NodeList")))
    add("partition", lambda i, b, o: s(b, o) == i.job["Partition"])
    add("part_ptr", lambda i, b, o: b.kids.get(o) is not None and b.kids[o].u("I", 0) == PART_MAGIC)
    add("priority", lambda i, b, o: b.u("I", o) == int(i.job["Priority"]))
    add("qos_ptr", lambda i, b, o: is_null(b, o) if null(i.job.get("QOS")) else None)
    add("resize_time", lambda i, b, o: b.u("q", o) == 0)
    add("resv_name", lambda i, b, o: text_or_null(b, o, i.job.get("Reservation")))
    add("start_time", lambda i, b, o: b.u("q", o) == epoch(i.job["StartTime"]))
    add("time_limit", lambda i, b, o: b.u("I", o) == minutes(i.job["TimeLimit"]))
    # scontrol shows the request for a job that never ran; the record has 0.
    add("total_cpus", lambda i, b, o: None if null(i.job.get("NodeList"))
        else b.u("I", o) == int(i.job["NumCPUs"]))
    add("total_nodes", lambda i, b, o: None if null(i.job.get("NodeList"))
        else b.u("I", o) == int(i.job["NumNodes"]))
    add("tres_req_str", lambda i, b, o: raw_matches(s(b, o), i.job["ReqTRES"]))
    add("tres_fmt_req_str", lambda i, b, o: s(b, o) == i.job["ReqTRES"])
    add("tres_alloc_str", lambda i, b, o: None if i.event != "end"
        else is_null(b, o) if null(i.job.get("AllocTRES")) else raw_matches(s(b, o), i.job["AllocTRES"]))
    add("tres_fmt_alloc_str", lambda i, b, o: None if i.event != "end"
        else text_or_null(b, o, i.job.get("AllocTRES")))
    add("user_id", lambda i, b, o: b.u("I", o) == int(i.job["UserId"].split("(")[1].rstrip(")")))
    add("wckey", lambda i, b, o: None if "wckey" not in i.sub else s(b, o) == i.sub["wckey"])
    return P


def details_predicates():
    P = {}

    def add(name, f):
        P[("job_details", name)] = f
    add("magic", lambda i, b, o: b.u("I", o) == DETAILS_MAGIC)
    add("begin_time", lambda i, b, o: b.u("q", o) == (epoch(i.job["EligibleTime"]) or 0))
    add("submit_time", lambda i, b, o: b.u("q", o) == epoch(i.job["SubmitTime"]))
    add("cpus_per_task", lambda i, b, o: b.u("H", o) == int(i.job["CPUs/Task"]))
    add("exc_nodes", lambda i, b, o: text_or_null(b, o, i.job.get("ExcNodeList")))
    add("features", lambda i, b, o: text_or_null(b, o, i.job.get("Features")))
    add("ntasks_per_node", lambda i, b, o: None if "ntasks_per_node" not in i.sub
        else b.u("H", o) == i.sub["ntasks_per_node"])
    add("ntasks_per_tres", lambda i, b, o: b.u("H", o) == i.sub.get("ntasks_per_tres", 0))
    add("num_tasks", lambda i, b, o: b.u("I", o) == int(i.job["NumTasks"]))
    # Kept as slurmctld first formatted it, e.g. "afterany:12(unfulfilled)".
    add("orig_dependency", lambda i, b, o: text_or_null(b, o, None) if "orig_dependency" not in i.sub
        else (s(b, o) or "").startswith(i.sub["orig_dependency"]))
    for f in ("std_err", "std_in", "std_out"):
        add(f, (lambda f: lambda i, b, o: None if f not in i.sub else s(b, o) == i.sub[f])(f))
    add("work_dir", lambda i, b, o: s(b, o) == i.job["WorkDir"])
    return P


def part_predicates():
    return {
        ("part_record", "magic"): lambda i, b, o: b.u("I", o) == PART_MAGIC,
        ("part_record", "name"): lambda i, b, o: s(b, o) == i.facts["partition"]["name"],
        ("part_record", "max_time"): lambda i, b, o: b.u("I", o) == i.facts["partition"]["max_time"],
    }


def identity_predicates():
    def gids(i, b, o):
        k = b.kids.get(o)
        g = i.uinfo["gids"]
        return k is not None and [k.u("I", 4 * n) for n in range(len(g))] == g

    def names(i, b, o):
        k = b.kids.get(o)
        g = i.uinfo["groups"]
        return k is not None and [k.strs.get(8 * n) for n in range(len(g))] == g
    return {
        ("identity", "pw_name"): lambda i, b, o: s(b, o) == i.user,
        ("identity", "ngids"): lambda i, b, o: b.u("i", o) == len(i.uinfo["gids"]),
        ("identity", "gids"): gids,
        ("identity", "gr_names"): names,
    }


def block_of(inst, sname):
    if sname == "job_record":
        return inst.record
    if sname == "job_details":
        return inst.details()
    if sname == "part_record":
        return inst.part()
    if sname == "identity":
        return inst.identity_block
    return None


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: runtime-layout.py PROBE_DIR OURS")
    pdir, ours_path = argv
    facts = json.load(open(os.path.join(pdir, "facts.json")))
    jobs = parse_jobs(os.path.join(pdir, "jobs.txt"))
    sluids = {}
    sl_path = os.path.join(pdir, "sluids.txt")
    if os.path.exists(sl_path):
        for line in open(sl_path):
            m = re.match(r"JobId=(\d+) SLUID=(s[0-9A-Z]+)", line)
            if m:
                sluids[int(m.group(1))] = sluid_value(m.group(2))
    dumps = []
    ddir = os.path.join(pdir, "dumps")
    for name in sorted(os.listdir(ddir)):
        if name.endswith(".json"):
            dumps.append(json.load(open(os.path.join(ddir, name))))
    if not dumps:
        sys.exit("runtime-layout: no dumps in " + ddir)

    # Which job each dump is: the u32 at some offset names a known JobId in
    # every dump, and every job that ran has one start and one end dump
    # (FirstJobId makes the ids unlikely values).
    known = set(jobs)
    mapping = None
    rec0 = Block(dumps[0]["record"])
    for off in range(0, len(rec0.data) - 3, 4):
        ids = [Block(d["record"]).u("I", off) for d in dumps]
        if all(x in known for x in ids):
            pairs = sorted((x, d["event"]) for x, d in zip(ids, dumps))
            if len(set(pairs)) == len(pairs) and set(x for x, _ in pairs) == known:
                mapping = ids
                break
    if mapping is None:
        sys.exit("runtime-layout: cannot tell which job each dump belongs to")
    insts = [Instance(d, jobs[j], facts, sluids) for d, j in zip(dumps, mapping)]
    for inst in insts:
        inst.identity_block = inst.identity()

    ours = {}
    sizes = {}
    for line in open(ours_path):
        p = line.split()
        if len(p) >= 4 and p[1] == "offset":
            sname, member = p[0].split(".", 1)
            ours[(sname, member)] = (int(p[2]), int(p[4]))
        elif len(p) == 3 and p[1] == "sizeof":
            sizes[p[0]] = int(p[2])

    preds = {}
    for part in (job_predicates(), details_predicates(), part_predicates(), identity_predicates()):
        preds.update(part)

    # Candidates of every member with a predicate.
    cands = {}
    for key, (off, size) in ours.items():
        sname, _ = key
        if key not in preds:
            continue
        align = min(size, 8)
        blocks = [(i, block_of(i, sname)) for i in insts]
        blocks = [(i, b) for i, b in blocks if b is not None]
        if not blocks:
            continue
        length = min(len(b.data) for _, b in blocks)
        found = []
        for o in range(0, length - size + 1, align):
            results = [preds[key](i, b, o) for i, b in blocks]
            results = [r for r in results if r is not None]
            if results and all(results):
                found.append(o)
        applicable = [i for i, b in blocks if preds[key](i, b, off) is not None]
        if applicable or found:
            cands[key] = (found, len(applicable))

    # Each byte belongs to one member: drop candidates inside the span of a
    # member pinned elsewhere, until nothing changes.
    spans = {k: v[1] for k, v in ours.items()}
    changed = True
    while changed:
        changed = False
        pinned = {k: c[0][0] for k, c in cands.items() if len(c[0]) == 1}
        for key, (found, n) in cands.items():
            if len(found) < 2:
                continue
            keep = [o for o in found if not any(
                pk != key and pk[0] == key[0] and po <= o < po + spans[pk] for pk, po in pinned.items())]
            if keep and keep != found:
                cands[key] = (keep, n)
                changed = True

    bad = 0
    counts = {"confirmed": 0, "consistent": 0, "MISMATCH": 0, "unobservable": 0}
    for key in sorted(ours):
        sname, member = key
        off = ours[key][0]
        name = "%s.%s" % key
        if key not in cands:
            why = UNOBSERVABLE.get(sname) or "no fact about it in the probe's job mix (not in scontrol show job)"
            print("%s offset %d: unobservable (%s)" % (name, off, why))
            counts["unobservable"] += 1
            continue
        found, n = cands[key]
        if off in found and len(found) == 1:
            print("%s offset %d: confirmed (%d records)" % (name, off, n))
            counts["confirmed"] += 1
        elif off in found:
            print("%s offset %d: consistent (one of %d candidate offsets: %s)"
                  % (name, off, len(found), " ".join(map(str, found[:8])) + (" ..." if len(found) > 8 else "")))
            counts["consistent"] += 1
        else:
            print("%s offset %d: MISMATCH: the runtime shows it at %s" % (name, off, " ".join(map(str, found[:8])) or "no offset"))
            counts["MISMATCH"] += 1
            bad = 1
    for sname in sorted(sizes):
        seen = set()
        for inst in insts:
            b = block_of(inst, sname)
            if b is not None and b.size() is not None:
                seen.add(b.size())
        if not seen:
            print("sizeof(%s) %d: unobservable (%s)" % (sname, sizes[sname], UNOBSERVABLE.get(sname, "no block seen")))
            counts["unobservable"] += 1
        elif seen == {sizes[sname]}:
            print("sizeof(%s) %d: confirmed (xmalloc size)" % (sname, sizes[sname]))
            counts["confirmed"] += 1
        else:
            print("sizeof(%s) %d: MISMATCH: xmalloc sizes %s" % (sname, sizes[sname], sorted(seen)))
            counts["MISMATCH"] += 1
            bad = 1
    print("runtime: %d dumps of %d jobs: %s" % (len(insts), len(known), ", ".join(
        "%d %s" % (v, k) for k, v in counts.items())))
    return bad


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
