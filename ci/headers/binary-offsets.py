#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Binary evidence of struct offsets, for releases whose Slurm source is not
# available: read Debian's compiled SchedMD jobcomp/kafka plugin (the
# jobcomp_common.o member of slurm-wlm-kafka-plugin-dev's jobcomp_kafka.a, a
# relocatable object, so string literals and called functions are named) and
# recover, for each JSON key that jobcomp_common_job_record_to_data() sets,
# the member load that feeds it: `mov OFF(%job),%reg` or, through a pointer
# member, `mov PTR(%job),%r; mov OFF(%r),%reg`.
#
# A few values reach their key through a buffer rather than a register, and
# are followed that way too: the sluid strings (print_sluid(member, buf) then
# data_set_string(buf): "sluid" <- db_index, "original_sluid" <- step_id), the
# exit statuses (member & 0x7f for the signal, _xstrfmtcat(&str, "%d:%d", ..),
# then _data_set_string_own(&str): "derived_ec", "exit_code") and the times
# (parse_time_make_str_utc(&member, buf): "@start" <- start_time). end_time is
# the time member that start_time is compared with (start > end gives
# "Unknown"), resize_time the other time member tested against 0 (it replaces
# start_time when set).
#
# Usage: binary-offsets.py jobcomp_common.o
# Prints "struct.member offset N" lines (sorted, unique; a member seen at two
# different offsets prints both). A heuristic, so ci/check-headers.sh also runs
# it where the real headers are available, as a self-test.
import re
import subprocess
import sys

FUNC = "jobcomp_common_job_record_to_data"

# JSON key -> job_record member loaded directly from the job pointer.
DIRECT = {
    "jobid": "job_id", "container": "container", "user_id": "user_id",
    "group_id": "group_id", "alloc_node": "alloc_node", "nodes": "nodes",
    "total_cpus": "total_cpus", "total_nodes": "total_nodes",
    "array_job_id": "array_job_id", "array_task_id": "array_task_id",
    "het_job_id": "het_job_id", "het_job_offset": "het_job_offset",
    "pack_job_id": "het_job_id", "pack_job_offset": "het_job_offset",
    "job_name": "name", "reservation_name": "resv_name", "wc_key": "wckey",
    "tres_req_raw": "tres_req_str", "tres_req": "tres_fmt_req_str",
    "tres_alloc_raw": "tres_alloc_str", "tres_alloc": "tres_fmt_alloc_str",
    "account": "account", "admin_comment": "admin_comment",
    "comment": "comment", "failed_node": "failed_node",
    "sluid": "db_index", "original_sluid": "step_id",
    "derived_ec": "derived_ec", "exit_code": "exit_code",
    "@start": "start_time",
}
# JSON key -> (job_record pointer member, pointee struct, pointee member).
INDIRECT = {
    "work_dir": ("details", "job_details", "work_dir"),
    "std_err": ("details", "job_details", "std_err"),
    "std_in": ("details", "job_details", "std_in"),
    "std_out": ("details", "job_details", "std_out"),
    "ntasks": ("details", "job_details", "num_tasks"),
    "ntasks_per_node": ("details", "job_details", "ntasks_per_node"),
    "ntasks_per_tres": ("details", "job_details", "ntasks_per_tres"),
    "cpus_per_task": ("details", "job_details", "cpus_per_task"),
    "orig_dependency": ("details", "job_details", "orig_dependency"),
    "excluded_nodes": ("details", "job_details", "exc_nodes"),
    "features": ("details", "job_details", "features"),
    "cluster": ("assoc_ptr", "slurmdb_assoc_rec", "cluster"),
    "qos": ("qos_ptr", "slurmdb_qos_rec", "name"),
}

REG64 = {}
for r in "abcd":
    for n in ("%%r%sx" % r, "%%e%sx" % r, "%%%sx" % r, "%%%sl" % r):
        REG64[n] = "%%r%sx" % r
for r in ("si", "di", "bp", "sp"):
    for n in ("%%r%s" % r, "%%e%s" % r, "%%%s" % r, "%%%sl" % r):
        REG64[n] = "%%r%s" % r
for i in range(8, 16):
    for suffix in ("", "d", "w", "b"):
        REG64["%%r%d%s" % (i, suffix)] = "%%r%d" % i
