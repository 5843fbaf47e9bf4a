#!/usr/bin/env bash
# Self-test of the rigs against the real parts (no project code involved).
#
# Usage: selftest.sh [kafka] [host] [chroot] [auth]   (default: kafka host chroot)
# `make rig-selftest` runs all four (about 5 minutes).
#   kafka   tansu + consume.py: byte-exact round trip (NUL, invalid UTF-8,
#           binary/absent keys, headers, empty/null/1 MiB values), --exact,
#           --until-end, timeout exit 3, --follow
#   host    Slurm 22.05 on the host with jobcomp/filetxt: job -> record,
#           restart-ctld, kill9-ctld + start-ctld, stop leaves no process
#   chroot  Slurm 24.11.5 in the trixie chroot with SchedMD's jobcomp/kafka and
#           tansu on the host: every job's record read back; end -> visible latency
#   auth    which AuthType works where: none/munge on 22.05, none/munge/slurm on 24.11
# Environment: JK_TANSU_PORT (19092), JK_ROOT (chroot root), JK_LAT_JOBS (10).
# Ends with "selftest: N passed, N failed"; exit 1 when anything failed.
set -euo pipefail
RIG_NAME=selftest
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

TANSU_PORT=${JK_TANSU_PORT:-19092}
ROOT=${JK_ROOT:-$RIG_CACHE/chroot-trixie}
LAT_JOBS=${JK_LAT_JOBS:-10}
PASSED=0 FAILED=0
CLEANUPS=()

check() { # DESC CMD...: record a pass/fail in CHECK_OK (1/0); always returns 0
	local desc=$1
	shift
	if "$@"; then
		PASSED=$((PASSED + 1)) CHECK_OK=1
		log "ok   $desc"
	else
		FAILED=$((FAILED + 1)) CHECK_OK=0
		log "FAIL $desc"
	fi
}

cleanup() {
	local i
	for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do
		eval "${CLEANUPS[i]}" || true
	done
	CLEANUPS=()
}
trap cleanup EXIT

# --- kafka ---------------------------------------------------------------

