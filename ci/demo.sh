#!/usr/bin/env bash
# make demo: a throwaway single-node Slurm (the host's release) and a Kafka
# broker (tansu) in a temporary directory, our plugin loaded by slurmctld, a
# handful of jobs, and each job's record shown as it arrives. Everything is
# stopped at the end, also on Ctrl-C.
#
# Usage: ci/demo.sh   (after `make build`; `make demo` does both). Exits 1 when
# not every job's record arrived within 60 s of the jobs' end.
# Environment: DEMO_KAFKA_PORT (default 39092), DEMO_CTLD_PORT (36917), DEMO_SLURMD_PORT (36918)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
version=${SLURM_VERSION:-$(ci/slurm-version.sh)}
plugin="$repo/build/slurm-$version/jobcomp_kafka.so"
[ -f "$plugin" ] || { echo "demo: $plugin is missing: run make build first" >&2; exit 2; }

kafka_port=${DEMO_KAFKA_PORT:-39092}
ctld_port=${DEMO_CTLD_PORT:-36917}
slurmd_port=${DEMO_SLURMD_PORT:-36918}
topic=demo-jobs
dir=$(mktemp -d /tmp/jobcomp-kafka-demo.XXXXXX)
chmod 0755 "$dir"
follower=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
	trap - EXIT INT TERM
	[ -n "$follower" ] && kill "$follower" 2>/dev/null && wait "$follower" 2>/dev/null
	ci/rig/slurm-host.sh stop "$dir/slurm" >/dev/null 2>&1 || true
	ci/rig/tansu.sh stop "$dir/kafka" >/dev/null 2>&1 || true
	say "stopped; logs kept in $dir (slurm/slurmctld.log)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting a Kafka broker (tansu) on 127.0.0.1:$kafka_port"
ci/rig/tansu.sh start "$dir/kafka" "$kafka_port" >/dev/null

mkdir -p "$dir/plugins"
cp "$plugin" "$dir/plugins/jobcomp_kafka.so"
cat >"$dir/jobcomp_kafka.conf" <<EOF
# librdkafka properties (JobCompLoc)
bootstrap.servers=127.0.0.1:$kafka_port
linger.ms=5
EOF

say "starting Slurm $version (slurmctld + slurmd) with JobCompType=jobcomp/kafka"
ci/rig/slurm-host.sh start "$dir/slurm" --cluster demo \
	--ctld-port "$ctld_port" --slurmd-port "$slurmd_port" \
	--plugindir "$dir/plugins" --jobcomp jobcomp/kafka \
	--jobcomp-loc "$dir/jobcomp_kafka.conf" \
	--jobcomp-params "topic=$topic,poll_interval=1" >/dev/null
grep -E 'jobcomp/kafka' "$dir/slurm/slurmctld.log" | sed 's/^/  /' || true
eval "$(ci/rig/slurm-host.sh env "$dir/slurm")"

python=$(ci/rig/tansu.sh python)
say "records on topic $topic, as they arrive:"
"$python" ci/rig/consume.py --bootstrap "127.0.0.1:$kafka_port" --topic "$topic" \
	--from-beginning --follow 2>/dev/null &
follower=$!

jobs=()
submit() { jobs+=("$(sbatch --parsable "$@")"); }
submit -J hello --wrap 'echo hello from $SLURM_JOB_ID'
submit -J 'fails with 3' --wrap 'exit 3'
submit -J killed --wrap 'kill -9 $$'
submit -J 'a "quoted"/name' --comment 'not sent before 26.05' --wrap 'true'
submit -J array --array=1-3 --wrap 'sleep 1'
held=$(sbatch --parsable --hold -J cancelled --wrap true)
scancel "$held"
expected=8

for id in "${jobs[@]}"; do ci/rig/slurm-host.sh wait-job "$dir/slurm" "${id%%;*}" 120 >/dev/null; done
status=0
"$python" ci/rig/consume.py --bootstrap "127.0.0.1:$kafka_port" --topic "$topic" \
	--from-beginning --expect "$expected" --timeout 60 >/dev/null 2>&1 ||
	status=1
sleep 1
# make test runs the demo as well (docs/README's "Two commands"): a demo whose
# records did not arrive fails.
if ((status == 0)); then
	say "all $expected records arrived"
else
	say "FAILED: not all $expected records arrived (see $dir/slurm/slurmctld.log)"
fi
exit "$status"
