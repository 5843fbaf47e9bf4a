#!/usr/bin/env bash
# make bench: the plugin's benchmarks; results in bench/results/ (RESULTS.md,
# bench.png, raw/*.json). See bench/README.md for what each part measures.
# docs/performance.md shows how to run a subset (BENCH_CTLD_RUNS, BENCH_INPROC_SCENARIOS).
#
# Usage: ci/bench.sh [PART...]      (after `make build`; `make bench` does both)
#   PART: inproc  in-process host, broker up / down / slow, one core (+ a perf
#                 profile), paced at 200 / 10 / 100 / 1000 records/s
#                 and librdkafka alone on the same core (rdk-alone)
#         scale   in-process, broker down, 10k / 100k / 1M records; a 1M backlog
#                 drained once a broker comes up, and librdkafka alone for 1M
#         ctld    real slurmctld with the timing shim: SchedMD's plugin vs ours
#                 (24.11.5 chroot), ours on the 22.05.8 host in plaintext and over
#                 TLS (stunnel in front of a second tansu); end-to-end latency;
#                 slurmctld idle for 60 s, CPU and wake-ups per thread
#         kafka   issue #25's slurmctld and one-core figures again with Apache
#                 Kafka 4.x (ci/rig/kafka.sh, one node) as the broker: SchedMD's
#                 plugin vs ours in slurmctld (24.11.5 chroot), the pipeline on
#                 one core and librdkafka alone; results in raw/kafka/ and a
#                 table of their own in the report
#   BENCH_CTLD_RUNS="..."  only these run_ctld.py runs (default: all of them)
#   BENCH_INPROC_SCENARIOS="..."  only these run_inproc.py scenarios of inproc
#   BENCH_KAFKA_CTLD_RUNS="..."  the run_ctld.py runs of kafka (default:
#                        chroot-schedmd chroot-ours)
#   BENCH_KAFKA_INPROC_SCENARIOS="..."  its run_inproc.py scenarios (default:
#                        onecore rdk-alone)
#   Default: all four, then the report.
# Environment:
#   BENCH_TASKS=N        job array tasks per slurmctld configuration (default 2000, in 4
#                        interleaved rounds)
#   BENCH_SCALE=F        multiply the in-process record counts (quick trials: 0.1)
#   BENCH_PORT=P         first port tried for tansu (default 59092)
#   BENCH_WORK=DIR       scratch directory (default /tmp/jk-bench-work)
# Ports: tansu 59092+, the TLS tansu/stunnel 10/11 above it, the backlog's late
# tansu 20 above it (another free port if taken), Apache Kafka 59140/59141,
# host cluster 56817/56818, chroot cluster 57817/57818.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
RIG_NAME=bench
. ci/lib/common.sh

