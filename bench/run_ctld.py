"""The plugin inside a real slurmctld: per-call time of the record operation
(LD_PRELOAD shim bench/shim/jobcomp_timing.so), CPU of the plugin's threads,
and end-to-end latency from job end to the record being readable by a
consumer.

Per run: start a single-node cluster with the rigs (ci/rig/slurm-chroot.sh for
Slurm 24.11.5 in the trixie chroot, ci/rig/slurm-host.sh for 22.05.8 on the
host) with the shim preloaded into slurmctld, start bench/e2e_consume.py on a
fresh topic, submit one job array whose tasks write, as their last command,
"<job id> <CLOCK_REALTIME ns>" to a file, wait until every task has written
and every record was read, read the CPU time of slurmctld's threads, stop the
cluster (fini: the shim writes its buffer), and write one JSON file.

Usage: run_ctld.py --tansu HOST:PORT --shim SO --out DIR [--ours-2205 SO]
                   [--ours-2411 SO] [--tasks N] [--rounds R] RUN...
With --rounds R every RUN is split into R job arrays of N/R tasks, run in
turns (A B A B ...), and merged.
RUNs: see RUNS below.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
CHROOT = os.environ.get("JK_BENCH_CHROOT", "/var/tmp/jobcomp-kafka/chroot-trixie")
SYSTEM_PLUGINDIR = "/usr/lib/x86_64-linux-gnu/slurm-wlm"
SHIM_PATH = "/tmp/jk-bench-shim.so"  # same path on the host and inside the chroot
# job_record_t.job_id offsets (slurm-headers/layout_22_05_8.h, layout_24_11_3.h)
JOBID_OFFSET = {"host": 360, "chroot": 392}
# JK_BENCH_HOST_PORTS="CTLD,SLURMD" moves the host cluster (e.g. into a port
# range of one's own while other test suites run).
PORTS = {"host": tuple(int(p) for p in os.environ.get("JK_BENCH_HOST_PORTS", "56817,56818").split(",")),
         "chroot": (57817, 57818)}

FAST_CONF = [
    "NodeName=localhost NodeAddr=127.0.0.1 CPUs=64 RealMemory=64000 State=UNKNOWN",
    "SlurmdParameters=config_overrides",  # the node has 2 CPUs, slurm.conf says 64
    "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,default_queue_depth=1000,"
    "sched_max_job_start=0,max_sched_time=4",
]

RUNS = {
    # name: where, plugin, tasks factor, extra librdkafka properties, extra JobCompParams
    "chroot-schedmd": dict(where="chroot", plugin="schedmd"),
    "chroot-ours": dict(where="chroot", plugin="ours"),
    "host-ours": dict(where="host", plugin="ours"),
    # The same over TLS (security.protocol=SSL through stunnel to tansu): what
    # encryption costs log_record and the plugin's threads.
    "host-ours-tls": dict(where="host", plugin="ours", tls=True),
    # Our defaults are linger.ms=0, tick_ms=10: librdkafka's linger, and our tick both ways.
    "chroot-ours-linger5": dict(where="chroot", plugin="ours", props=["linger.ms=5"], tasks=0.25),
    "chroot-ours-tick2": dict(where="chroot", plugin="ours", params=["tick_ms=2"], tasks=0.25),
    "chroot-ours-tick40": dict(where="chroot", plugin="ours", params=["tick_ms=40"], tasks=0.25),
    "chroot-schedmd-linger0": dict(where="chroot", plugin="schedmd", props=["linger.ms=0"], tasks=0.25),
    # What the idempotent producer (our default, so acks=all) costs in
    # librdkafka's threads, next to chroot-ours (SchedMD's plugin does not ask
    # for it).
    "chroot-ours-noidem": dict(where="chroot", plugin="ours", props=["enable.idempotence=false"], tasks=0.25),
    # Issue #13 asks for CPU per record at >= 100 jobs/s. One node with 2 CPUs
    # runs at most 32 one-line jobs at once (OverSubscribe=FORCE:16); with 64
    # (overridden) CPUs and a scheduler that starts all it can per pass, the
    # rate is bound by launching the jobs on the 2 vCPUs (~60-70 jobs/s here).
    "chroot-schedmd-fast": dict(where="chroot", plugin="schedmd", conf=FAST_CONF, tasks=0.5),
    "chroot-ours-fast": dict(where="chroot", plugin="ours", conf=FAST_CONF, tasks=0.5),
    "host-ours-fast": dict(where="host", plugin="ours", conf=FAST_CONF, tasks=0.5),
    # Issue #25: slurmctld idle (no job, broker up) for idle_s seconds in all
    # (split over the rounds), after a small array: CPU per second and wake-ups
    # per second of every thread, the plugin's and slurmctld's own.
    "chroot-schedmd-idle": dict(where="chroot", plugin="schedmd", idle_s=60, tasks=0.025),
    "chroot-ours-idle": dict(where="chroot", plugin="ours", idle_s=60, tasks=0.025),
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')} ctld] {msg}", file=sys.stderr, flush=True)


def thread_cpu(pid):
    """{tid: (name, cpu seconds)} of every thread of pid. schedstat's first field
    (ns on a CPU) is used: stat's utime/stime tick at 10 ms, too coarse for the
    plugin's threads."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                cpu = int(f.read().split()[0]) / 1e9
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        out[int(tid)] = (name, cpu)
    return out