test_kafka() {
	local dir t0 py
	dir=$(mktemp -d /tmp/jk-rig-st-kafka.XXXX)
	CLEANUPS+=("'$RIG_DIR/tansu.sh' stop '$dir'; rm -rf '$dir'")
	ensure_venv
	t0=$(now_ms)
	"$RIG_DIR/tansu.sh" start "$dir" "$TANSU_PORT"
	log "tansu start (venv present): $(($(now_ms) - t0)) ms"
	py=$RIG_VENV/bin/python
	local bs=127.0.0.1:$TANSU_PORT topic=rig-selftest-$RANDOM

	# Messages as produce.py input; the expected bytes are the same objects.
	"$py" - >"$dir/in.jsonl" <<-'EOF'
		import base64, json
		def b(x): return base64.b64encode(x).decode()
		msgs = [
		    {"key": "job-1", "value": '{"jobid":1,"state":"COMPLETED"}'},
		    {"key": "job-2", "value_b64": b(b"nul\x00inside\x00")},
		    {"key_b64": b(b"\xff\xfe\x00k"), "value_b64": b(b"\xc3\x28 invalid utf-8 \xa0\xa1")},
		    {"value": "no key, unicode: \u00e9\u4e2d\U0001F600"},
		    {"key": "empty", "value_b64": ""},
		    {"key": "null-value"},
		    {"key": "hdrs", "value": "x", "headers": {"h1": "v1", "bin": {"b64": b(b"\x00\xff")}}},
		    {"key": "big", "value_b64": b(bytes(range(256)) * 2048)},
		]
		for m in msgs: print(json.dumps(m))
	EOF
	local n
	n=$(wc -l <"$dir/in.jsonl")
	check "producer delivers $n tricky messages" \
		"$py" "$RIG_DIR/produce.py" --bootstrap "$bs" --topic "$topic" <"$dir/in.jsonl" >"$dir/delivered.jsonl"
	t0=$(now_ms)
	check "consumer reads exactly $n (--exact)" \
		"$py" "$RIG_DIR/consume.py" --bootstrap "$bs" --topic "$topic" --from-beginning \
		--expect "$n" --exact --linger 1 --timeout 20 >"$dir/out.jsonl"
	log "consume of $n messages incl. 1 s linger: $(($(now_ms) - t0)) ms"
	check "every message byte-exact (value, key, headers) at its delivered offset" \
		"$py" - "$dir/in.jsonl" "$dir/delivered.jsonl" "$dir/out.jsonl" <<-'EOF'
			import base64, json, sys
			ins = [json.loads(l) for l in open(sys.argv[1])]
			dels = [json.loads(l) for l in open(sys.argv[2])]
			outs = {(o["partition"], o["offset"]): o for o in map(json.loads, open(sys.argv[3]))}
			def raw(o, name):
			    if o.get(name + "_b64") is not None: return base64.b64decode(o[name + "_b64"])
			    if o.get(name) is not None: return o[name].encode()
			    return None
			bad = 0
			for m, d in zip(ins, dels):
			    o = outs.pop((d["partition"], d["offset"]), None)
			    if o is None:
			        print("missing", d); bad += 1; continue
			    val = base64.b64decode(o["value_b64"]) if o["value_b64"] is not None else None
			    if val != raw(m, "value"): print("value differs", d); bad += 1
			    try: text = val.decode() if val is not None else None
			    except UnicodeDecodeError: text = None
			    if o["value"] != text: print("value text differs", d); bad += 1
			    key = base64.b64decode(o["key_b64"]) if "key_b64" in o else (o["key"].encode() if o["key"] is not None else None)
			    if key != raw(m, "key"): print("key differs", d); bad += 1
			    if o["headers"] != (m.get("headers") or {}): print("headers differ", o["headers"]); bad += 1
			if outs: print("unexpected", list(outs)); bad += 1
			sys.exit(1 if bad else 0)
		EOF
	local rc=0
	"$py" "$RIG_DIR/consume.py" --bootstrap "$bs" --topic "$topic" --from-beginning --until-end \
		--timeout 20 >"$dir/all.jsonl" || rc=$?
	check "--until-end stops at the end with all $n" test "$rc" -eq 0 -a "$(wc -l <"$dir/all.jsonl")" -eq "$n"
	rc=0
	"$py" "$RIG_DIR/consume.py" --bootstrap "$bs" --topic "$topic" --from-beginning --expect $((n + 1)) \
		--timeout 2 >/dev/null 2>&1 || rc=$?
	check "timeout before --expect exits 3" test "$rc" -eq 3
	rc=0
	"$py" "$RIG_DIR/consume.py" --bootstrap "$bs" --topic "$topic" --from-beginning --expect $((n - 1)) \
		--exact --linger 1 --timeout 10 >/dev/null 2>&1 || rc=$?
	check "--exact with one message too many exits 5" test "$rc" -eq 5
	# Not from the beginning: only what comes after "ready".
	rm -f "$dir/ready"
	"$py" "$RIG_DIR/consume.py" --bootstrap "$bs" --topic "$topic" --expect 1 --timeout 20 \
		--ready-file "$dir/ready" >"$dir/new.jsonl" 2>/dev/null &
	local cpid=$!
	wait_for 10 "consumer ready" test -f "$dir/ready"
	echo '{"key":"late","value":"after ready"}' | "$py" "$RIG_DIR/produce.py" --bootstrap "$bs" --topic "$topic" >/dev/null
	rc=0
	wait "$cpid" || rc=$?
	check "from the end: reads only the message produced after ready" \
		test "$rc" -eq 0 -a "$(grep -c '"key": "late"' "$dir/new.jsonl")" -eq 1
	# --follow: pretty blocks until interrupted.
	"$py" "$RIG_DIR/consume.py" --bootstrap "$bs" --topic "$topic" --from-beginning --follow \
		>"$dir/follow.txt" 2>/dev/null &
	cpid=$!
	wait_for 10 "follow output" bash -c "(( \$(grep -c '^── ' '$dir/follow.txt') >= $((n + 1)) ))"
	grep -q '"state": "COMPLETED"' "$dir/follow.txt" || log "follow output lacks the pretty JSON block"
	kill -INT "$cpid"
	rc=0
	wait "$cpid" || rc=$?
	check "--follow prints pretty blocks and exits 0 on SIGINT" \
		test "$rc" -eq 0 -a "$(grep -c '^── ' "$dir/follow.txt")" -eq $((n + 1))
	t0=$(now_ms)
	"$RIG_DIR/tansu.sh" stop "$dir"
	log "tansu stop: $(($(now_ms) - t0)) ms"
	check "tansu stopped by PID" test ! -e "$dir/tansu.pid"
	cleanup
	rm -rf "$dir"
}

# --- Slurm helpers ---------------------------------------------------------