CALLEE_SAVED = {"%rbx", "%rbp", "%rsp", "%r12", "%r13", "%r14", "%r15"}


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def strings(obj):
    """.LCn symbol -> string, for symbols in string sections."""
    sections = {}
    for line in run("readelf", "-SW", obj).splitlines():
        m = re.match(r"\s*\[\s*(\d+)\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if m:
            sections[m.group(1)] = (m.group(2), int(m.group(3), 16), int(m.group(4), 16))
    data = open(obj, "rb").read()
    out = {}
    for line in run("readelf", "-sW", obj).splitlines():
        p = line.split()
        if len(p) >= 8 and p[7].startswith(".LC") and p[6] in sections:
            name, off, size = sections[p[6]]
            if ".str" not in name:
                continue
            blob = data[off + int(p[1], 16): off + size]
            out[p[7]] = blob[: blob.find(b"\0")].decode("utf-8", "replace")
    return out


def instructions(obj):
    """(mnemonic, operands, [relocation targets]) of FUNC, in order."""
    text = run("objdump", "-dr", "--no-show-raw-insn", obj)
    insns = []
    inside = False
    for line in text.splitlines():
        if re.match(r"^[0-9a-f]+ <", line):
            inside = line.rstrip().endswith("<%s>:" % FUNC)
            continue
        if not inside:
            continue
        m = re.match(r"^\s+[0-9a-f]+:\s+R_X86_64_\w+\s+(\S+?)(?:[-+]0x[0-9a-f]+)?$", line)
        if m and insns:
            insns[-1][2].append(m.group(1))
            continue
        m = re.match(r"^\s+[0-9a-f]+:\s+(\S+)\s*(.*?)\s*(?:#.*)?$", line)
        if m:
            insns.append((m.group(1), m.group(2), []))
    if not insns:
        sys.exit("binary-offsets: no %s in %s" % (FUNC, obj))
    return insns


def split_operands(ops):
    out, depth, cur = [], 0, ""
    for ch in ops:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def mem(op):
    """'0x1c8(%rbx)' -> (0x1c8, '%rbx'); None when not a plain base+disp."""
    m = re.fullmatch(r"(-?0x[0-9a-f]+|)\((%\w+)\)", op)
    if not m:
        return None
    disp = int(m.group(1), 16) if m.group(1) else 0
    return disp, REG64.get(m.group(2), m.group(2))


def analyse(obj):
    lc = strings(obj)
    regs = {}      # register -> value descriptor
    stack = {}     # rbp slot -> value descriptor
    job = None     # register holding the job_record pointer
    home = None    # the register the job pointer was first copied to
    key = None
    seen = set()
    bufs = {}          # rbp slot of a buffer / string variable -> value it was made from
    status = None      # the member whose low 7 bits (a signal) were taken last
    time_members = set()   # members whose address goes to parse_time_make_str_utc
    zero_tested = set()    # members compared with 0 in memory (cmpq $0x0,M(job))
    compared = []          # (A, B) for "mov A(job),reg; cmp reg,B(job)"
    for mn, ops, relocs in instructions(obj):
        o = split_operands(ops)
        if mn == "ret":
            # Code after a return is reached by jumps from the main path, where
            # the job pointer is still in its home register.
            job, regs, key, status = home, {}, None, None
            continue
        if mn == "call":
            target = relocs[0] if relocs else ""
            rdi, rsi = regs.get("%rdi"), regs.get("%rsi")
            if target == "print_sluid" and rsi and rsi[0] == "stackref":
                if rdi and rdi[0] == "job":
                    bufs[rsi[1]] = rdi
                else:
                    bufs.pop(rsi[1], None)
            elif target == "parse_time_make_str_utc" and rdi and rdi[0] == "jobref":
                time_members.add(rdi[1])
                if rsi and rsi[0] == "stackref":
                    bufs[rsi[1]] = ("job", rdi[1])
            elif target == "parse_time_make_str_utc" and rsi and rsi[0] == "stackref":
                bufs.pop(rsi[1], None)
            elif target == "_xstrfmtcat" and rdi and rdi[0] == "stackref":
                if status is not None:
                    bufs[rdi[1]] = status
                else:
                    bufs.pop(rdi[1], None)
                status = None
            if target in ("data_set_string", "_data_set_string_own") and rsi and rsi[0] == "stackref":
                if key is not None:
                    record(seen, key, bufs.get(rsi[1]))
                key = None
            elif target == "job_state_string":
                # job_state_string(job_ptr->job_state [& JOB_STATE_BASE])
                v = regs.get("%rdi")
                if v and v[0] == "job":
                    seen.add(("job_record", "job_state", v[1]))
            elif target.startswith("data_set_") or target.startswith("_data_set_"):
                if key is not None:
                    record(seen, key, regs.get("%rsi"))
                key = None
            for r in list(regs):
                if r not in CALLEE_SAVED:
                    del regs[r]
            continue
        if mn == "lea" and len(o) == 2 and relocs and relocs[0] in lc:
            if REG64.get(o[1]) == "%rsi":
                key = lc[relocs[0]]
            regs.pop(REG64.get(o[1], o[1]), None)
            continue
        if mn == "lea" and len(o) == 2 and REG64.get(o[1]):
            m = mem(o[0])
            dreg = REG64[o[1]]
            if m and m[1] == "%rbp":
                regs[dreg] = ("stackref", m[0])
            elif m and m[1] == job:
                regs[dreg] = ("jobref", m[0])
            else:
                regs.pop(dreg, None)
            continue
        if mn == "and" and len(o) == 2 and o[0] == "$0x7f":
            v = regs.get(REG64.get(o[1], ""))
            if v and v[0] == "job":
                status = v
        if mn in ("cmpq", "cmp") and len(o) == 2:
            m = mem(o[1])
            if m and m[1] == job and job is not None:
                if o[0] == "$0x0" and mn == "cmpq":
                    zero_tested.add(m[0])
                elif o[0] in REG64:
                    v = regs.get(REG64[o[0]])
                    if v and v[0] == "job":
                        compared.append((v[1], m[0]))
        if mn in ("mov", "movzwl", "movzbl", "movslq", "movq", "movl") and len(o) == 2:
            src, dst = o
            dreg = REG64.get(dst)
            if home is None and src == "%rdi" and dreg in CALLEE_SAVED:
                job = home = dreg
                continue
            value = None
            m = mem(src)
            if m and m[1] == "%rbp":
                value = stack.get(m[0])
            elif m and m[1] == job:
                value = ("job", m[0])
            elif m and regs.get(m[1]) and regs[m[1]][0] == "job":
                value = ("ptr", regs[m[1]][1], m[0])
            elif src in REG64:
                value = regs.get(REG64[src])
            if dreg:
                if dreg == job:
                    job = None  # the job pointer register is reused
                if value is None:
                    regs.pop(dreg, None)
                else:
                    regs[dreg] = value
            else:
                dm = mem(dst)
                if dm and dm[1] == "%rbp":
                    if value is None:
                        stack.pop(dm[0], None)
                    else:
                        stack[dm[0]] = value
            continue
        # Any other instruction writing a register forgets what it held.
        if o:
            dreg = REG64.get(o[-1])
            if dreg and mn not in ("cmp", "cmpq", "cmpl", "test", "testb", "push", "cmpb"):
                regs.pop(dreg, None)
    starts = [off for s, f, off in seen if (s, f) == ("job_record", "start_time")]
    if len(starts) == 1:
        start = starts[0]
        ends = set(a for a, b in compared if b == start and a in time_members)
        if len(ends) == 1:
            end = ends.pop()
            seen.add(("job_record", "end_time", end))
            resize = (zero_tested & time_members) - {start, end}
            if len(resize) == 1:
                seen.add(("job_record", "resize_time", resize.pop()))
    return seen


def record(seen, key, value):
    if value is None:
        return
    if key in DIRECT and value[0] == "job":
        seen.add(("job_record", DIRECT[key], value[1]))
    elif key in INDIRECT and value[0] == "ptr":
        member, struct, field = INDIRECT[key]
        seen.add(("job_record", member, value[1]))
        seen.add((struct, field, value[2]))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: binary-offsets.py jobcomp_common.o")
    for struct, field, off in sorted(analyse(sys.argv[1])):
        print("%s.%s offset %d" % (struct, field, off))


if __name__ == "__main__":
    main()
