"""Turns the raw benchmark results (bench/results/raw/*.json) into
bench/results/RESULTS.md (one table per benchmark, the targets with met/missed)
and bench/results/bench.png.

Usage: report.py --raw DIR --out DIR [--meta FILE]
--meta: JSON with the run's context (date, machine, commit, plugin hashes),
written by ci/bench.sh.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def load_raw(raw, prefix):
    out = {}
    for name in sorted(os.listdir(raw)):
        if name.startswith(prefix) and name.endswith(".json"):
            with open(os.path.join(raw, name)) as f:
                d = json.load(f)
            out[name[len(prefix):-5]] = d
    return out


def fmt(x, digits=1):
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def ratio(a, b):
    """a / b, None when either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in r) + " |")
    return "\n".join(lines)


def load(d):
    """Other slurmctld processes on the machine during a run (min-max over its rounds)."""
    seen = [n for pair in d.get("other_slurmctld", []) for n in pair]
    if not seen:
        return "?"
    return f"{min(seen)}-{max(seen)}" if min(seen) != max(seen) else str(min(seen))


def stated_bytes_per_record():
    """The README's statement of memory per undelivered record ("about N bytes of
    bookkeeping"), or None."""
    import re

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    try:
        with open(path) as f:
            text = " ".join(f.read().split())
    except OSError:
        return None
    m = re.search(r"about (\d+) bytes of bookkeeping", text)
    return int(m.group(1)) if m else None


def verdict(met, detail):
    return ("**met**" if met else "**missed**") + f" ({detail})"


def not_measured(detail):
    return f"**not measured** ({detail})"


def plugin_defaults():
    """The producer settings the plugin sets itself and the constants that bound a
    backlog's drain, read from src/ (so that the report follows the code), or {}."""
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = {}
    try:
        with open(os.path.join(root, "src/kafka/mod.rs")) as f:
            text = f.read()
        m = re.search(r"DEFAULT_PROPERTIES[^=]*=\s*\[(.*?)\];", text, re.S)
        if m:
            out.update(dict(re.findall(r'\("([^"]+)",\s*"([^"]*)"\)', m.group(1))))
        m = re.search(r'IDEMPOTENCE_DEFAULT[^=]*=\s*\("([^"]+)",\s*"([^"]*)"\)', text)
        if m:
            out[m.group(1)] = m.group(2) + " (unless the file sets it)"
        for name in ("PLUGIN_MESSAGE_TIMEOUT", "PLUGIN_ONE_REQUEST_IN_FLIGHT"):
            m = re.search(name + r'[^=]*=\s*\("([^"]+)",\s*"([^"]*)"\)', text)
            if m:
                out[m.group(1)] = m.group(2) + " (unless the file sets it)"
        with open(os.path.join(root, "src/plugin/mod.rs")) as f:
            text = f.read()
        for name in ("QUEUED_PAYLOAD_BUDGET", "BATCH"):
            m = re.search(rf"const {name}: usize = ([^;]+);", text)
            if m:
                out[name] = m.group(1).strip()
        with open(os.path.join(root, "src/config.rs")) as f:
            text = f.read()
        m = re.search(r"DEFAULT_TICK: Duration = Duration::from_millis\((\d+)\)", text)
        if m:
            out["tick_ms"] = m.group(1)
    except OSError:
        pass
    return out


