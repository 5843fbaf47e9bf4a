#!/usr/bin/env bash
# Slurm single-node cluster in a Debian chroot on this host: Slurm 24.11.5
# (Debian trixie, the default) or, with SUITE=forky, Slurm 26.05.5 (Debian forky).
#
# Usage:
#   slurm-chroot.sh build [ROOT]       debootstrap SUITE + Slurm + SchedMD's kafka
#                                      plugin + kcat + libslurm-dev (one time per
#                                      machine; no-op when ROOT is complete)
#   slurm-chroot.sh start ROOT DIR [OPTIONS]
#                                      (builds ROOT first when needed)
#                                      start slurmctld + slurmd inside ROOT; DIR must
#                                      lie inside ROOT (e.g. ROOT/rig/NAME); OPTIONS as
#                                      slurm-host.sh, default ports 26817/26818
#                                      (forky: 47817/47818)
#   slurm-chroot.sh stop DIR           scontrol shutdown, then kill leftovers by PID
#   slurm-chroot.sh restart-ctld DIR   stop slurmctld by PID (SIGTERM) and start it again
#   slurm-chroot.sh kill9-ctld DIR     SIGKILL slurmctld (crash test); start-ctld brings it back
#   slurm-chroot.sh start-ctld DIR     start slurmctld again with the same slurm.conf
#   slurm-chroot.sh env DIR            print `export PATH=DIR/bin:...` (wrappers that run
#                                      sbatch/squeue/scontrol/... inside ROOT for this cluster)
#   slurm-chroot.sh run DIR CMD...     run CMD inside ROOT with SLURM_CONF of this cluster
#   slurm-chroot.sh wait-job DIR JOBID [TIMEOUT_S]   wait until the job has ended
#   slurm-chroot.sh status DIR         print daemon PIDs / liveness
#   slurm-chroot.sh mount ROOT | unmount ROOT   bind mounts /proc /sys /dev /dev/pts /dev/shm
#                                      (start mounts them; unmount refuses while a rig runs)
#   slurm-chroot.sh version [ROOT]     print the Slurm version installed in ROOT
#
# SUITE=trixie|forky (environment; default trixie; JK_CHROOT_SUITE is the older
# spelling) picks the Debian suite: ROOT defaults to
# /var/tmp/jobcomp-kafka/chroot-SUITE. Without SUITE, a ROOT that holds (or is
# named for) a forky chroot is taken as forky. The commands that take DIR find
# ROOT in DIR/rig.env, so they need no SUITE. The host's loopback is shared with the
# chroot, so a broker started on the host (tansu.sh) is reachable at 127.0.0.1
# from the plugin inside.
set -euo pipefail
RIG_NAME=slurm-chroot
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
. "$RIG_LIB_DIR/slurm.sh"