t_start=$(date +%s)
parts=("$@")
((${#parts[@]})) || parts=(inproc scale ctld kafka)
want() { local p; for p in "${parts[@]}"; do [[ $p == "$1" ]] && return 0; done; return 1; }

work=${BENCH_WORK:-/tmp/jk-bench-work}
results=$repo/bench/results
raw=$results/raw
host_version=${SLURM_VERSION:-$(ci/slurm-version.sh)}
[[ -n $host_version ]] || die "no Slurm headers installed (libslurm-dev): run make deps"
host_so=$repo/build/slurm-$host_version/jobcomp_kafka.so
[[ -f $host_so ]] || die "$host_so is missing: run make build (make bench does)"
chroot_root=$RIG_CACHE/chroot-trixie

rm -rf "$work"
mkdir -p "$work" "$raw"

# --- tools -------------------------------------------------------------------
ensure_venv
py=$RIG_VENV/bin/python
if ! "$py" -c 'import matplotlib, numpy' 2>/dev/null; then
	log "installing matplotlib into $RIG_VENV"
	"$py" -m pip install -q --disable-pip-version-check matplotlib >&2
fi

# Our plugin, snapshotted: others may rebuild build/ while we run.
cp "$host_so" "$work/ours-$host_version.so"
if want inproc || want scale || want kafka; then
	# librdkafka alone (rdk-alone*): the plugin's producer without the plugin.
	nice -n 10 cargo build --release --quiet --example rdk_alone
	cp target/release/examples/rdk_alone "$work/rdk_alone"
fi
if want ctld || want kafka; then
	# The 24.11.5 build gets its own cargo target directory, so that it does
	# not flip the shared target/ between releases under other users' feet.
	log "building the plugin for 24.11.5 (separate target dir; first time ~2 min)"
	CARGO_TARGET_DIR=$RIG_CACHE/bench-target/plugin \
		make --no-print-directory build SLURM_VERSION=24.11.5 \
		PROFILE_DIR="$RIG_CACHE/bench-target/plugin/release" >"$work/build-24.11.5.log" 2>&1 ||
		{ tail -n 30 "$work/build-24.11.5.log" >&2; die "build for 24.11.5 failed"; }
	cp build/slurm-24.11.5/jobcomp_kafka.so "$work/ours-24.11.5.so"
	ci/rig/slurm-chroot.sh build "$chroot_root"
	cc -O2 -g -Wall -Wextra -Werror -shared -fPIC -o "$work/jobcomp_timing.so" bench/shim/jobcomp_timing.c -ldl
fi

# --- broker --------------------------------------------------------------------
tansu_dir=$work/tansu
tls_dir=$work/tls
kafka_dir=$work/kafka
cleanup() {
	trap - EXIT INT TERM
	ci/rig/kafka.sh stop "$kafka_dir" >/dev/null 2>&1 || true
	ci/rig/tansu.sh stop "$tansu_dir" >/dev/null 2>&1 || true
	ci/rig/tls.sh stop "$tls_dir" >/dev/null 2>&1 || true
	ci/rig/tansu.sh stop "$tls_dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
port=${BENCH_PORT:-59092}
started=0
# A port in the ephemeral range can be taken for a moment by an outgoing
# connection: try a few.
for p in "$port" $((port + 1)) $((port + 2)) $((port + 3)); do
	if ci/rig/tansu.sh start "$tansu_dir" "$p" >"$work/tansu-start.log" 2>&1; then
		port=$p started=1
		break
	fi
	rm -f "$tansu_dir/tansu.pid"
done
((started)) || { cat "$work/tansu-start.log" >&2; die "tansu did not start on ports $port..$((port + 3))"; }
tansu=127.0.0.1:$port
tls_args=()
if want ctld; then
	# A second tansu behind Debian's stunnel4 (TLS, certificates made by
	# openssl) for host-ours-tls: what TLS costs, next to host-ours.
	ci/rig/tls.sh certs "$work/certs" >/dev/null 2>&1
	tls_plain=$((port + 10)) tls_port=$((port + 11))
	ci/rig/tansu.sh start "$tls_dir" "$tls_plain" "$tls_port" >>"$work/tansu-start.log" 2>&1 ||
		die "tansu for TLS did not start on $tls_plain"
	ci/rig/tls.sh start "$tls_dir" "$tls_port" "$tls_plain" "$work/certs/server.pem" "$work/certs/server.key"
	tls_args=(--tansu-tls "127.0.0.1:$tls_port" --tls-ca "$work/certs/ca.pem")
fi

# --- runs ----------------------------------------------------------------------
scale=${BENCH_SCALE:-1}
if want inproc; then
	if [[ -z ${BENCH_INPROC_SCENARIOS:-} ]]; then
		rm -f "$raw"/inproc-{up,down,slow,onecore,script100k,paced-up,paced-down,paced-slow,up-metrics,paced-up-metrics}.json \
			"$raw"/inproc-{paced-10,paced-100,paced-1000,onecore-perf,rdk-alone}.json "$raw"/inproc-onecore-perf.perf.txt
	fi
	read -ra scenarios <<<"${BENCH_INPROC_SCENARIOS:-up up-metrics down slow onecore paced-up paced-up-metrics paced-down \
paced-slow paced-10 paced-100 paced-1000 script100k onecore-perf rdk-alone}"
	"$py" bench/run_inproc.py --plugin "$work/ours-$host_version.so" --release "$host_version" \
		--work "$work/inproc" --out "$raw" --tansu "$tansu" --records-scale "$scale" --rounds 4 \
		--rdk-alone "$work/rdk_alone" "${scenarios[@]}"
fi
if want ctld; then
	[[ -n ${BENCH_CTLD_RUNS:-} ]] || rm -f "$raw"/ctld-*.json
	tasks=${BENCH_TASKS:-2000}
	read -ra runs <<<"${BENCH_CTLD_RUNS:-chroot-schedmd chroot-ours host-ours host-ours-tls chroot-ours-linger5 chroot-ours-tick2 \
chroot-ours-tick40 chroot-schedmd-linger0 chroot-schedmd-fast chroot-ours-fast chroot-schedmd-idle chroot-ours-idle}"
	"$py" bench/run_ctld.py --tansu "$tansu" "${tls_args[@]}" --shim "$work/jobcomp_timing.so" --out "$raw" \
		--ours-2205 "$work/ours-$host_version.so" --ours-2411 "$work/ours-24.11.5.so" --tasks "$tasks" --rounds 4 \
		"${runs[@]}"
fi
if want kafka; then
	# The same figures with Apache Kafka itself as the broker (issue #25):
	# one KRaft node, heap as the suites give theirs, on loopback like tansu.
	kafka_port=${BENCH_KAFKA_PORT:-59140}
	kafka_t0=$(date +%s) kafka_load0=$(cut -d' ' -f1 /proc/loadavg)
	ci/rig/kafka.sh start "$kafka_dir" --port "$kafka_port" --heap 512m >"$work/kafka-start.log" 2>&1 ||
		{ tail -n 20 "$work/kafka-start.log" >&2; die "Apache Kafka did not start on $kafka_port"; }
	mkdir -p "$raw/kafka"
	# A subset (BENCH_KAFKA_*="..."; " " for none) keeps the other results.
	read -ra scenarios <<<"${BENCH_KAFKA_INPROC_SCENARIOS:-onecore rdk-alone}"
	[[ -n ${BENCH_KAFKA_INPROC_SCENARIOS:-} ]] || rm -f "$raw"/kafka/inproc-*.json
	((${#scenarios[@]} == 0)) ||
		"$py" bench/run_inproc.py --plugin "$work/ours-$host_version.so" --release "$host_version" \
			--work "$work/inproc-kafka" --out "$raw/kafka" --tansu "127.0.0.1:$kafka_port" --records-scale "$scale" \
			--rounds 4 --rdk-alone "$work/rdk_alone" "${scenarios[@]}"
	read -ra runs <<<"${BENCH_KAFKA_CTLD_RUNS:-chroot-schedmd chroot-ours}"
	[[ -n ${BENCH_KAFKA_CTLD_RUNS:-} ]] || rm -f "$raw"/kafka/ctld-*.json
	((${#runs[@]} == 0)) ||
		"$py" bench/run_ctld.py --tansu "127.0.0.1:$kafka_port" --shim "$work/jobcomp_timing.so" --out "$raw/kafka" \
			--ours-2205 "$work/ours-$host_version.so" --ours-2411 "$work/ours-24.11.5.so" \
			--tasks "${BENCH_TASKS:-2000}" --rounds 4 "${runs[@]}"
	kafka_version=$(cat "$kafka_dir/version")
	ci/rig/kafka.sh stop "$kafka_dir" >/dev/null 2>&1 || true
	# When and on what this part ran: the report prints it beside the table
	# (a partial run of make bench keeps the other parts' raw results).
	"$py" - "$raw/kafka/broker.json" <<EOF
import json, sys
json.dump({
    "version": "$kafka_version",
    "date": "$(date -u -d "@$kafka_t0" '+%Y-%m-%d %H:%M UTC')",
    "wall_s": $(($(date +%s) - kafka_t0)),
    "commit": "$(git rev-parse --short HEAD)",
    "load_average": ["$kafka_load0", "$(cut -d' ' -f1 /proc/loadavg)"],
}, open(sys.argv[1], "w"))
EOF
fi
if want scale; then
	rm -f "$raw"/inproc-scale-*.json "$raw"/inproc-backlog-*.json
	"$py" bench/run_inproc.py --plugin "$work/ours-$host_version.so" --release "$host_version" \
		--work "$work/inproc" --out "$raw" --records-scale "$scale" --timeout 900 --drain-port $((port + 20)) \
		--tansu "$tansu" --rdk-alone "$work/rdk_alone" scale-10k scale-100k scale-1m spool-full backlog-1m rdk-alone-1m
fi

# What a thread wake-up costs here (the floor under CPU per record), every run:
# a few seconds, and the report explains the CPU target with it.
cc -O2 -pthread -o "$work/wakeup_cost" bench/wakeup_cost.c
"$work/wakeup_cost" >"$raw/wakeup.json"

# --- report --------------------------------------------------------------------
sha() { [[ -f $1 ]] && sha256sum "$1" | cut -d' ' -f1 || echo n/a; }
dirty=$(git status --porcelain -- src Cargo.toml Cargo.lock build.rs slurm-headers 2>/dev/null | wc -l)
wall=$(($(date +%s) - t_start))
model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_gib=$(awk '/^MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
virt=$(grep -q firecracker /proc/1/cmdline 2>/dev/null && echo "Firecracker microVM" || echo "virtual machine")
schedmd_rdkafka=$(chroot "$chroot_root" dpkg-query -W -f='${Version}' librdkafka1 2>/dev/null || echo '?')
"$py" - "$work/meta.json" <<EOF
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "wall": "$((wall / 60)) min $((wall % 60)) s (parts: ${parts[*]})",
    "machine": "$(nproc) vCPUs ($model), ${mem_gib} GiB RAM, $virt, Linux $(uname -r) guest kernel; shared with other jobs during the run",
    "commit": "$(git rev-parse --short HEAD)" + (" + uncommitted changes in src/ ($dirty files)" if $dirty else ""),
    "sha_2205": "$(sha "$work/ours-$host_version.so")",
    "sha_2411": "$(sha "$work/ours-24.11.5.so")",
    "schedmd_librdkafka": "$schedmd_rdkafka",
}, open(sys.argv[1], "w"))
EOF
"$py" bench/report.py --raw "$raw" --out "$results" --meta "$work/meta.json"
# The workloads' script trees (500 MB of 100 KiB scripts); logs stay in $work.
rm -rf "$work"/inproc/state-*
log "results: $results/RESULTS.md and $results/bench.png (took $((wall / 60)) min $((wall % 60)) s)"