def thread_wakeups(pid):
    """{tid: (name, cpu seconds, voluntary context switches)}: each sleep of a
    thread is one voluntary switch, so their count over a window is the
    thread's wake-ups (give or take the one in progress at either edge)."""
    out = {}
    for tid, (name, cpu) in thread_cpu(pid).items():
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                switches = next(int(ln.split()[1]) for ln in f if ln.startswith("voluntary_ctxt_switches:"))
        except (FileNotFoundError, ProcessLookupError, StopIteration, ValueError):
            continue
        out[tid] = (name, cpu, switches)
    return out


def idle_window(pid, seconds):
    """CPU and wake-ups of every thread of pid over `seconds` of idleness, by thread
    name (threads of the same name summed; threads born in the window count whole)."""
    before = thread_wakeups(pid)
    t = time.monotonic()
    time.sleep(seconds)
    after = thread_wakeups(pid)
    span = time.monotonic() - t
    by_name = {}
    for tid, (name, cpu, sw) in after.items():
        _, cpu0, sw0 = before.get(tid, (name, 0.0, 0))
        d = by_name.setdefault(name, {"threads": 0, "cpu_s": 0.0, "wakeups": 0})
        d["threads"] += 1
        d["cpu_s"] += cpu - cpu0
        d["wakeups"] += sw - sw0
    return {"seconds": span, "by_thread": by_name}


def plugin_thread(name):
    return name.startswith("rdk:") or name.startswith("jobcomp_")


def thread_group(name):
    """librdkafka's threads, ours (jobcomp_kafka: delivery, jobcomp_sync: fdatasync), or the name."""
    if name.startswith("rdk:"):
        return "librdkafka"
    return "jobcomp_kafka" if name.startswith("jobcomp_") else name


def cpu_delta(before, after):
    """CPU used between the snapshots, by thread group (threads born later count whole)."""
    groups = {}
    for tid, (name, cpu) in after.items():
        used = cpu - before.get(tid, (name, 0.0))[1]
        key = thread_group(name)
        groups[key] = groups.get(key, 0.0) + used
    return groups


def dist(values):
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {}
    q = np.percentile(a, [50, 90, 99, 99.9], method="inverted_cdf")
    return {"n": int(a.size), "mean": float(a.mean()), "p50": float(q[0]), "p90": float(q[1]),
            "p99": float(q[2]), "p999": float(q[3]), "max": float(a.max())}


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def other_slurmctlds(own_pid):
    """slurmctld processes on this machine that are not the one measured (load from other users)."""
    n = 0
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == own_pid:
            continue
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip().startswith("slurmctld"):
                    n += 1
        except (FileNotFoundError, ProcessLookupError):
            pass
    return n