# rig_pids DIR: PIDs of this rig's processes still alive (for leftover checks)
rig_pids() {
	local p
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		{ tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qxF "JK_RIG_DIR=$1" && echo "$p"
	done
	return 0
}

filetxt_has_job() { # FILE JOBID
	grep -q "^JobId=$2 .*JobState=COMPLETED" "$1"
}

# run_filetxt_job SCRIPT DIR: submit, wait, check the filetxt record
run_filetxt_job() {
	local rig=$1 dir=$2 what=$3 id
	if ! id=$("$dir/bin/sbatch" --parsable --wrap 'echo hi'); then
		check "$what: sbatch" false
		return 0
	fi
	check "$what: job $id completes" "$rig" wait-job "$dir" "$id" 60
	check "$what: filetxt record of job $id" wait_for 10 "record of $id" filetxt_has_job "$dir/jobcomp.txt" "$id"
	check "$what: job $id output" grep -qx hi "$dir/out/slurm-$id.out"
}

# --- host ------------------------------------------------------------------

test_host() {
	local rig=$RIG_DIR/slurm-host.sh dir t0
	"$rig" install
	dir=$(mktemp -d /tmp/jk-rig-st-host.XXXX)
	CLEANUPS+=("'$rig' stop '$dir'")
	t0=$(now_ms)
	check "host cluster starts" "$rig" start "$dir" --jobcomp jobcomp/filetxt --jobcomp-loc "$dir/jobcomp.txt"
	log "host cluster start: $(($(now_ms) - t0)) ms"
	run_filetxt_job "$rig" "$dir" "22.05"
	t0=$(now_ms)
	check "restart-ctld" "$rig" restart-ctld "$dir"
	log "restart-ctld: $(($(now_ms) - t0)) ms"
	run_filetxt_job "$rig" "$dir" "22.05 after restart-ctld"
	local old
	old=$(read_pid "$dir/slurmctld.pid")
	check "kill9-ctld" "$rig" kill9-ctld "$dir"
	check "slurmctld gone after kill9" bash -c "! kill -0 $old 2>/dev/null || grep -q ' Z ' /proc/$old/stat"
	t0=$(now_ms)
	check "start-ctld after kill9" "$rig" start-ctld "$dir"
	log "start-ctld after kill -9 (node answering again): $(($(now_ms) - t0)) ms"
	run_filetxt_job "$rig" "$dir" "22.05 after kill9"
	# A running job when stopping: slurmstepd and the job must not survive.
	"$dir/bin/sbatch" --parsable --wrap 'sleep 600' >/dev/null
	wait_for 20 "sleep job running" bash -c "[[ \$('$dir/bin/squeue' -h -t R -o %i) ]]" || true
	t0=$(now_ms)
	check "stop" "$rig" stop "$dir"
	log "host cluster stop (one running job): $(($(now_ms) - t0)) ms"
	check "no process of the rig left" test -z "$(rig_pids "$dir")"
	check "no slurmstepd with the rig's files open" bash -c "! ls -l /proc/[0-9]*/fd 2>/dev/null | grep -q '$dir/'"
	cleanup
	rm -rf "$dir"
}

# --- chroot (SchedMD's jobcomp/kafka on 24.11.5) ---------------------------

test_chroot() {
	local rig=$RIG_DIR/slurm-chroot.sh t0 kdir name dir
	t0=$(now_ms)
	"$rig" build "$ROOT"
	log "chroot build (warm when cached): $(($(now_ms) - t0)) ms"
	check "chroot has Slurm 24.11.5" bash -c "[[ \$('$rig' version '$ROOT') == 24.11.5* ]]"
	kdir=$(mktemp -d /tmp/jk-rig-st-ktansu.XXXX)
	CLEANUPS+=("'$RIG_DIR/tansu.sh' stop '$kdir'; rm -rf '$kdir'")
	"$RIG_DIR/tansu.sh" start "$kdir" "$TANSU_PORT"
	name=st-$$-$RANDOM
	dir=$ROOT/rig/$name
	mkdir -p "$dir"
	CLEANUPS+=("'$rig' stop '$dir'; rm -rf '$dir'")
	printf '# librdkafka properties for SchedMD jobcomp/kafka\nbootstrap.servers=127.0.0.1:%s\n' "$TANSU_PORT" >"$dir/kafka.conf"
	local topic=jk-st-$RANDOM
	t0=$(now_ms)
	check "24.11 cluster with SchedMD jobcomp/kafka starts" "$rig" start "$ROOT" "$dir" \
		--jobcomp jobcomp/kafka --jobcomp-loc "$dir/kafka.conf" --jobcomp-params "topic=$topic" --debugflags JobComp
	log "chroot cluster start: $(($(now_ms) - t0)) ms"
	check "plugin loaded" grep -q 'jobcomp/kafka: init' "$dir/slurmctld.log"
	# Warm-up job: creates the topic (the consumer never creates it).
	local id
	id=$("$dir/bin/sbatch" --parsable --wrap true)
	"$rig" wait-job "$dir" "$id" 60 >/dev/null
	local py=$RIG_VENV/bin/python
	# ... and its record must be in before the measuring consumer starts.
	check "warm-up job's record read back" "$py" "$RIG_DIR/consume.py" --bootstrap "127.0.0.1:$TANSU_PORT" \
		--topic "$topic" --from-beginning --expect 1 --timeout 30 >/dev/null
	"$py" "$RIG_DIR/consume.py" --bootstrap "127.0.0.1:$TANSU_PORT" --topic "$topic" --expect "$LAT_JOBS" \
		--timeout 120 --recv-time --ready-file "$dir/ready" >"$dir/records.jsonl" 2>"$dir/consume.err" &
	local cpid=$!
	wait_for 30 "consumer ready" test -f "$dir/ready"
	local i ids=()
	for ((i = 0; i < LAT_JOBS; i++)); do
		# The job's last act is writing its end time (ms); then it ends.
		id=$("$dir/bin/sbatch" --parsable --wrap "echo job $i; date +%s%3N > out/end.\$SLURM_JOB_ID")
		"$rig" wait-job "$dir" "$id" 60 >/dev/null
		ids+=("$id")
	done
	local rc=0
	wait "$cpid" || rc=$?
	check "all $LAT_JOBS records read back from tansu" test "$rc" -eq 0
	check "records are valid JSON, one per job, state COMPLETED; latency report" \
		"$py" - "$dir/records.jsonl" "$dir/out" "${ids[@]}" <<-'EOF'
			import json, sys, os, statistics
			recs = [json.loads(l) for l in open(sys.argv[1])]
			outdir, ids = sys.argv[2], [int(x) for x in sys.argv[3:]]
			by_id, lat = {}, []
			for r in recs:
			    doc = json.loads(r["value"])
			    by_id[doc["jobid"]] = doc
			    end = int(open(os.path.join(outdir, "end.%d" % doc["jobid"])).read())
			    lat.append(r["recv_ms"] - end)
			ok = sorted(by_id) == sorted(ids) and all(d["state"] == "COMPLETED" for d in by_id.values())
			lat.sort()
			print("selftest: job end -> record visible (ms): min %d p50 %d max %d over %d jobs"
			      % (lat[0], statistics.median(lat), lat[-1], len(lat)), file=sys.stderr)
			sys.exit(0 if ok else 1)
		EOF
	t0=$(now_ms)
	check "chroot cluster stops" "$rig" stop "$dir"
	log "chroot cluster stop: $(($(now_ms) - t0)) ms"
	check "no process of the chroot rig left" test -z "$(rig_pids "$dir")"
	cleanup
	# The chroot is shared with the other suites' rigs (make test runs them
	# side by side): unmounted only when none of them runs there.
	"$rig" unmount "$ROOT" >/dev/null 2>&1 || log "chroot left mounted: other rigs run in it"
}

# --- auth: what works where ---------------------------------------------------

test_auth() {
	local rig dir a
	"$RIG_DIR/slurm-host.sh" install
	for a in none munge; do
		rig=$RIG_DIR/slurm-host.sh
		dir=$(mktemp -d /tmp/jk-rig-st-auth.XXXX)
		CLEANUPS+=("'$rig' stop '$dir'")
		check "22.05 auth/$a: starts" "$rig" start "$dir" --auth "$a" --jobcomp jobcomp/filetxt --jobcomp-loc "$dir/jobcomp.txt"
		if ((CHECK_OK)); then
			run_filetxt_job "$rig" "$dir" "22.05 auth/$a"
		fi
		cleanup
		rm -rf "$dir"
	done
	"$RIG_DIR/slurm-chroot.sh" build "$ROOT"
	for a in none munge slurm; do
		rig=$RIG_DIR/slurm-chroot.sh
		dir=$ROOT/rig/auth-$a-$$
		mkdir -p "$dir"
		CLEANUPS+=("'$rig' stop '$dir'; rm -rf '$dir'")
		check "24.11 auth/$a: starts" "$rig" start "$ROOT" "$dir" --auth "$a" --jobcomp jobcomp/filetxt --jobcomp-loc "$dir/jobcomp.txt"
		if ((CHECK_OK)); then
			run_filetxt_job "$rig" "$dir" "24.11 auth/$a"
		fi
		cleanup
	done
	"$RIG_DIR/slurm-chroot.sh" unmount "$ROOT" >/dev/null 2>&1 || log "chroot left mounted: other rigs run in it"
}

parts=("$@")
((${#parts[@]})) || parts=(kafka host chroot)
for part in "${parts[@]}"; do
	case $part in
	kafka | host | chroot | auth) log "=== $part ==="; "test_$part" ;;
	*) die "unknown part $part" ;;
	esac
done
echo "selftest: $PASSED passed, $FAILED failed"
((FAILED == 0))
