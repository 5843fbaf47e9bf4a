#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Runtime evidence of Slurm's struct layouts, for ci/check-headers.sh: run a
# known job mix under Debian's real slurmctld of RELEASE (in the cached Debian
# chroot of ci/rig/slurm-chroot.sh) with the probe plugin
# ci/headers/runtime-probe.c loaded as its jobcomp plugin, and keep what the
# plugin saw of every job record at job start and job end, plus what
# `scontrol show job` says of each job. ci/headers/runtime-layout.py then
# matches the two (member offsets, and sizeofs from xmalloc's size words).
#
# Usage: ci/headers/runtime-probe.sh RELEASE OUTDIR
#   RELEASE: 26.05.5 (Debian forky) or 24.11.5 (Debian trixie; a self-test of
#   the method against a release whose real headers are known).
#   OUTDIR receives dumps/NNNN-{start,end}.json (end only before 25.05), jobs.txt (scontrol show job
#   -o), sluids.txt, facts.json (what was submitted), PROVENANCE. ~12 s once the chroot
#   exists (building it takes ~30 s more).
#
# Needs root (chroot, bind mounts). Uses ports 47819/47820 and the rig
# directory ROOT/rig/headers-probe; adds a user jkprobe (4711) with groups
# jkprobeg (4712) and jkprobe2 (4713) to the chroot's /etc/passwd and /etc/group.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(cd "$HERE/../.." && pwd)
CHROOT_SH=$ROOT_DIR/ci/rig/slurm-chroot.sh
CACHE=${JK_CACHE:-/var/tmp/jobcomp-kafka}

(($# == 2)) || { echo "usage: $0 RELEASE OUTDIR" >&2; exit 2; }
rel=$1 out=$2
case $rel in
26.05.5) suite=forky ;;
24.11.5) suite=trixie ;;
*) echo "runtime-probe: no Debian chroot for Slurm $rel" >&2; exit 2 ;;
esac
log() { printf 'runtime-probe %s: %s\n' "$rel" "$*" >&2; }

root=$CACHE/chroot-$suite
SUITE=$suite "$CHROOT_SH" build "$root" >&2
have=$(cat "$root/.jk-rig-slurm-version")
[[ ${have%-*} == "$rel" ]] || { log "the $suite chroot has Slurm $have, not $rel"; exit 1; }

IFS=. read -r a b c <<<"$rel"
version=$(printf '0x%02x%02x%02x' "$((10#$a))" "$((10#$b))" "$((10#$c))")
dir=$root/rig/headers-probe
indir=/rig/headers-probe
work=$(mktemp -d "${TMPDIR:-/tmp}/jk-runtime-probe.XXXXXX")
cleanup() {
	local rc=$?
	if [[ -f $dir/rig.env ]]; then
		"$CHROOT_SH" stop "$dir" >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
	# The rig directory stays for inspection after a failure.
	((rc != 0)) || rm -rf "$dir"
}
trap cleanup EXIT

gcc -shared -fPIC -O1 -Wall -Wextra -Werror -DJK_VERSION_NUMBER="$version" \
	-o "$work/jobcomp_jkprobe.so" "$HERE/runtime-probe.c"

# A user with two groups, so that the identity's arrays are not trivial.
grep -q '^jkprobe:' "$root/etc/passwd" ||
	echo 'jkprobe:x:4711:4712:jobcomp-kafka layout probe:/tmp:/bin/sh' >>"$root/etc/passwd"
grep -q '^jkprobeg:' "$root/etc/group" || echo 'jkprobeg:x:4712:' >>"$root/etc/group"
grep -q '^jkprobe2:' "$root/etc/group" || echo 'jkprobe2:x:4713:jkprobe' >>"$root/etc/group"

if [[ -f $dir/rig.env ]]; then
	"$CHROOT_SH" stop "$dir" >/dev/null 2>&1 || true
fi
rm -rf "$dir"
mkdir -p "$dir/dumps"
# auth/slurm with use_client_ids: slurmctld then fills job_record.id (the
# identity) from the client, so that its members can be seen too.
JK_PROBE_DIR=$indir/dumps SUITE=$suite "$CHROOT_SH" start "$root" "$dir" --fresh \
	--ctld-port 47819 --slurmd-port 47820 --cluster jkprobe \
	--plugindir "$work" --jobcomp jobcomp/jkprobe --auth slurm \
	--conf "AuthInfo=keyfile=$indir/slurm.key,use_client_ids" \
	--conf FirstJobId=4711001 \
	--conf SlurmdParameters=config_overrides \
	--conf 'NodeName=localhost NodeAddr=127.0.0.1 CPUs=16 RealMemory=4000 Features=pfeata State=UNKNOWN' \
	--conf 'PartitionName=debug Nodes=localhost Default=YES MaxTime=123 State=UP OverSubscribe=FORCE:16' \
	>&2