def issue13(inproc, ctld, raw_dir):
    """Issue #13's targets: (sections to append, rows of its targets table)."""
    md, rows = [], []
    S_BASE_SPOOL_KIB = 3.7  # spool per mix record before issue #13 (RESULTS.md of 8230070)

    # 1. CPU per record in slurmctld, SchedMD's / ours.
    s, o = ctld.get("chroot-schedmd"), ctld.get("chroot-ours")
    if s and o:
        st, ot = s["cpu_per_record_us"]["total"], o["cpu_per_record_us"]["total"]
        r = ratio(st, ot)
        rate = min(s["jobs_per_s"], o["jobs_per_s"])
        rows.append(["CPU per record, all threads, in slurmctld, defaults, at the job array's rate: at most "
                     "SchedMD's (ratio SchedMD / ours >= 1.0)",
                     f"ours {fmt(ot)} us vs SchedMD {fmt(st)} us = {r:.2f}x at {s['jobs_per_s']:.0f} (SchedMD) / "
                     f"{o['jobs_per_s']:.0f} (ours) jobs/s (section 2)",
                     verdict(r >= 1.0, f"{r:.2f}x" + ("" if r >= 1.0 else
                             f"; ours uses {ot / st:.2f}x SchedMD's CPU, {ot - st:.0f} us per record over")
                             + f"; rate {rate:.0f} jobs/s")])
    if ctld:
        fast = [(k, d) for k, d in ctld.items() if d.get("jobs_per_s", 0) >= 100]
        best = max(ctld.items(), key=lambda kv: kv[1].get("jobs_per_s", 0))
        fs, fo = ctld.get("chroot-schedmd-fast"), ctld.get("chroot-ours-fast")
        target = "CPU per record, all threads, in slurmctld at >= 100 jobs/s: >= 2x lower than SchedMD's"
        fast_det = ""
        if fs and fo:
            r = ratio(fs["cpu_per_record_us"]["total"], fo["cpu_per_record_us"]["total"])
            fast_det = (f"ours {fmt(fo['cpu_per_record_us']['total'])} us vs SchedMD "
                        f"{fmt(fs['cpu_per_record_us']['total'])} us = {r:.2f}x at {fs['jobs_per_s']:.0f} (SchedMD) / "
                        f"{fo['jobs_per_s']:.0f} (ours) jobs/s (runs *-fast: 64 job slots, section 2)")
        if fs and fo and min(fs["jobs_per_s"], fo["jobs_per_s"]) >= 100:
            rows.append([target, fast_det, verdict(r >= 2, f"{r:.2f}x" + ("" if r >= 2 else
                                                                       f", short of 2x by {2 / r:.2f}x"))])
        else:
            top = best[1].get("jobs_per_s", 0)
            rows.append([target, (fast_det + "; " if fast_det else "") +
                         f"highest rate reached: {top:.0f} jobs/s ({best[0]}); {len(fast)} runs at >= 100 jobs/s",
                         not_measured(f"not measurable here: slurmctld finished at most {top:.0f} jobs/s; "
                                      "one node on 2 vCPUs, bound by launching the jobs (bench/README.md)")])

    # 1. In-process, paced: CPU per record by rate, per thread.
    paced = [(n, inproc[n]) for n in ("paced-10", "paced-100", "paced-up", "paced-1000")
             if n in inproc and inproc[n].get("cpu_per_record_loop_us")]
    paced.sort(key=lambda nd: nd[1]["spec"]["rate"])
    if paced:
        md.append("## 7. CPU per record by rate (in-process, paced, broker up)\n")
        md.append("host_bench calls log_record at a fixed rate (sleeping in between); per-thread CPU "
                  "(/proc/self/task/TID/schedstat, ns) from just before the first call (read by host_bench itself) "
                  "until every record was acknowledged, divided by the records. hot path = time inside the calls "
                  "(no syscall, no lock wait: wall ~ CPU); main thread = the caller's thread, i.e. the hot path plus "
                  "the host's loop and its wake-ups from clock_nanosleep (slurmctld's own cost, not the plugin's); "
                  "plugin total = hot path + jobcomp_kafka + jobcomp_sync + rdk:*. paced-10/100/1000 start 1 s after "
                  "init; paced-up (200/s) at once. SchedMD's plugin cannot be loaded in-process: no ratio.\n")
        trows = []
        for n, d in paced:
            c = d["cpu_per_record_loop_us"]
            trows.append([n, d["spec"]["rate"], d["records"], d.get("loop_to_done_s"), c["hot_path"],
                          c["jobcomp_kafka"], c["jobcomp_sync"], c["librdkafka"], f"**{fmt(c['plugin_total'])}**",
                          c["main"], c["process_total"]])
        md.append(table(["scenario", "records/s", "records", "seconds", "hot path us/rec", "jobcomp_kafka us/rec",
                         "jobcomp_sync us/rec", "rdk:* us/rec", "plugin total us/rec", "main thread us/rec",
                         "process total us/rec"], trows))
        md.append("")
        rows.append(["CPU per record in-process, paced at 10 / 100 / 1000 records/s, split per thread "
                     "(reported; no ratio: SchedMD's plugin cannot be loaded in-process)",
                     "; ".join(f"{d['spec']['rate']}/s: {fmt(d['cpu_per_record_loop_us']['plugin_total'])} us "
                               f"(hot {fmt(d['cpu_per_record_loop_us']['hot_path'])}, "
                               f"jobcomp_kafka {fmt(d['cpu_per_record_loop_us']['jobcomp_kafka'])}, "
                               f"jobcomp_sync {fmt(d['cpu_per_record_loop_us']['jobcomp_sync'])}, "
                               f"rdk:* {fmt(d['cpu_per_record_loop_us']['librdkafka'])})" for _, d in paced),
                     "measured (section 7)"])

    # 2. One core, every record acknowledged.
    oc = inproc.get("onecore")
    prof = inproc.get("onecore-perf", {}).get("perf")
    if oc:
        rate = oc["pipeline_rate"] if oc["complete"] else None
        dcpu = (oc.get("cpu_per_record_loop_us") or {}).get("jobcomp_kafka")
        if dcpu is None:
            dcpu = oc["threads_cpu_s"].get("jobcomp_kafka", 0) * 1e6 / oc["records"]
        det = (f"{fmt(rate) if rate else 'incomplete'} records/s from the first call until the last ack "
               f"(steady 10-90%: {fmt(oc.get('pipeline_rate_steady'))}/s); delivery thread {fmt(dcpu)} us CPU "
               f"per record (= at most {fmt(1e6 / dcpu) if dcpu else 'n/a'} records/s on a core of its own)")
        if prof and prof.get("top"):
            det += "; its top symbols: " + ", ".join(f"{t['symbol'].split('::')[-1][:40]} {t['pct']:.0f}%"
                                                     for t in prof["top"][:3])
        v = (verdict(rate >= 200000, f"{rate / 200000:.2f}x the target" if rate >= 200000 else
                     f"{rate / 200000 * 100:.0f}% of the target, short by {200000 - rate:,.0f}/s "
                     f"({200000 / rate:.1f}x too slow)") if rate else verdict(False, "not every record was acked"))
        rows.append(["whole pipeline on one core, back to back, every record acknowledged: >= 200,000 records/s",
                     det, v])
        md.append("## 8. One core: the whole pipeline and the delivery thread\n")
        md.append("Scenario onecore (the host process pinned to one CPU with taskset; tansu on the other): "
                  "records / time from the first call until the last Ack entry; per-thread CPU from the first call "
                  "until then. The profile comes from a separate run (onecore-perf, "
                  f"{fmt(inproc.get('onecore-perf', {}).get('records'))} records) under "
                  "`perf record -e cpu-clock`, `perf report --comm jobcomp_kafka --percentage relative`: "
                  "each symbol's share of the delivery thread's samples "
                  f"({prof.get('samples') if prof else 'n/a'} samples); the whole text in "
                  "raw/inproc-onecore-perf.perf.txt.\n")
        up = inproc.get("up", {})
        first_ack = next((t for t, done in up.get("progress", []) if done > 0), None)
        if first_ack is not None:
            md.append(f"onecore starts 1 s after init (the producer connected). Without that wait (scenario up, "
                      f"first round) the first acknowledgement came {first_ack:.2f} s after the first call: the "
                      "producer's start, paid once per slurmctld start.\n")
        c = oc.get("cpu_per_record_loop_us") or {}
        md.append(table(["records", "pipeline /s (all acked)", "steady /s", "hot path us/rec", "jobcomp_kafka us/rec",
                         "jobcomp_sync us/rec", "rdk:* us/rec", "process total us/rec"],
                        [[oc["records"], rate if rate else "incomplete", oc.get("pipeline_rate_steady"),
                          c.get("hot_path"), dcpu, c.get("jobcomp_sync"), c.get("librdkafka"), c.get("process_total")]]))
        md.append("")
        if prof and prof.get("top"):
            md.append(table(["% of jobcomp_kafka's samples", "object", "symbol"],
                            [[f"{t['pct']:.2f}%", t["dso"], f"`{t['symbol']}`"] for t in prof["top"][:10]]))
            md.append("")

    # 3. Backlog drain.
    bl = inproc.get("backlog-1m")
    if bl and bl.get("drain"):
        d = bl["drain"]
        n = bl["records"]
        cpu = d["cpu_per_record_us"]
        md.append(f"## 9. Backlog: broker down for {n:,} records, then up\n")
        md.append("host_bench pinned to CPU 0 with bootstrap.servers on a port where nothing listens; "
                  f"{n:,} mix records back to back; once the delivery thread has built and spooled all of them "
                  "(a Payload entry each), tansu is started on that port pinned to CPU 1 and the run's topic "
                  "created; drain = from tansu's start until the Ack entries cover every record. "
                  "First ack: from tansu's start (librdkafka reconnects on its own backoff, at most "
                  "reconnect.backoff.max.ms). CPU per record: per-thread schedstat over the drain.\n")
        md.append(table(["records", "calls + spooling s", "tansu listening s", "first ack s", "drain s",
                         "records/s", "jobcomp_kafka us/rec", "jobcomp_sync us/rec", "rdk:* us/rec"],
                        [[n, bl.get("spooled_s"), d["broker_start_to_listening_s"], d.get("first_ack_s"),
                          d["drain_s"] if bl["complete"] else "incomplete", d.get("records_per_s"),
                          cpu.get("jobcomp_kafka"), cpu.get("jobcomp_sync"), cpu.get("librdkafka")]]))
        dfl = plugin_defaults()
        if dfl:
            md.append("\nWhat bounds the drain rate with the defaults (read from src/ now): the plugin sets "
                      + ", ".join(f"{k}={v}" for k, v in dfl.items() if "." in k)
                      + f"; it hands librdkafka at most {dfl.get('BATCH', '?')} records between two services of "
                      f"delivery reports, keeps payloads waiting for librdkafka in memory up to "
                      f"{dfl.get('QUEUED_PAYLOAD_BUDGET', '?')} bytes (the rest is read back from the spool) and "
                      f"ticks every {dfl.get('tick_ms', '?')} ms. librdkafka's own defaults (not set by the plugin): "
                      "batch.num.messages=10000, batch.size=1000000, "
                      "queue.buffering.max.kbytes=1048576, reconnect.backoff.ms=100 growing to "
                      "reconnect.backoff.max.ms=10000.")
        md.append("")
        first = d.get("first_ack_s")
        det = (f"{n:,} records: all acked {fmt(d['drain_s'])} s after tansu started ({fmt(d.get('records_per_s'))}"
               f"/s; first ack after {fmt(first)} s); delivery thread {fmt(cpu.get('jobcomp_kafka'))} us CPU per record")
        if not bl["complete"]:
            v = verdict(False, "not every record was acknowledged before the timeout")
        elif n == 1_000_000:
            v = verdict(d["drain_s"] <= 10, f"{d['drain_s']:.1f} s" + ("" if d["drain_s"] <= 10 else
                        f", {d['drain_s'] - 10:.1f} s over ({d['drain_s'] / 10:.1f}x the target)"))
        elif d["drain_s"] > 10:
            v = verdict(False, f"1M not measured; already {n:,} records took {d['drain_s']:.1f} s, "
                        f"{d['drain_s'] - 10:.1f} s over")
        else:
            v = not_measured(f"1M not measured: this run had {n:,} records (drained in {d['drain_s']:.1f} s)")
        rows.append(["backlog: broker down for 1,000,000 records, then up: all acknowledged <= 10 s "
                     "(one core for the plugin, the broker on the other)", det, v])

    # 4. Spool on disk per waiting record.
    sc = [(k, inproc[k]) for k in ("scale-10k", "scale-100k", "scale-1m")
          if k in inproc and inproc[k].get("spool_files") and inproc[k].get("payload_json_bytes")]
    if sc:
        md.append("## 10. Spool on disk per waiting record (broker down, before fini)\n")
        md.append("Bytes on disk (allocated blocks: st_blocks x 512, so space allocated ahead of the writer "
                  "counts) of the spool's .snap files (the hot path's snapshots), .dlv files (the delivery "
                  "thread's Payload and Ack entries) and all its files, over the records; JSON = the JSON text "
                  "of every Payload entry (its body without the 2-byte topic length and the topic; for a "
                  "compressed one, the text length stored before its zstd frame) over the records. Texts "
                  "compressed = records spooled after 2 s without an acknowledgement (the outage so far). "
                  f"Capacity = how many such records the default spool_max_mb (4096) holds; baseline: "
                  f"{S_BASE_SPOOL_KIB} KiB per record before issue #13.\n")
        trows = []
        judged = None
        for k, d in sc:
            n = d["records"]
            f = d["spool_files"]
            snap = f.get("snap", {}).get("disk_bytes", 0) / n
            dlv = f.get("dlv", {}).get("disk_bytes", 0) / n
            total = sum(v.get("disk_bytes", 0) for v in f.values()) / n
            apparent = sum(v.get("apparent_bytes", 0) for v in f.values()) / n
            js = d["payload_json_bytes"] / n
            cap = 4096 * 2**20 / total if total else None
            trows.append([k, n, snap, dlv, total, apparent, js, f"{total / js:.2f}",
                          cap, f"{cap / (4096 * 2**20 / (S_BASE_SPOOL_KIB * 1024)):.2f}x" if cap else "n/a",
                          f"{d.get('payloads_json_like')}/{d.get('payloads_first')}",
                          f"{d.get('payloads_compressed', 0) or 0:,}"])
            # Judged on the longest outage (scale-1m when it ran): the texts of
            # records spooled after 2 s without an acknowledgement are
            # compressed, so a short outage understates the saving.
            judged = (k, n, snap, dlv, total, js, cap)
        md.append(table(["run", "records", ".snap B/rec", ".dlv B/rec", "total B/rec", "(apparent size B/rec)",
                         "JSON B/rec", "total / JSON", "records in 4096 MiB", "vs baseline",
                         "payloads starting with { (or compressed)", "texts compressed"], trows))
        md.append("")
        k, n, snap, dlv, total, js, cap = judged
        base = 4096 * 2**20 / (S_BASE_SPOOL_KIB * 1024)
        rows.append(["spool on disk per waiting record: at most the size of its JSON",
                     f"{k}: .snap {fmt(snap)} + .dlv {fmt(dlv)} = {fmt(total)} B/record on disk vs JSON "
                     f"{fmt(js)} B/record",
                     verdict(total <= js, f"total / JSON = {total / js:.2f}" + ("" if total <= js else
                             f", {total - js:,.0f} B per record over ({(total / js - 1) * 100:.0f}% more than the JSON)"))])
        rows.append([f"the default spool_max_mb (4096) holds >= 3x the records of the baseline ({S_BASE_SPOOL_KIB} KiB "
                     "per record)",
                     f"{k}: {fmt(total)} B/record: 4096 MiB hold {fmt(cap)} records; baseline {fmt(base)}",
                     verdict(cap >= 3 * base, f"{cap / base:.2f}x the baseline" + ("" if cap >= 3 * base else
                             f", short of 3x by {3 * base / cap:.2f}x; 3x needs <= {S_BASE_SPOOL_KIB * 1024 / 3:,.0f} "
                             f"B/record, {js / (S_BASE_SPOOL_KIB * 1024 / 3):.1f}x less than this workload's JSON"))])
    return md, rows