# set_suite SUITE: everything that depends on the Debian suite.
set_suite() {
	SUITE=$1
	case $SUITE in
	trixie) EXPECTED_SLURM=24.11.5 DEFAULT_CTLD_PORT=26817 DEFAULT_SLURMD_PORT=26818 ;;
	forky) EXPECTED_SLURM=26.05.5 DEFAULT_CTLD_PORT=47817 DEFAULT_SLURMD_PORT=47818 ;;
	*) die "SUITE must be trixie or forky, not '$SUITE'" ;;
	esac
	# bookworm's debootstrap has no script for suites newer than trixie: those
	# are bootstrapped with the sid script (same layout).
	DEBOOTSTRAP_SCRIPT=()
	[[ -e /usr/share/debootstrap/scripts/$SUITE ]] || DEBOOTSTRAP_SCRIPT=(/usr/share/debootstrap/scripts/sid)
	MARKER_CONTENT="$SUITE ${CHROOT_PACKAGES[*]}"
}
SUITE_GIVEN=${SUITE:-${JK_CHROOT_SUITE:-}}
MIRROR=${JK_CHROOT_MIRROR:-http://deb.debian.org/debian}
CHROOT_PACKAGES=(slurmctld slurmd slurm-client munge kcat slurm-wlm-kafka-plugin libslurm-dev)
BIND_MOUNTS=(proc sys dev dev/pts dev/shm)
# Marker content (set_suite): a changed package list rebuilds the chroot.
set_suite "${SUITE_GIVEN:-trixie}"
DEFAULT_ROOT=$RIG_CACHE/chroot-$SUITE

# suite_for_root ROOT: without SUITE in the environment, a ROOT that already
# holds a chroot of another suite (its marker), or is named chroot-<suite>,
# selects that suite; with SUITE, such a ROOT is refused rather than rebuilt
# (it would be wiped).
suite_for_root() {
	local root=$1 have=""
	[[ -f $root/.jk-rig-complete ]] && have=$(awk '{ print $1; exit }' "$root/.jk-rig-complete")
	[[ $have == trixie || $have == forky ]] || have=""
	if [[ -z $have ]]; then
		case ${root##*/} in chroot-trixie) have=trixie ;; chroot-forky) have=forky ;; esac
	fi
	[[ -n $have && $have != "$SUITE" ]] || return 0
	[[ -z $SUITE_GIVEN ]] || die "$root holds (or is named for) a $have chroot, not $SUITE: unset SUITE or use another ROOT"
	set_suite "$have"
}

is_mounted() {
	local target
	target=$(realpath -m "$1")
	awk -v t="$target" '$5 == t { found = 1 } END { exit !found }' /proc/self/mountinfo
}

do_mount() {
	local root=$1 m
	for m in "${BIND_MOUNTS[@]}"; do
		mkdir -p "$root/$m"
		is_mounted "$root/$m" || mount --bind "/$m" "$root/$m"
	done
}

do_unmount() {
	local root=$1 i m
	for ((i = ${#BIND_MOUNTS[@]} - 1; i >= 0; i--)); do
		m=${BIND_MOUNTS[i]}
		if is_mounted "$root/$m"; then
			umount "$root/$m" 2>/dev/null || umount -l "$root/$m"
		fi
	done
	# Nothing of ours may stay mounted under ROOT (rm -rf would walk into it).
	if awk -v r="$(realpath -m "$root")/" 'index($5, r) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
		die "something is still mounted under $root"
	fi
}

# running_rigs ROOT: rig directories under ROOT with a live daemon.
running_rigs() {
	local root=$1 d
	for d in "$root"/rig/*/; do
		[[ -f $d/rig.env ]] || continue
		if pidfile_alive "$d/slurmctld.pid" || pidfile_alive "$d/slurmd.pid" || pidfile_alive "$d/munge/munged.pid"; then
			echo "${d%/}"
		fi
	done
}

_build() {
	local root=$1
	if [[ -f $root/.jk-rig-complete && $(cat "$root/.jk-rig-complete") == "$MARKER_CONTENT" ]]; then
		log "chroot $root is complete ($(cat "$root/.jk-rig-slurm-version" 2>/dev/null))"
		return 0
	fi
	if [[ -e $root ]]; then
		[[ -z $(running_rigs "$root") ]] || die "half-built $root has running rigs"
		log "removing incomplete $root"
		do_unmount "$root"
		rm -rf --one-file-system "$root"
	fi
	local t0
	t0=$(now_ms)
	mkdir -p "$(dirname "$root")"
	log "debootstrap --variant=minbase $SUITE $root $MIRROR ${DEBOOTSTRAP_SCRIPT[*]}"
	if ! debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" "${DEBOOTSTRAP_SCRIPT[@]}" >"$root.debootstrap.log" 2>&1; then
		log "debootstrap failed (see $root.debootstrap.log); retrying once"
		rm -rf --one-file-system "$root"
		debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" "${DEBOOTSTRAP_SCRIPT[@]}" >"$root.debootstrap.log" 2>&1 ||
			die "debootstrap failed twice; see $root.debootstrap.log"
	fi
	log "debootstrap done in $(($(now_ms) - t0)) ms"
	# Package scripts must not try to start services.
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 0755 "$root/usr/sbin/policy-rc.d"
	cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
	# An interrupted build leaves no mounts behind (the next build then
	# finds no marker and starts over).
	trap 'do_unmount "$root" || true' EXIT
	trap 'exit 143' TERM INT
	do_mount "$root"
	log "apt-get install in the chroot (output in $root.build.log)"
	{
		chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q update
		apt_install --chroot "$root" "${CHROOT_PACKAGES[@]}"
	} >"$root.build.log" 2>&1 || { tail -n 30 "$root.build.log" >&2; die "package installation in $root failed"; }
	mkdir -p "$root/etc/slurm"
	# No cgroup filesystem here: slurmd must not try to use one.
	echo 'CgroupPlugin=disabled' >"$root/etc/slurm/cgroup.conf"
	cp /etc/hosts "$root/etc/hosts"
	grep -qw localhost "$root/etc/hosts" || echo '127.0.0.1 localhost' >>"$root/etc/hosts"
	chroot "$root" apt-get clean
	do_unmount "$root"
	trap - EXIT TERM INT
	chroot "$root" dpkg-query -W -f='${Version}' slurmctld >"$root/.jk-rig-slurm-version"
	echo "$MARKER_CONTENT" >"$root/.jk-rig-complete"
	log "chroot $root built in $(($(now_ms) - t0)) ms: slurm $(cat "$root/.jk-rig-slurm-version")"
}

cmd_build() {
	local root
	root=$(realpath -m "${1:-$DEFAULT_ROOT}")
	suite_for_root "$root"
	apt_install debootstrap
	with_lock "$root.lock" _build "$root"
	local v
	v=$(cat "$root/.jk-rig-slurm-version")
	[[ $v == "$EXPECTED_SLURM"* ]] || log "WARNING: $SUITE now ships Slurm $v, not $EXPECTED_SLURM"
}


cmd_start() {
	(($# >= 2)) || die "usage: $0 start ROOT DIR [OPTIONS]"
	local root dir
	root=$(realpath -m "$1")
	# Builds (once per machine) or just checks the marker (~0.1 s).
	cmd_build "$root"
	dir=$(abs_dir "$2")
	shift 2
	[[ $dir == "$root"/* ]] || die "DIR ($dir) must lie inside ROOT ($root)"
	do_mount "$root"
	# minbase has no /etc/hosts: "localhost" (SlurmctldHost, NodeName) must
	# resolve inside, and so must this machine's hostname.
	cmp -s /etc/hosts "$root/etc/hosts" || cp /etc/hosts "$root/etc/hosts"
	grep -qw localhost "$root/etc/hosts" || echo '127.0.0.1 localhost' >>"$root/etc/hosts"
	# slurmd reads cgroup.conf from slurm.conf's directory; there is no cgroup
	# filesystem here.
	echo 'CgroupPlugin=disabled' >"$dir/cgroup.conf"
	slurm_start --chroot "$root" "$dir" --ctld-port "$DEFAULT_CTLD_PORT" --slurmd-port "$DEFAULT_SLURMD_PORT" "$@"
}

cmd_unmount() {
	local root
	root=$(realpath -m "${1:-$DEFAULT_ROOT}")
	local running
	running=$(running_rigs "$root")
	[[ -z $running ]] || die "rigs still running in $root: $running (stop them first)"
	do_unmount "$root"
	log "unmounted $root"
}

cmd=${1:-}
(($#)) && shift
case $cmd in
build) cmd_build "$@" ;;
start) cmd_start "$@" ;;
mount) do_mount "$(realpath -m "${1:-$DEFAULT_ROOT}")" ;;
unmount) cmd_unmount "$@" ;;
version) cat "$(realpath -m "${1:-$DEFAULT_ROOT}")/.jk-rig-slurm-version"; echo ;;
stop | restart-ctld | kill9-ctld | start-ctld | env | run | wait-job | status)
	slurm_command "$cmd" "$@" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