run() { SLURM_CONF=$indir/slurm.conf chroot "$root" "$@"; }
as_user() { SLURM_CONF=$indir/slurm.conf chroot "$root" setpriv --reuid 4711 --regid 4712 --init-groups "$@"; }

# Jobs run for a while, so that a start time is not also an end time.
# A: root, batch, killed by signal 9; held so that B can depend on it.
A=$(run sbatch --parsable --hold --job-name=pNameA --time=11 -n1 -o /tmp/jkp-%j --chdir=/tmp --wrap 'sleep 2; kill -9 $$')
# B: the user, batch, many options, exit 3, explicit priority, admin comment.
B=$(as_user sbatch --parsable --job-name=pNameB --comment=pCommentB --time=7 --account=pacctb \
	--wckey=pwckb -n3 -c5 --ntasks-per-node=3 --constraint=pfeata -o /tmp/jkp-o-%j \
	-e /tmp/jkp-e-%j -i /dev/null --chdir=/tmp --dependency=afterany:"$A" --wrap 'sleep 1; exit 3')
run scontrol update JobId="$B" Priority=4242 AdminComment=pAdminB
run scontrol release "$A"
# C: the user, a two-task array.
C=$(as_user sbatch --parsable --array=5-6 --job-name=pNameC --time=17 -n1 -o /tmp/jkp-%A_%a --chdir=/tmp --wrap 'sleep 1')
# F: root, held, cancelled while pending a second later: never scheduled, so
# its start time (= end time, the cancel) differs from every scheduling time.
F=$(run sbatch --parsable --hold --job-name=pNameF --time=21 -n1 -o /tmp/jkp-%j --chdir=/tmp --wrap true)
sleep 1
run scancel "$F"
# (A heterogeneous job cannot run here: its components may not share the one
# node. het_job_id/het_job_offset are seen as 0/0 and in the binary evidence.)
deadline=$((SECONDS + 60))
until [[ -z $(run squeue -h -o %i) ]]; do
	((SECONDS < deadline)) || { run squeue >&2; log "jobs did not finish in 60 s"; exit 1; }
	sleep 0.2
done
# E: root, interactive (batch_flag 0), in a reservation.
run scontrol create reservation ReservationName=pResvE StartTime=now Duration=10 Users=root \
	Nodes=localhost Flags=ignore_jobs >/dev/null
run srun --reservation=pResvE --job-name=pNameE --time=13 -n2 sleep 1
sleep 0.5

mkdir -p "$out.tmp"
rm -rf "${out:?}.tmp"/*
run scontrol show job -o >"$out.tmp/jobs.txt"
# The SLUID of each job as slurmctld logs it at submission.
grep -o 'JobId=[0-9]* SLUID=s[0-9A-Z]*' "$dir/slurmctld.log" >"$out.tmp/sluids.txt" || true
cp "$dir"/dumps/*.json "$out.tmp/" 2>/dev/null || true
mkdir -p "$out.tmp/dumps"
mv "$out.tmp"/*.json "$out.tmp/dumps/"
cat >"$out.tmp/facts.json" <<EOF
{"release": "$rel",
 "partition": {"name": "debug", "max_time": 123},
 "users": {"root": {"uid": 0, "gids": [0], "groups": ["root"]},
           "jkprobe": {"uid": 4711, "gids": [4713, 4712], "groups": ["jkprobe2", "jkprobeg"]}},
 "submitted": {
   "pNameA": {"std_out": "/tmp/jkp-%j", "std_in": "/dev/null"},
   "pNameB": {"std_out": "/tmp/jkp-o-%j", "std_err": "/tmp/jkp-e-%j", "std_in": "/dev/null",
              "orig_dependency": "afterany:$A", "wckey": "pwckb", "ntasks_per_node": 3},
   "pNameC": {"std_out": "/tmp/jkp-%A_%a", "std_in": "/dev/null"}}}
EOF
echo "Debian $suite slurmctld $have running ci/headers/runtime-probe.c ($(date -u +%Y-%m-%d))" >"$out.tmp/PROVENANCE"
n=$(find "$out.tmp/dumps" -name '*.json' | wc -l)
((n >= 6)) || { log "only $n dumps (see $dir/slurmctld.log)"; exit 1; }
rm -rf "$out"
mv "$out.tmp" "$out"
log "$n job record dumps in $out"