def issue25(inproc, ctld):
    """Issue #25's targets, ratios from this run: rows of its targets table, and
    the idle section."""
    md, rows = [], []
    s, o = ctld.get("chroot-schedmd"), ctld.get("chroot-ours")
    if s and o:
        st, ot = s["cpu_per_record_us"]["total"], o["cpu_per_record_us"]["total"]
        r = ratio(st, ot)
        rows.append(["CPU per record, all threads, in slurmctld, defaults, at the job array's rate: >= 1.5x lower "
                     "than SchedMD's", f"ours {fmt(ot)} us vs SchedMD {fmt(st)} us = {r:.2f}x at "
                     f"{s['jobs_per_s']:.0f} / {o['jobs_per_s']:.0f} jobs/s",
                     verdict(r >= 1.5, f"{r:.2f}x" + ("" if r >= 1.5 else f", short of 1.5x by {1.5 / r:.2f}x"))])
        sh, oh = s["hot_wall_us"], o["hot_wall_us"]
        r50, r99 = ratio(sh.get("p50"), oh.get("p50")), ratio(sh.get("p99"), oh.get("p99"))
        if r50 and r99:
            rows.append(["log_record wall time in slurmctld: p50 and p99 >= 12x and 15x below SchedMD's",
                         f"ours p50 {fmt(oh['p50'])} / p99 {fmt(oh['p99'])} us vs SchedMD {fmt(sh['p50'])} / "
                         f"{fmt(sh['p99'])} us = {r50:.1f}x / {r99:.1f}x",
                         verdict(r50 >= 12 and r99 >= 15, f"{r50:.1f}x / {r99:.1f}x")])
        se, oe = s["e2e_job_end_ms"], o["e2e_job_end_ms"]
        sc, oc = s["e2e_log_record_ms"], o["e2e_log_record_ms"]
        if se and oe and sc and oc:
            a, b, c = ratio(oe["p50"], se["p50"]), ratio(oe["p99"], se["p99"]), ratio(oc["p50"], sc["p50"])
            rows.append(["job end -> readable p50 and p99 no worse than SchedMD's; log_record -> readable p50 "
                         "<= 0.8x SchedMD's",
                         f"job end -> readable ours {fmt(oe['p50'])} / {fmt(oe['p99'])} ms vs SchedMD "
                         f"{fmt(se['p50'])} / {fmt(se['p99'])} ms ({a:.2f}x / {b:.2f}x); log_record -> readable p50 "
                         f"{fmt(oc['p50'])} vs {fmt(sc['p50'])} ms ({c:.2f}x)",
                         verdict(a <= 1 and b <= 1 and c <= 0.8, f"{a:.2f}x / {b:.2f}x; {c:.2f}x")])
    si, oi = (ctld.get("chroot-schedmd-idle") or {}).get("idle"), (ctld.get("chroot-ours-idle") or {}).get("idle")
    if si and oi:
        r = ratio(oi["plugin_threads_cpu_ms_per_s"], si["plugin_threads_cpu_ms_per_s"])
        rs = ratio(oi["slurmctld_cpu_ms_per_s"], si["slurmctld_cpu_ms_per_s"])
        rows.append(["slurmctld idle (no job, broker up): CPU per second of the plugin's threads no more than "
                     "SchedMD's; wake-ups per second of each thread reported",
                     f"plugin threads ours {oi['plugin_threads_cpu_ms_per_s']:.3f} ms/s, "
                     f"{oi['plugin_threads_wakeups_per_s']:.1f} wake-ups/s vs SchedMD "
                     f"{si['plugin_threads_cpu_ms_per_s']:.3f} ms/s, {si['plugin_threads_wakeups_per_s']:.1f}/s; whole "
                     f"slurmctld {oi['slurmctld_cpu_ms_per_s']:.2f} vs {si['slurmctld_cpu_ms_per_s']:.2f} ms/s "
                     f"({rs:.2f}x)", verdict(r is not None and r <= 1 and rs <= 1,
                                            f"plugin threads {r:.2f}x, whole slurmctld {rs:.2f}x")])
        md.append("## 11. slurmctld idle: CPU and wake-ups per thread\n")
        md.append(f"After a small job array, slurmctld with nothing to do (broker up) for {si['seconds']:.0f} s "
                  f"(SchedMD's) and {oi['seconds']:.0f} s (ours), split over the rounds: per thread name, CPU "
                  "(schedstat) and wake-ups (voluntary context switches, one per sleep) per second. Threads that "
                  "exist in one run only are the plugin's (SchedMD's plugin names none of its own; librdkafka's "
                  "are rdk:*).\n")
        names = sorted(set(si["by_thread"]) | set(oi["by_thread"]))
        trows = []
        for n in names:
            a, b = si["by_thread"].get(n), oi["by_thread"].get(n)
            trows.append([n, f"{a['cpu_ms_per_s']:.3f}" if a else "-", f"{a['wakeups_per_s']:.2f}" if a else "-",
                          f"{b['cpu_ms_per_s']:.3f}" if b else "-", f"{b['wakeups_per_s']:.2f}" if b else "-"])
        trows.append(["**all threads**", f"{si['slurmctld_cpu_ms_per_s']:.3f}", f"{si['slurmctld_wakeups_per_s']:.2f}",
                      f"{oi['slurmctld_cpu_ms_per_s']:.3f}", f"{oi['slurmctld_wakeups_per_s']:.2f}"])
        md.append(table(["thread", "SchedMD CPU ms/s", "SchedMD wake-ups/s", "ours CPU ms/s", "ours wake-ups/s"], trows))
        md.append("")
    oc, alone = inproc.get("onecore"), inproc.get("rdk-alone")
    if oc and alone and oc.get("complete"):
        r = oc["pipeline_rate"] / alone["rate"]
        rows.append(["the whole pipeline on one core (every record acknowledged) >= 0.6x librdkafka alone",
                     f"{fmt(oc['pipeline_rate'])}/s vs librdkafka alone {fmt(alone['rate'])}/s "
                     f"({alone['records']:,} prebuilt payloads, librdkafka "
                     f"{alone['threads_cpu_s'].get('librdkafka', 0) * 1e6 / alone['records']:.1f} us/record)",
                     verdict(r >= 0.6, f"{r:.2f}x")])
    bl, alone1m = inproc.get("backlog-1m"), inproc.get("rdk-alone-1m")
    if bl and bl.get("drain") and alone1m and bl.get("complete"):
        r = bl["drain"]["drain_s"] / alone1m["seconds"]
        rows.append(["1M backlog drains in <= 1.5x the time librdkafka alone needs for 1M payloads",
                     f"drain {fmt(bl['drain']['drain_s'])} s vs librdkafka alone {fmt(alone1m['seconds'])} s",
                     verdict(r <= 1.5, f"{r:.2f}x")])
    m1, m100 = (inproc.get("scale-1m") or {}).get("measure"), (inproc.get("scale-100k") or {}).get("measure")
    if m1 and m1.get("rss_anon_kb"):
        det = f"scale-1m: RssAnon {m1['rss_anon_kb'] / 1024:.0f} MiB, RssFile {m1.get('rss_file_kb', 0) / 1024:.0f} MiB"
        ok = m1["rss_anon_kb"] <= 128 * 1024
        per = None
        if m100 and m100.get("rss_anon_kb"):
            per = (m1["rss_anon_kb"] - m100["rss_anon_kb"]) * 1024 / 900_000
            det += f"; (RssAnon 1M - 100k) / 900,000 = {per:.0f} B per waiting record"
            ok = ok and per <= 32
        rows.append(["memory through an outage: <= 32 B per waiting record, RssAnon <= 128 MiB at the end of "
                     "the 1M outage", det, verdict(ok, det.split(": ", 1)[1])])
    sf = inproc.get("spool-full")
    if sf and (sf.get("measure") or {}).get("rss_anon_kb"):
        m, mx = sf["measure"], sf.get("metrics_at_measure") or {}
        waiting = int(mx.get("slurm_jobcomp_kafka_records_waiting", 0))
        memory_only = int(mx.get("slurm_jobcomp_kafka_records_memory_only", 0))
        lost = int(mx.get("slurm_jobcomp_kafka_records_lost_total", 0))
        det = (f"spool-full ({sf['records']:,} records, broker down, {sf['spec'].get('params')}): RssAnon "
               f"{m['rss_anon_kb'] / 1024:.0f} MiB, RssFile {m.get('rss_file_kb', 0) / 1024:.0f} MiB; "
               f"{waiting:,} waiting, of them {memory_only:,} in memory only (the limit is 100,000), {lost:,} "
               "lost with an error line")
        rows.append(["memory through an outage that fills the spool: bounded and reported", det,
                     verdict(memory_only <= 100_000 and waiting > 0, "reported; bounded by the 100,000 records "
                             "held in memory once the spool is full")])
    return md, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta")
    args = ap.parse_args()
    inproc = load_raw(args.raw, "inproc-")
    ctld = load_raw(args.raw, "ctld-")
    meta = {}
    if args.meta and os.path.exists(args.meta):
        with open(args.meta) as f:
            meta = json.load(f)
    md = []
    md.append("# jobcomp/kafka benchmarks: results\n")
    md.append(f"- Date: {meta.get('date', '?')}; total wall time of `make bench`: {meta.get('wall', '?')}")
    md.append(f"- Machine: {meta.get('machine', '?')}")
    md.append(f"- Plugin: commit {meta.get('commit', '?')}; 22.05.8 build sha256 {meta.get('sha_2205', '?')[:16]}, "
              f"24.11.5 build sha256 {meta.get('sha_2411', '?')[:16]} (librdkafka 2.12.1, static)")
    md.append("- SchedMD's plugin: Debian trixie slurm-wlm-kafka-plugin 24.11.5 "
              f"(librdkafka {meta.get('schedmd_librdkafka', '?')}, shared); broker: tansu 0.6.0 (in memory) on loopback, "
              "or librdkafka's mock cluster with a round-trip delay (\"slow\"), or a closed port (\"down\"); "
              "Apache Kafka (one KRaft node on loopback) for the table \"with Apache Kafka\".")
    md.append("- How each number is measured: bench/README.md. Times: us = microseconds, ms = milliseconds.\n")

    targets = []

    # ------------------------------------------------------------------ ctld
    s, o, h = ctld.get("chroot-schedmd"), ctld.get("chroot-ours"), ctld.get("host-ours")
    if s or o or h:
        md.append("## 1. Per-call time of log_record inside slurmctld (LD_PRELOAD shim)\n")
        md.append("Every call slurmctld made to the plugin's record operation during one job array, "
                  "wall time (CLOCK_MONOTONIC) and thread CPU time (CLOCK_THREAD_CPUTIME_ID) measured by "
                  "bench/shim/jobcomp_timing.so around the real call.\n")
        rows = []
        for label, d in (("SchedMD, 24.11.5 (chroot)", s), ("ours, 24.11.5 (chroot)", o), ("ours, 22.05.8 (host)", h),
                         ("ours, tick_ms=2 (chroot, 1/4 of the jobs)", ctld.get("chroot-ours-tick2")),
                         ("ours, tick_ms=40 (chroot, 1/4 of the jobs)", ctld.get("chroot-ours-tick40"))):
            if not d:
                continue
            w, c = d["hot_wall_us"], d["hot_cpu_us"]
            rows.append([label, d["calls"], w["p50"], w["p90"], w["p99"], w["p999"], w["max"], c["p50"], c["p99"],
                         fmt(d["jobs_per_s"]), d["failed_calls"], load(d)])
        if s and o:
            rows.append(["**ratio SchedMD / ours (chroot)**", "",
                         f"**{ratio(s['hot_wall_us']['p50'], o['hot_wall_us']['p50']):.1f}x**",
                         f"{ratio(s['hot_wall_us']['p90'], o['hot_wall_us']['p90']):.1f}x",
                         f"**{ratio(s['hot_wall_us']['p99'], o['hot_wall_us']['p99']):.1f}x**",
                         f"{ratio(s['hot_wall_us']['p999'], o['hot_wall_us']['p999']):.1f}x",
                         f"{ratio(s['hot_wall_us']['max'], o['hot_wall_us']['max']):.1f}x",
                         f"{ratio(s['hot_cpu_us']['p50'], o['hot_cpu_us']['p50']):.1f}x",
                         f"{ratio(s['hot_cpu_us']['p99'], o['hot_cpu_us']['p99']):.1f}x", "", "", ""])
        md.append(table(["plugin", "calls", "wall p50 us", "p90", "p99", "p99.9", "max", "CPU p50 us", "CPU p99",
                         "jobs/s", "rc!=0", "other slurmctlds running"], rows))
        cal = (o or s or h).get("shim_calibration", {})
        md.append(f"\nShim overhead (same sequence around an empty function): wall {cal.get('wall_ns_p50', '?')} ns, "
                  f"CPU {cal.get('cpu_ns_p50', '?')} ns (not subtracted).\n")
        if s and o:
            r50 = ratio(s["hot_wall_us"]["p50"], o["hot_wall_us"]["p50"])
            r99 = ratio(s["hot_wall_us"]["p99"], o["hot_wall_us"]["p99"])
            met = r50 >= 20 and r99 >= 20
            targets.append(["log_record wall time in slurmctld: p50 and p99 >= 20x lower than SchedMD's "
                            "(orientation: p50 <= 5 us, p99 <= 25 us)",
                            f"p50 {fmt(o['hot_wall_us']['p50'])} us vs {fmt(s['hot_wall_us']['p50'])} us = {r50:.1f}x; "
                            f"p99 {fmt(o['hot_wall_us']['p99'])} us vs {fmt(s['hot_wall_us']['p99'])} us = {r99:.1f}x",
                            verdict(met, "ratios %.1fx / %.1fx; %s" % (r50, r99, "; ".join(
                                f"{name} {'met' if r >= 20 else f'short of 20x by {20 / r:.1f}x'}"
                                for name, r in (("p50", r50), ("p99", r99)))))])

        md.append("## 2. CPU per record, all threads (inside slurmctld)\n")
        md.append("Hot path: the shim's thread CPU time inside the call. Plugin threads: CPU time "
                  "(/proc/PID/task/TID/schedstat, ns) of librdkafka's threads (rdk:*) and our threads "
                  "(jobcomp_kafka delivery + jobcomp_sync), from just before the array was submitted until its last record was read by "
                  "the consumer; divided by the records. SchedMD's poll thread is not named and is not counted "
                  "(it wakes every 2 s).\n")
        rows = []
        for label, d in (("SchedMD, 24.11.5 (chroot)", s), ("ours, 24.11.5 (chroot)", o), ("ours, 22.05.8 (host)", h),
                         ("ours, tick_ms=2 (chroot, 1/4 of the jobs)", ctld.get("chroot-ours-tick2")),
                         ("ours, tick_ms=40 (chroot, 1/4 of the jobs)", ctld.get("chroot-ours-tick40")),
                         ("SchedMD, 64 job slots (chroot, 1/2 of the jobs)", ctld.get("chroot-schedmd-fast")),
                         ("ours, 64 job slots (chroot, 1/2 of the jobs)", ctld.get("chroot-ours-fast"))):
            if not d:
                continue
            c = d["cpu_per_record_us"]
            g = d["cpu_by_thread_group_s"]
            n = max(1, d["calls"])
            rows.append([label, fmt(d["jobs_per_s"]), c["hot_path"], g.get("jobcomp_kafka", 0) * 1e6 / n,
                         g.get("librdkafka", 0) * 1e6 / n, c["total"], d["slurmctld_cpu_s"] * 1e6 / n])
        if s and o:
            r = ratio(s["cpu_per_record_us"]["total"], o["cpu_per_record_us"]["total"])
            rows.append(["**ratio SchedMD / ours (chroot)**", "", "", "", "", f"**{r:.2f}x**", ""])
            fs, fo = ctld.get("chroot-schedmd-fast"), ctld.get("chroot-ours-fast")
            if fs and fo:
                rows.append(["**ratio SchedMD / ours (chroot, 64 job slots)**", "", "", "", "",
                             f"**{ratio(fs['cpu_per_record_us']['total'], fo['cpu_per_record_us']['total']):.2f}x**", ""])
            det = f"{fmt(o['cpu_per_record_us']['total'])} us vs {fmt(s['cpu_per_record_us']['total'])} us = {r:.2f}x"
            t40 = ctld.get("chroot-ours-tick40")
            if t40:
                r40 = ratio(s["cpu_per_record_us"]["total"], t40["cpu_per_record_us"]["total"])
                det += f"; with tick_ms=40: {fmt(t40['cpu_per_record_us']['total'])} us = {r40:.2f}x"
            floor = s["cpu_by_thread_group_s"].get("librdkafka", 0) * 1e6 / max(1, s["calls"])
            why = f"{r:.2f}x" + ("" if r >= 5 else f", short of 5x by {5 / r:.1f}x")
            if r < 5 and floor:
                why += (f". 5x would be {fmt(s['cpu_per_record_us']['total'] / 5)} us, less than librdkafka's threads "
                        f"alone ({fmt(floor)} us in SchedMD's run, one produce request per record at this rate); "
                        "each thread wake-up costs tens of us here (section 6)")
            targets.append(["CPU per record, all threads, >= 5x lower than SchedMD's", det, verdict(r >= 5, why)])
        md.append(table(["plugin", "jobs/s", "hot path us", "delivery thread us", "librdkafka threads us", "total us/record",
                         "(all of slurmctld, us/record)"], rows))
        md.append("")

    # --------------------------------------------------------------- inproc
    if inproc:
        md.append("## 3. In-process: bench/host_bench.c (22.05.8 layout), calls back to back\n")
        md.append("Synthetic records (mix: 60% batch jobs with 0.6-1.2 KB scripts, 25% array tasks, 5% 384-node jobs "
                  "with ~4 KB fragmented node lists, 9% interactive jobs, 1% 100 KiB scripts), one call after the other. "
                  "hot rate = records / sum of call times; loop rate = records / wall time of the loop; pipeline = "
                  "records / time from the first call until the last record was acknowledged by Kafka (up, slow) or "
                  "built and spooled by the delivery thread (down), start-up and the last delivery reports included; "
                  "steady = rate between 10% and 90% of the records done. CPU = getrusage(RUSAGE_SELF) over that time, all "
                  "threads. HWM = VmHWM.\n")
        rows = []
        for name in ("up", "up-metrics", "down", "slow", "onecore", "script100k", "paced-up", "paced-up-metrics",
                     "paced-down", "paced-slow", "paced-10", "paced-100", "paced-1000"):
            d = inproc.get(name)
            if not d:
                continue
            l, hot, m = d["lat"], d["hot"], d["measure"]
            n = d["records"]
            thr = d["threads_cpu_s"]
            rows.append([name, n, l["p50_us"], l["p90_us"], l["p99_us"], l["p999_us"], l["max_us"], hot["hot_rate"],
                         hot["loop_rate"], d["pipeline_rate"] if d["complete"] else "incomplete",
                         d.get("pipeline_rate_steady"),
                         m["cpu_per_record_us"], hot["main_thread_cpu_s"] * 1e6 / n,
                         thr.get("jobcomp_kafka", 0) * 1e6 / n, thr.get("librdkafka", 0) * 1e6 / n,
                         m["hwm_kb"] / 1024])
        md.append(table(["scenario", "records", "p50 us", "p90", "p99", "p99.9", "max", "hot rate /s", "loop rate /s",
                         "pipeline /s (all acked)", "pipeline /s (steady)", "CPU us/rec", "hot-path CPU", "delivery CPU", "librdkafka CPU", "HWM MiB"], rows))
        paced = inproc.get("paced-up", {})
        md.append("\nup = tansu; down = closed port; slow = librdkafka mock cluster, 50 ms round trip; onecore = up, "
                  "whole process pinned to one CPU (taskset); script100k = every job has a 100 KiB script; "
                  f"paced-* = {paced.get('spec', {}).get('rate', 200)} calls/s with the caller sleeping in between "
                  "(slurmctld's cadence). Rounds: the scenarios ran interleaved, "
                  f"{inproc.get('up', {}).get('rounds', 1)} runs each, merged. The broker (tansu, or the mock cluster's "
                  "process) runs on the same 2 vCPUs and competes with the plugin's threads for them.\n")
        up = inproc.get("up")
        if up and up.get("lat_by_kind"):
            md.append("Per record kind (scenario up):\n")
            md.append(table(["kind", "calls", "p50 us", "p99 us", "p99.9 us"],
                            [[k, v["n"], v["p50_us"], v["p99_us"], v["p999_us"]] for k, v in up["lat_by_kind"].items()]))
            md.append("")
        # Target: broker down/slow changes the distribution by < 20 %.
        checks = []
        for base, others in (("up", ("down", "slow")), ("paced-up", ("paced-down", "paced-slow"))):
            if base not in inproc:
                continue
            for other in others:
                if other not in inproc:
                    continue
                for q in ("p50_us", "p99_us"):
                    a, b = inproc[base]["lat"][q], inproc[other]["lat"][q]
                    checks.append((f"{other} vs {base} {q[:-3]}", (b - a) / a * 100))
        if checks:
            worst = max(checks, key=lambda c: abs(c[1]))
            met = all(abs(c[1]) < 20 for c in checks)
            targets.append(["broker down or slow changes the hot-path distribution by < 20%",
                            "; ".join(f"{n} {v:+.0f}%" for n, v in checks),
                            verdict(met, f"largest change {worst[1]:+.0f}% ({worst[0]})" +
                                    ("" if met else f", {abs(worst[1]) - 20:.0f} points over"))])
        # JobCompParams metrics_file: log_record's histogram must stay within noise.
        metric_checks = []
        for base in ("up", "paced-up"):
            on = inproc.get(f"{base}-metrics")
            if base in inproc and on:
                for q in ("p50_us", "p99_us"):
                    a, b = inproc[base]["lat"][q], on["lat"][q]
                    metric_checks.append(f"{base} {q[:-3]}: off {a:.2f} us, on {b:.2f} us ({(b - a) / a * 100:+.0f}%)")
        if metric_checks:
            targets.append(["metrics on (metrics_file) vs off: log_record's p50 / p99, same run, interleaved",
                            "; ".join(metric_checks), "measured (compare with the spread between rounds)"])
        oc = inproc.get("onecore")
        if oc:
            rate = oc["hot"]["hot_rate"]
            targets.append([">= 200,000 records/s sustained into the pipeline on one core (in-process)",
                            f"one core: hot path accepts {fmt(rate)}/s (loop {fmt(oc['hot']['loop_rate'])}/s incl. "
                            f"the host's timing); whole pipeline to Kafka {fmt(oc.get('pipeline_rate_steady'))}/s steady; "
                            f"two cores (up): hot {fmt(inproc['up']['hot']['hot_rate']) if 'up' in inproc else 'n/a'}/s",
                            verdict(rate >= 200000, f"{rate / 200000:.2f}x the target" if rate >= 200000 else
                                    f"{rate / 200000 * 100:.0f}% of the target, short by {200000 - rate:,.0f}/s")])

    scale = [(k, inproc[k]) for k in ("scale-10k", "scale-100k", "scale-1m") if k in inproc]
    if scale:
        md.append("## 4. Backlog: broker down, 10k / 100k / 1M records back to back\n")
        md.append("RSS at the end of the calls (records still queued between the hot path and the delivery thread), "
                  "after the delivery thread caught up (all built and spooled), and the peak during fini "
                  "(state file written); disk = the spool under StateSaveLocation before fini.\n")
        rows = []
        for name, d in scale:
            n = d["records"]
            l, hot, m = d["lat"], d["hot"], d["measure"]
            blocks = d.get("lat_blocks", [])
            last = blocks[-1] if blocks else {}
            rows.append([name, n, l["mean_us"], l["p50_us"], l["p99_us"], l["p999_us"], last.get("p99_us"),
                         hot["hot_rate"], d["pipeline_s"], hot["hwm_kb"] / 1024, m["rss_kb"] / 1024, m["hwm_kb"] / 1024,
                         d.get("fini", {}).get("hwm_kb", 0) / 1024, d["spool_bytes"] / 2**20,
                         d["spool_bytes"] / n / 1024, d.get("fini", {}).get("fini_ms", 0) / 1000,
                         d.get("state_file_bytes", 0) / 2**20])
        md.append(table(["run", "records", "mean us", "p50 us", "p99 us", "p99.9 us", "p99 last 1%", "hot rate /s",
                         "catch-up s", "RSS end of calls MiB", "RSS caught up MiB", "HWM before fini MiB",
                         "HWM incl. fini MiB", "spool MiB", "spool KiB/rec", "fini s", "state file MiB"], rows))
        md.append("")
        big = dict(scale).get("scale-1m")
        mid = dict(scale).get("scale-100k")
        if big:
            hwm = max(big["measure"]["hwm_kb"], big.get("fini", {}).get("hwm_kb", 0)) / 1024
            stated = stated_bytes_per_record()
            measured = None
            if mid:
                # Marginal memory per undelivered record: fixed parts (librdkafka's queue,
                # the payload budget, the binary) cancel out.
                measured = ((big["measure"]["rss_kb"] - mid["measure"]["rss_kb"]) * 1024
                            / (big["records"] - mid["records"]))
            det = (f"HWM {fmt(big['measure']['hwm_kb'] / 1024)} MiB during the 1M outage, "
                   f"{fmt(big.get('fini', {}).get('hwm_kb', 0) / 1024)} MiB in fini")
            if measured is not None:
                det += f"; RSS grows {measured:.0f} B per undelivered record (1M vs 100k, caught up)"
            if stated is None:
                v = verdict(False, "the README states no memory limit")
            elif measured is None:
                v = verdict(False, "needs the 100k run to compare")
            else:
                det += f"; README: about {stated} B of bookkeeping per undelivered record"
                ok = measured <= stated * 1.2
                v = verdict(ok, f"{measured / stated:.1f}x the stated per-record cost" +
                            ("" if ok else f", {measured - stated:.0f} B/record over") + f"; peak {hwm:,.0f} MiB")
            targets.append(["RSS bounded (stated limit) through a 1M-record outage", det, v])

    # ------------------------------------------------------------------ TLS
    t = ctld.get("host-ours-tls")
    if h and t:
        md.append("## 1b. TLS on vs plaintext (ours, 22.05.8 host, the same run)\n")
        md.append("host-ours-tls: security.protocol=SSL to a second tansu behind Debian's stunnel4 "
                  "(certificate signed by a CA made with openssl, ssl.ca.location). CPU per record: the "
                  "shim's thread CPU time in log_record plus the plugin's and librdkafka's threads "
                  "(/proc) divided by the records.\n")
        rows = []
        for label, d in (("plaintext", h), ("TLS", t)):
            w, c, cpu = d["hot_wall_us"], d["hot_cpu_us"], d["cpu_per_record_us"]
            rows.append([label, d["calls"], w["p50"], w["p99"], c["p50"], fmt(cpu["hot_path"]), fmt(cpu["plugin_threads"]),
                         fmt(cpu["total"]), d["e2e_log_record_ms"].get("p50"), d["records_missing"], load(d)])
        md.append(table(["transport", "calls", "log_record wall p50 us", "p99", "log_record CPU p50 us",
                         "CPU/record in log_record us", "CPU/record plugin+librdkafka threads us", "CPU/record total us",
                         "log_record->readable p50 ms", "missing", "other slurmctlds running"], rows))
        md.append("")

    # ------------------------------------------------------------------ e2e
    runs = [(k, ctld[k]) for k in ("chroot-schedmd", "chroot-schedmd-linger0", "chroot-ours", "chroot-ours-linger5",
                                   "chroot-ours-tick2", "chroot-ours-tick40", "host-ours", "host-ours-tls")
            if k in ctld]
    if runs:
        md.append("## 5. End to end: job end -> record readable by a consumer (tansu up)\n")
        md.append("Job end = CLOCK_REALTIME written by the job's last command (`date +%s%N`); log_record = "
                  "CLOCK_REALTIME when slurmctld entered the plugin (shim); readable = when a consumer "
                  "(confluent-kafka, fetch.wait.max.ms=5, reading since before the array) got the record. "
                  "Same kernel clock for all.\n")
        rows = []
        for name, d in runs:
            e, c, j = d["e2e_job_end_ms"], d["e2e_log_record_ms"], d["job_end_to_log_record_ms"]
            props = ", ".join(d["spec"].get("props", []) + d["spec"].get("params", [])) or "defaults"
            rows.append([name, props, d["consumed"], f"{d['records_missing']}", e.get("p50"), e.get("p99"), c.get("p50"),
                         c.get("p90"), c.get("p99"), j.get("p50"), j.get("p99"), load(d)])
        md.append(table(["run", "settings (librdkafka, JobCompParams)", "records read", "missing", "job end->readable p50 ms", "p99",
                         "log_record->readable p50 ms", "p90", "p99", "job end->log_record p50 ms", "p99",
                         "other slurmctlds running"], rows))
        md.append("\n\"other slurmctlds running\": other users' test clusters on the same 2 vCPUs at the start and "
                  "end of each round (min-max). job end->log_record is Slurm's own path (slurmd -> slurmctld, the job "
                  "write lock) and follows that load; log_record->readable is the plugin + broker + consumer.")
        md.append("")
        s = ctld.get("chroot-schedmd")
        o = ctld.get("chroot-ours")
        if s and o:
            ours_runs = [d for n, d in runs if n.startswith("chroot-ours")]
            best = min(ours_runs, key=lambda d: d["e2e_job_end_ms"]["p50"])
            a, b = o["e2e_job_end_ms"], s["e2e_job_end_ms"]
            ac, bc = o["e2e_log_record_ms"], s["e2e_log_record_ms"]
            # "No worse": within 10% (run-to-run noise here is larger than that).
            no_worse = a["p50"] <= b["p50"] * 1.1 and a["p99"] <= b["p99"] * 1.1
            better = best["e2e_job_end_ms"]["p50"] < b["p50"] and best["e2e_log_record_ms"]["p50"] < bc["p50"]
            det = (f"defaults, job end->readable: ours p50 {fmt(a['p50'])} / p99 {fmt(a['p99'])} ms vs SchedMD "
                   f"{fmt(b['p50'])} / {fmt(b['p99'])} ms (log_record->readable: {fmt(ac['p50'])} / {fmt(ac['p99'])} "
                   f"vs {fmt(bc['p50'])} / {fmt(bc['p99'])} ms); best of ours "
                   f"({', '.join(best['spec'].get('props', []) + best['spec'].get('params', [])) or 'defaults'}): p50 {fmt(best['e2e_job_end_ms']['p50'])}"
                   f" ms (log_record->readable {fmt(best['e2e_log_record_ms']['p50'])} ms)")
            why = ("defaults within 10% of SchedMD's or better" if no_worse else
                   f"defaults worse: p50 {a['p50'] / b['p50']:.2f}x, p99 {a['p99'] / b['p99']:.2f}x SchedMD's")
            why += ("; a setting beats SchedMD's defaults" if better else "; no setting beats SchedMD's defaults")
            why += (f". The plugin's own part, log_record->readable, is {ac['p50'] / bc['p50']:.2f}x (p50) and "
                    f"{ac['p99'] / bc['p99']:.2f}x (p99) SchedMD's with defaults; job end->log_record is Slurm's "
                    "and varies with load")
            targets.append(["end-to-end latency (job end -> readable) with defaults no worse than SchedMD's, "
                            "better with a setting", det, verdict(no_worse and better, why)])

    # -------------------------------------------------------------- targets
    md25, rows25 = issue25(inproc, ctld)
    md.extend(md25)
    # The same targets with Apache Kafka as the broker (ci/bench.sh kafka).
    kafka_raw = os.path.join(args.raw, "kafka")
    rows25k = []
    if os.path.isdir(kafka_raw):
        with open(os.path.join(kafka_raw, "broker.json")) as f:
            kafka_meta = json.load(f)
        kafka_version = kafka_meta["version"]
        md25k, rows25k = issue25(load_raw(kafka_raw, "inproc-"), load_raw(kafka_raw, "ctld-"))
        md.extend(md25k)
    if rows25k:
        md.insert(6, f"## Targets of issue #25 with Apache Kafka {kafka_version}\n\nThe same targets, measured with "
                  f"one Apache Kafka {kafka_version} node (ci/rig/kafka.sh, KRaft, on loopback) as the broker "
                  "instead of tansu, in the same run of `make bench` (`ci/bench.sh kafka`; raw results in "
                  f"raw/kafka/): {kafka_meta['date']}, commit {kafka_meta['commit']}, {kafka_meta['wall_s'] // 60} min, "
                  f"load average {' -> '.join(kafka_meta['load_average'])}. Only the runs of that part are "
                  "repeated; the rows it has no run for are absent.\n\n" + table(["target", "measured", "verdict"], rows25k) + "\n")
    if rows25:
        md.insert(6, "## Targets of issue #25\n\nRatios from this run, SchedMD's plugin (or librdkafka alone) "
                  "beside ours; how each figure is measured: bench/README.md and docs/performance.md.\n\n"
                  + table(["target", "measured", "verdict"], rows25) + "\n")
    new_md, new_rows = issue13(inproc, ctld, args.raw)
    if new_rows:
        md.insert(6, "## Targets of issue #13\n\nRatios from this run, SchedMD's plugin beside ours; how each "
                  "figure is measured: bench/README.md, section 6; sections 2 and 7-10 below.\n\n"
                  + table(["target", "measured", "verdict"], new_rows) + "\n")
    if targets:
        md.insert(6, "## Targets\n\n" + table(["target", "measured", "verdict"], targets) + "\n")

    # ---------------------------------------------------------------- wakeup
    wake_path = os.path.join(args.raw, "wakeup.json")
    if os.path.exists(wake_path):
        with open(wake_path) as f:
            w = json.load(f)
        md.append("## 6. What a thread wake-up costs on this machine (bench/wakeup_cost.c)\n")
        md.append("The floor under CPU per record at a trickle of jobs: our delivery thread and librdkafka's "
                  "broker thread each wake at least once per record. Sleeper: a thread that sleeps N ms in "
                  "pthread_cond_timedwait, its CPU time per wake-up. Waker: the wall time of one FUTEX_WAKE of a "
                  "waiting thread after idle time, what log_record would pay to wake the delivery thread (it "
                  "does not).\n")
        sl = w.get("sleeper_cpu_us_per_wakeup", {})
        md.append(table(["sleep between wake-ups"] + [f"{k} ms" for k in sl],
                        [["CPU us per wake-up"] + [fmt(v) for v in sl.values()]]) + "\n")
        fw = w.get("futex_wake_wall_us", {})
        md.append(table(["FUTEX_WAKE after", "p50 us", "p90 us", "p99 us"],
                        [[k.replace("after_", "").replace("_", " "), fmt(v["p50"]), fmt(v["p90"]), fmt(v["p99"])]
                         for k, v in fw.items()]) + "\n")

    md.extend(new_md)
    md.append("Where the time goes, and the performance problems these numbers point at in src/: "
              "see bench/README.md, section \"Findings\".\n")
    md.append("![plots](bench.png)\n")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "RESULTS.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    plot(inproc, ctld, os.path.join(args.out, "bench.png"))