def wait_bindable(ports, timeout=60):
    """The previous run's daemons (the same ports, host or chroot) may hold a
    port for a moment after their stop returned: wait until each can be bound
    (a slurmd that cannot bind its port exits, and the run with it)."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("0.0.0.0", port))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"port {port} still taken after {timeout} s")
            time.sleep(0.2)


def run_once(name, spec, args, tasks, tag):
    """One cluster, one job array. Returns the raw observations."""
    where, plugin = spec["where"], spec["plugin"]
    indir = f"/tmp/jk-bench-ctld-{name}{tag}"  # the directory as slurmctld sees it
    hostdir = (CHROOT + indir) if where == "chroot" else indir
    shutil.rmtree(hostdir, ignore_errors=True)
    os.makedirs(hostdir)
    os.chmod(hostdir, 0o755)
    rig = os.path.join(REPO, "ci/rig", "slurm-chroot.sh" if where == "chroot" else "slurm-host.sh")
    # The shim at the same path for host-side commands and inside the chroot.
    if os.path.abspath(args.shim) != SHIM_PATH:
        shutil.copy2(args.shim, SHIM_PATH)
    if where == "chroot":
        shutil.copy2(args.shim, CHROOT + SHIM_PATH)
    conf = os.path.join(hostdir, "kafka.conf")
    bootstrap, tls_props = args.tansu, []
    if spec.get("tls"):
        if not (args.tansu_tls and args.tls_ca):
            raise SystemExit(f"{name}: needs --tansu-tls and --tls-ca")
        bootstrap, tls_props = args.tansu_tls, ["security.protocol=SSL", f"ssl.ca.location={args.tls_ca}"]
    with open(conf, "w") as f:
        f.write(f"bootstrap.servers={bootstrap}\n")
        for prop in tls_props + spec.get("props", []):
            f.write(prop + "\n")
    os.chmod(conf, 0o600)
    topic = f"bench-{name}{tag}-{int(time.time())}"
    ctld_port, slurmd_port = PORTS[where]
    cmd = [rig, "start"] + ([CHROOT] if where == "chroot" else []) + [
        os.path.join(hostdir, "c"), "--fresh", "--cluster", "jkbench",
        "--ctld-port", str(ctld_port), "--slurmd-port", str(slurmd_port),
        "--jobcomp", "jobcomp/kafka", "--jobcomp-loc", os.path.join(indir, "kafka.conf"),
        "--jobcomp-params", ",".join([f"topic={topic}"] + spec.get("params", [])),
    ]
    for kv in spec.get("conf", []):
        cmd += ["--conf", kv]
    want_so = f"{SYSTEM_PLUGINDIR}/jobcomp_kafka.so"
    if plugin == "ours":
        pdir = os.path.join(hostdir, "plugins")
        os.makedirs(pdir)
        shutil.copy2(args.ours_2411 if where == "chroot" else args.ours_2205, os.path.join(pdir, "jobcomp_kafka.so"))
        # Ours first: the chroot's system directory holds SchedMD's jobcomp_kafka.so.
        cmd += ["--conf", f"PluginDir={indir}/plugins:{SYSTEM_PLUGINDIR}"]
        want_so = f"{indir}/plugins/jobcomp_kafka.so"
    with open(os.path.join(hostdir, "job.sh"), "w") as f:
        f.write("#!/bin/sh\n# last command: when this job ended, by the job itself\n"
                f'echo "$SLURM_JOB_ID $(date +%s%N)" >> {indir}/ends.txt\n')
    os.chmod(os.path.join(hostdir, "job.sh"), 0o755)
    env = dict(os.environ, LD_PRELOAD=SHIM_PATH, JK_SHIM_OUT=f"{indir}/shim",
               JK_SHIM_JOBID_OFFSET=str(JOBID_OFFSET[where]))

    log(f"{name}{tag}: {plugin} plugin in {where} slurmctld, {tasks} array tasks, topic {topic}"
        + (f", {' '.join(spec['props'])}" if spec.get("props") else "")
        + (f", JobCompParams {','.join(spec['params'])}" if spec.get("params") else ""))
    consumer_out = os.path.join(hostdir, "consumed.jsonl")
    ready = os.path.join(hostdir, "consumer.ready")
    consumer = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "e2e_consume.py"), "--bootstrap", bootstrap, "--topic", topic,
         "--expect", str(tasks), "--out", consumer_out, "--timeout", str(args.timeout + 120),
         "--ready-file", ready] + [a for p in tls_props for a in ("--property", p)],
        stderr=open(os.path.join(hostdir, "consumer.log"), "w"),
    )
    raw = {"tasks": tasks, "topic": topic}
    cdir = os.path.join(hostdir, "c")
    started = False
    try:
        t = time.monotonic()
        while not os.path.exists(ready):
            if consumer.poll() is not None or time.monotonic() - t > 60:
                raise SystemExit(f"{name}: consumer did not get ready (see {hostdir}/consumer.log)")
            time.sleep(0.05)
        wait_bindable((ctld_port, slurmd_port))
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=open(os.path.join(hostdir, "rig.log"), "w"))
        started = True
        pid = read_pid(os.path.join(cdir, "slurmctld.pid"))
        with open(f"/proc/{pid}/maps") as f:
            maps = f.read()
        mapped = sorted({ln.split()[-1] for ln in maps.splitlines() if ln.endswith("jobcomp_kafka.so")})
        if not mapped or not all(m.endswith(want_so) for m in mapped):
            raise SystemExit(f"{name}: slurmctld maps {mapped}, expected {want_so}")
        if SHIM_PATH not in maps:
            raise SystemExit(f"{name}: the timing shim is not loaded into slurmctld")
        raw["plugin_so"] = want_so
        raw["other_slurmctld"] = [other_slurmctlds(pid)]
        before = thread_cpu(pid)
        t_submit = time.time()
        sub = subprocess.run([os.path.join(cdir, "bin", "sbatch"), "--parsable", f"--array=0-{tasks - 1}",
                              "-o", "/dev/null", "-J", "bench", f"{indir}/job.sh"],
                             check=True, capture_output=True, text=True)
        raw["array_job"] = sub.stdout.strip()
        # Wait on files only: polling slurmctld (squeue/scontrol) would load it.
        deadline = time.monotonic() + args.timeout
        ends_path = os.path.join(hostdir, "ends.txt")
        all_ended_at = None
        while time.monotonic() < deadline:
            ended = count_lines(ends_path)
            if ended >= tasks and all_ended_at is None:
                all_ended_at = time.time()
                deadline = min(deadline, time.monotonic() + 60)
            if ended >= tasks and consumer.poll() is not None:
                break
            time.sleep(0.25)
        raw["other_slurmctld"].append(other_slurmctlds(pid))
        raw["array_wall_s"] = (all_ended_at or time.time()) - t_submit
        after = thread_cpu(pid)
        raw["cpu_by_thread_group_s"] = cpu_delta(before, after)
        raw["slurmctld_cpu_s"] = sum(c for _, c in after.values()) - sum(c for _, c in before.values())
        raw["thread_names"] = sorted({n for n, _ in after.values()})
        if spec.get("idle_s"):
            # The last records' delivery reports and the plugin's duties settle
            # first; then nothing happens in slurmctld but its own timers.
            time.sleep(5)
            raw["idle"] = idle_window(pid, spec["idle_s"] / max(1, args.rounds))
    finally:
        if started:
            t = time.monotonic()
            subprocess.run([rig, "stop", cdir], stdout=subprocess.DEVNULL,
                           stderr=open(os.path.join(hostdir, "rig.log"), "a"))
            raw["stop_s"] = time.monotonic() - t
        if consumer.poll() is None:
            consumer.terminate()
            consumer.wait(10)

    # The shim's buffer (written after the plugin's fini, or at exit).
    shim_files = [f for f in os.listdir(hostdir) if f.startswith("shim.") and not f.endswith(".tmp")]
    if len(shim_files) != 1:
        raise SystemExit(f"{name}: expected one shim dump in {hostdir}, found {shim_files}")
    calls = []
    with open(os.path.join(hostdir, shim_files[0])) as f:
        for line in f:
            if line.startswith("# calibration"):
                raw["shim_calibration"] = {kv.split("=")[0]: int(kv.split("=")[1]) for kv in line.split()[2:]}
            elif line.startswith("# fini"):
                raw["fini_ms"] = int(line.split("=")[1]) / 1e6
            elif line.startswith("#"):
                raw["shim_header"] = line.strip()
            else:
                op, job, rc, real, wall, cpu = line.split()
                calls.append((op, int(job), int(rc), int(real), int(wall), int(cpu)))
    raw["calls"] = [c for c in calls if c[0] in "LE"]
    ends = {}
    with open(os.path.join(hostdir, "ends.txt")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                ends.setdefault(int(parts[0]), int(parts[1]))
    raw["ends"] = ends
    consumed = {}
    with open(consumer_out) as f:
        for line in f:
            m = json.loads(line)
            if m["jobid"] is not None:
                consumed.setdefault(int(m["jobid"]), m)
    raw["consumed"] = consumed
    if not args.keep:
        shutil.rmtree(hostdir, ignore_errors=True)
    return raw


def summarize(name, spec, raws, args):
    """Merges the rounds of one configuration into the result JSON."""
    records = [c for r in raws for c in r["calls"]]
    result = {"run": name, "spec": spec, "rounds": len(raws), "tasks": sum(r["tasks"] for r in raws),
              "topics": [r["topic"] for r in raws], "plugin_so": raws[0].get("plugin_so"),
              "array_wall_s": sum(r["array_wall_s"] for r in raws),
              "other_slurmctld": [r["other_slurmctld"] for r in raws],
              "thread_names": raws[0].get("thread_names", []),
              "shim_calibration": raws[0].get("shim_calibration", {}),
              "fini_ms": [r.get("fini_ms") for r in raws], "stop_s": [r.get("stop_s") for r in raws]}
    result["jobs_per_s"] = result["tasks"] / result["array_wall_s"]
    groups = {}
    for r in raws:
        for k, v in r["cpu_by_thread_group_s"].items():
            groups[k] = groups.get(k, 0.0) + v
    result["cpu_by_thread_group_s"] = groups
    result["slurmctld_cpu_s"] = sum(r["slurmctld_cpu_s"] for r in raws)
    result["plugin_threads_cpu_s"] = groups.get("librdkafka", 0.0) + groups.get("jobcomp_kafka", 0.0)
    result["calls"] = len(records)
    result["failed_calls"] = sum(1 for c in records if c[2] != 0)
    result["hot_wall_us"] = dist([c[4] / 1e3 for c in records])
    result["hot_cpu_us"] = dist([c[5] / 1e3 for c in records])
    result["hot_wall_us_raw"] = [c[4] / 1e3 for c in records]
    e2e_end, e2e_call, end_to_call, call_to_produce = [], [], [], []
    consumed_n = ended_n = missing = 0
    for r in raws:
        ends, consumed = r["ends"], r["consumed"]
        called = {}
        for c in r["calls"]:
            called.setdefault(c[1], c[3])
        consumed_n += len(consumed)
        ended_n += len(ends)
        missing += len(set(ends) - set(consumed))
        e2e_end += [(consumed[j]["recv_ns"] - ends[j]) / 1e6 for j in ends if j in consumed]
        e2e_call += [(consumed[j]["recv_ns"] - called[j]) / 1e6 for j in called if j in consumed]
        end_to_call += [(called[j] - ends[j]) / 1e6 for j in ends if j in called]
        call_to_produce += [consumed[j]["ts_ms"] - called[j] / 1e6 for j in called
                            if j in consumed and consumed[j]["ts_ms"]]
    result["consumed"], result["ended"], result["records_missing"] = consumed_n, ended_n, missing
    result["e2e_job_end_ms"] = dist(e2e_end)
    result["e2e_log_record_ms"] = dist(e2e_call)
    result["job_end_to_log_record_ms"] = dist(end_to_call)
    # Kafka timestamps have 1 ms resolution.
    result["log_record_to_produce_ms"] = dist(call_to_produce)
    result["e2e_job_end_ms_raw"] = e2e_end
    result["e2e_log_record_ms_raw"] = e2e_call
    n = max(1, len(records))
    result["cpu_per_record_us"] = {
        "hot_path": sum(c[5] for c in records) / 1e3 / n,
        "plugin_threads": result["plugin_threads_cpu_s"] * 1e6 / n,
    }
    result["cpu_per_record_us"]["total"] = sum(result["cpu_per_record_us"].values())
    idles = [r["idle"] for r in raws if r.get("idle")]
    if idles:
        span = sum(i["seconds"] for i in idles)
        by = {}
        for i in idles:
            for thread, d in i["by_thread"].items():
                m = by.setdefault(thread, {"threads": 0, "cpu_s": 0.0, "wakeups": 0})
                m["threads"] = max(m["threads"], d["threads"])
                m["cpu_s"] += d["cpu_s"]
                m["wakeups"] += d["wakeups"]
        per_s = {thread: {"threads": d["threads"], "cpu_ms_per_s": d["cpu_s"] * 1e3 / span,
                          "wakeups_per_s": d["wakeups"] / span} for thread, d in by.items()}
        plugin = [d for thread, d in by.items() if plugin_thread(thread)]
        result["idle"] = {
            "seconds": span,
            "by_thread": per_s,
            "plugin_threads_cpu_ms_per_s": sum(d["cpu_s"] for d in plugin) * 1e3 / span,
            "plugin_threads_wakeups_per_s": sum(d["wakeups"] for d in plugin) / span,
            "slurmctld_cpu_ms_per_s": sum(d["cpu_s"] for d in by.values()) * 1e3 / span,
            "slurmctld_wakeups_per_s": sum(d["wakeups"] for d in by.values()) / span,
        }
        log(f"{name}: idle {span:.0f} s: plugin threads {result['idle']['plugin_threads_cpu_ms_per_s']:.2f} ms/s CPU, "
            f"{result['idle']['plugin_threads_wakeups_per_s']:.1f} wake-ups/s; whole slurmctld "
            f"{result['idle']['slurmctld_cpu_ms_per_s']:.2f} ms/s, {result['idle']['slurmctld_wakeups_per_s']:.1f}/s")
    with open(os.path.join(args.out, f"ctld-{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    h, e, c = result["hot_wall_us"], result["e2e_job_end_ms"], result["e2e_log_record_ms"]
    log(f"{name}: {len(records)} calls in {len(raws)} round(s), hot p50 {h.get('p50', 0):.1f} us "
        f"p99 {h.get('p99', 0):.1f} us; job end->readable p50 {e.get('p50', 0):.1f} ms p99 {e.get('p99', 0):.1f} ms; "
        f"log_record->readable p50 {c.get('p50', 0):.1f} ms; cpu/record {result['cpu_per_record_us']['total']:.1f} us; "
        f"{result['jobs_per_s']:.1f} jobs/s; missing {missing}")
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tansu", required=True)
    ap.add_argument("--tansu-tls", help="HOST:PORT of a TLS endpoint in front of a tansu (host-ours-tls)")
    ap.add_argument("--tls-ca", help="the CA of that endpoint's certificate")
    ap.add_argument("--shim", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ours-2205")
    ap.add_argument("--ours-2411")
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--rounds", type=int, default=1, help="split each run into this many interleaved rounds")
    ap.add_argument("--keep", action="store_true", help="keep the cluster directories")
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for r in args.runs:
        if r not in RUNS:
            raise SystemExit(f"unknown run {r}; known: {' '.join(RUNS)}")
    # Rounds interleave the configurations (A B C A B C ...), so that a change of
    # load on the machine (other users) hits all of them alike.
    raws = {r: [] for r in args.runs}
    for k in range(args.rounds):
        for r in args.runs:
            spec = RUNS[r]
            tasks = max(50, int(args.tasks * spec.get("tasks", 1.0) / args.rounds))
            raws[r].append(run_once(r, spec, args, tasks, f"-r{k + 1}" if args.rounds > 1 else ""))
    for r in args.runs:
        summarize(r, RUNS[r], raws[r], args)


if __name__ == "__main__":
    main()