def cdf(ax, values, label, **kw):
    v = np.sort(np.asarray(values, dtype=float))
    if v.size == 0:
        return
    ax.plot(v, np.arange(1, v.size + 1) / v.size, label=label, **kw)


def plot(inproc, ctld, path):
    fig, axes = plt.subplots(3, 2, figsize=(14, 15))
    (a1, a2), (a3, a4), (a5, a6) = axes

    for name, label in (("chroot-schedmd", "SchedMD 24.11.5"), ("chroot-ours", "ours 24.11.5"),
                        ("host-ours", "ours 22.05.8")):
        if name in ctld:
            cdf(a1, ctld[name]["hot_wall_us_raw"], f"{label} (p50 {ctld[name]['hot_wall_us']['p50']:.0f} us)")
    a1.set_xscale("log")
    a1.set_xlabel("wall time per call (us, log)")
    a1.set_ylabel("fraction of calls")
    a1.set_title("1. log_record inside slurmctld (shim), one job array")
    a1.grid(True, which="both", alpha=0.3)
    a1.legend(loc="lower right")

    names = [n for n in ("up", "down", "slow", "onecore", "paced-up", "paced-down", "paced-slow") if n in inproc]
    if names:
        x = np.arange(len(names))
        w = 0.27
        for i, (q, lab) in enumerate((("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"))):
            vals = [inproc[n]["lat"][q] for n in names]
            a2.bar(x + (i - 1) * w, vals, w, label=lab)
        a2.set_xticks(x, names, rotation=20)
        a2.set_yscale("log")
        a2.set_ylabel("us per call (log)")
        a2.set_title("3. in-process per-call time by broker state")
        a2.grid(True, axis="y", which="both", alpha=0.3)
        a2.legend()

    for name, label in (("chroot-schedmd", "SchedMD"), ("chroot-schedmd-linger0", "SchedMD linger.ms=0"),
                        ("chroot-ours", "ours (defaults)"), ("chroot-ours-linger5", "ours linger.ms=5"),
                        ("chroot-ours-tick2", "ours tick_ms=2"), ("chroot-ours-tick40", "ours tick_ms=40")):
        if name in ctld and ctld[name].get("e2e_log_record_ms_raw"):
            cdf(a3, ctld[name]["e2e_log_record_ms_raw"], label)
            cdf(a4, ctld[name]["e2e_job_end_ms_raw"], label)
    for ax, title in ((a3, "5. log_record -> readable by a consumer"), (a4, "5. job end -> readable by a consumer")):
        ax.set_xscale("log")
        ax.set_xlabel("ms (log)")
        ax.set_ylabel("fraction of records")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right")

    for name, colour in (("scale-10k", "tab:blue"), ("scale-100k", "tab:orange"), ("scale-1m", "tab:green")):
        d = inproc.get(name)
        if not d:
            continue
        tl = np.asarray(d["timeline"], dtype=float)
        if tl.size:
            a5.plot(tl[:, 0], tl[:, 1] / 1024, color=colour, label=f"{name} ({d['records']:,} records)")
            end_calls = d["hot"]["loop_wall_s"]
            a5.axvline(end_calls, color=colour, linestyle=":", linewidth=1)
            a5.axvline(d["pipeline_s"], color=colour, linestyle="--", linewidth=1)
        blocks = d.get("lat_blocks", [])
        if blocks:
            xs = [b["first"] + 1 for b in blocks]
            a6.plot(xs, [b["p99_us"] for b in blocks], color=colour, label=f"{name} p99")
            a6.plot(xs, [b["p50_us"] for b in blocks], "--", color=colour, label=f"{name} p50")
    a5.set_xlabel("seconds since the first call (dotted: calls done, dashed: caught up; then fini)")
    a5.set_ylabel("RSS MiB")
    a5.set_title("4. RSS with the broker down")
    a5.grid(True, alpha=0.3)
    a5.legend()
    a6.set_xscale("log")
    a6.set_yscale("log")
    a6.set_xlabel("records submitted (backlog), log")
    a6.set_ylabel("us per call, per block of 1% of the calls")
    a6.set_title("4. per-call time as the backlog grows (broker down)")
    a6.grid(True, which="both", alpha=0.3)
    a6.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
