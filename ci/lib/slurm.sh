# Single-node Slurm cluster control shared by ci/rig/slurm-host.sh (the host's
# Slurm) and ci/rig/slurm-chroot.sh (Slurm inside a Debian chroot). Source
# after common.sh.
#
# A cluster lives in one directory DIR (an absolute host path; for a chroot it
# lies inside ROOT and the daemons see it as DIR without the ROOT prefix):
#   DIR/rig.env          what `start` chose (kind, root, ports, auth, ...)
#   DIR/slurm.conf       the configuration (paths as the daemons see them)
#   DIR/state/           StateSaveLocation      DIR/spool/  SlurmdSpoolDir
#   DIR/slurmctld.pid    the PID we launched (SlurmctldPidFile is DIR/slurmctld.daemon.pid)
#   DIR/slurmd.pid       the PID we launched (SlurmdPidFile is DIR/slurmd.daemon.pid)
#   DIR/slurmctld.log    DIR/slurmd.log (SlurmctldDebug=verbose)
#   DIR/*.stderr         the daemons' stdout/stderr
#   DIR/bin/             wrappers (sbatch, squeue, scontrol, ...) bound to DIR
#   DIR/out/             default batch job output (slurm-%j.out)
#   DIR/munge/           private munged (only with --auth munge)
# Every process the rig starts carries JK_RIG_DIR=DIR in its environment, so
# `stop` can find leftovers (slurmstepd, job processes) and end them by PID.

SLURM_SYSTEM_PLUGINDIR=/usr/lib/x86_64-linux-gnu/slurm-wlm
SLURM_CLIENTS=(sbatch srun salloc squeue scontrol sinfo scancel sacct sacctmgr sprio sshare sstat sdiag)

# --- context -------------------------------------------------------------
# RIG_KIND host|chroot; RIG_ROOT (chroot only); RIG_HOSTDIR (DIR as the host
# sees it); RIG_INDIR (DIR as the daemons see it).

_in_path() { # host path -> path as seen by the daemons
	if [[ $RIG_KIND == chroot ]]; then
		[[ $1 == "$RIG_ROOT"/* ]] || die "$1 is not inside $RIG_ROOT"
		echo "${1#"$RIG_ROOT"}"
	else
		echo "$1"
	fi
}

# _run CMD...: run CMD where the daemons live (host, or chrooted into ROOT)
# with this cluster's SLURM_CONF and the rig marker in the environment.
_run() {
	if [[ $RIG_KIND == chroot ]]; then
		JK_RIG_DIR=$RIG_HOSTDIR SLURM_CONF=$RIG_INDIR/slurm.conf chroot "$RIG_ROOT" "$@"
	else
		JK_RIG_DIR=$RIG_HOSTDIR SLURM_CONF=$RIG_HOSTDIR/slurm.conf "$@"
	fi
}

_load_rig() { # DIR -> sets the context from DIR/rig.env
	[[ -n ${1:-} ]] || die "missing DIR"
	local dir
	dir=$(cd "$1" 2>/dev/null && pwd) || die "no such rig directory: $1"
	[[ -f $dir/rig.env ]] || die "$dir/rig.env missing (not started with slurm-host.sh/slurm-chroot.sh)"
	# shellcheck disable=SC1091
	. "$dir/rig.env"
}

# --- slurm.conf ------------------------------------------------------------

_write_conf() {
	local d=$RIG_INDIR plugindir=$SLURM_SYSTEM_PLUGINDIR
	[[ -n $OPT_PLUGINDIR ]] && plugindir+=":$OPT_PLUGINDIR"
	{
		echo "# Written by ci/rig ($RIG_KIND rig) for $RIG_HOSTDIR"
		echo "ClusterName=$OPT_CLUSTER"
		echo "SlurmctldHost=localhost"
		echo "SlurmctldPort=$OPT_CTLD_PORT"
		echo "SlurmdPort=$OPT_SLURMD_PORT"
		echo "SlurmUser=root"
		echo "SlurmdUser=root"
		case $OPT_AUTH in
		none) echo "AuthType=auth/none"; echo "CredType=cred/none" ;;
		munge) echo "AuthType=auth/munge"; echo "CredType=cred/munge"
			echo "AuthInfo=socket=$d/munge/munge.socket" ;;
		slurm) echo "AuthType=auth/slurm"; echo "CredType=cred/slurm"
			echo "AuthInfo=keyfile=$d/slurm.key" ;;
		esac
		echo "StateSaveLocation=$d/state"
		echo "SlurmdSpoolDir=$d/spool"
		# Not the rig's own PID files: slurmctld truncates and rewrites its
		# PID file while starting, and a read of the rig's file in that window
		# took a starting slurmctld for dead (and stopped it).
		echo "SlurmctldPidFile=$d/slurmctld.daemon.pid"
		echo "SlurmdPidFile=$d/slurmd.daemon.pid"
		echo "SlurmctldLogFile=$d/slurmctld.log"
		echo "SlurmdLogFile=$d/slurmd.log"
		echo "SlurmctldDebug=verbose"
		echo "SlurmdDebug=info"
		echo "PluginDir=$plugindir"
		echo "ProctrackType=proctrack/linuxproc"
		echo "TaskPlugin=task/none"
		echo "JobAcctGatherType=jobacct_gather/none"
		echo "AccountingStorageType=accounting_storage/none"
		echo "SelectType=select/cons_tres"
		echo "SelectTypeParameters=CR_CPU"
		echo "MpiDefault=none"
		echo "ReturnToService=2"
		echo "MailProg=/bin/true"
		echo "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0"
		echo "DefMemPerCPU=100"
		echo "MaxArraySize=10001"
		[[ -n $OPT_JOBCOMP ]] && echo "JobCompType=$OPT_JOBCOMP"
		[[ -n $OPT_JOBCOMP_LOC ]] && echo "JobCompLoc=$OPT_JOBCOMP_LOC"
		[[ -n $OPT_JOBCOMP_PARAMS ]] && echo "JobCompParams=$OPT_JOBCOMP_PARAMS"
		[[ -n $OPT_DEBUGFLAGS ]] && echo "DebugFlags=$OPT_DEBUGFLAGS"
		echo "NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=4000 State=UNKNOWN"
		echo "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:16"
	} >"$RIG_HOSTDIR/slurm.conf.new"
	# --conf KEY=VALUE replaces a generated KEY=... line, or is appended.
	local kv key
	for kv in "${OPT_CONF[@]}"; do
		key=${kv%%=*}
		sed -i "/^${key}=/Id" "$RIG_HOSTDIR/slurm.conf.new"
		echo "$kv" >>"$RIG_HOSTDIR/slurm.conf.new"
	done
	mv "$RIG_HOSTDIR/slurm.conf.new" "$RIG_HOSTDIR/slurm.conf"
}

_write_wrappers() {
	local bin=$RIG_HOSTDIR/bin c
	mkdir -p "$bin" "$RIG_HOSTDIR/out"
	for c in "${SLURM_CLIENTS[@]}"; do
		if [[ $RIG_KIND == chroot ]]; then
			cat >"$bin/$c" <<-EOF
				#!/bin/sh
				# $c of the chroot cluster in $RIG_HOSTDIR (runs inside $RIG_ROOT, cwd $RIG_INDIR)
				export SLURM_CONF=$RIG_INDIR/slurm.conf JK_RIG_DIR=$RIG_HOSTDIR
				export SBATCH_OUTPUT="\${JK_SBATCH_OUTPUT:-$RIG_INDIR/out/slurm-%j.out}"
				exec chroot $RIG_ROOT /bin/sh -c 'cd "\$0" && exec "\$@"' $RIG_INDIR $c "\$@"
			EOF
		else
			cat >"$bin/$c" <<-EOF
				#!/bin/sh
				# $c of the host cluster in $RIG_HOSTDIR
				export SLURM_CONF=$RIG_HOSTDIR/slurm.conf JK_RIG_DIR=$RIG_HOSTDIR
				export SBATCH_OUTPUT="\${JK_SBATCH_OUTPUT:-$RIG_HOSTDIR/out/slurm-%j.out}"
				exec /usr/bin/$c "\$@"
			EOF
		fi
		chmod 0755 "$bin/$c"
	done
}

# --- daemons ---------------------------------------------------------------

_start_munged() {
	local m=$RIG_HOSTDIR/munge im=$RIG_INDIR/munge
	mkdir -p "$m"
	# munged insists that every directory above its socket is searchable by
	# all (mktemp -d makes 0700) and that the socket's own is 0755.
	chmod go+x "$RIG_HOSTDIR"
	chmod 0755 "$m"
	[[ -s $m/munge.key ]] || _run mungekey --create --keyfile="$im/munge.key" >/dev/null
	chmod 0600 "$m/munge.key"
	rm -f "$m/munge.socket" "$m/munge.socket.lock"
	setsid env JK_RIG_DIR="$RIG_HOSTDIR" ${RIG_ROOT:+chroot "$RIG_ROOT"} munged -F \
		--socket="$im/munge.socket" --key-file="$im/munge.key" --pid-file="$im/munged.pid" \
		--seed-file="$im/munged.seed" --log-file="$im/munged.log" \
		>>"$m/munged.stderr" 2>&1 </dev/null &
	echo $! >"$m/munged.pid"
	wait_for 10 "munged socket" test -S "$m/munge.socket" || die "munged did not start (see $m/munged.log)"
}

_start_slurmctld() {
	local pidf=$RIG_HOSTDIR/slurmctld.pid
	if pidfile_alive "$pidf"; then
		die "slurmctld already running in $RIG_HOSTDIR (pid $(read_pid "$pidf"))"
	fi
	require_port_free 127.0.0.1 "$CTLD_PORT"
	CTLD_LOG_OFFSET=$(stat -c %s "$RIG_HOSTDIR/slurmctld.log" 2>/dev/null || echo 0)
	setsid env JK_RIG_DIR="$RIG_HOSTDIR" ${RIG_ROOT:+chroot "$RIG_ROOT"} slurmctld -D -f "$RIG_INDIR/slurm.conf" \
		>>"$RIG_HOSTDIR/slurmctld.stderr" 2>&1 </dev/null &
	echo $! >"$pidf"
}

_start_slurmd() {
	local pidf=$RIG_HOSTDIR/slurmd.pid
	if pidfile_alive "$pidf"; then
		die "slurmd already running in $RIG_HOSTDIR (pid $(read_pid "$pidf"))"
	fi
	require_port_free 127.0.0.1 "$SLURMD_PORT"
	setsid env JK_RIG_DIR="$RIG_HOSTDIR" ${RIG_ROOT:+chroot "$RIG_ROOT"} slurmd -D -N localhost -f "$RIG_INDIR/slurm.conf" \
		>>"$RIG_HOSTDIR/slurmd.stderr" 2>&1 </dev/null &
	echo $! >"$pidf"
}

_ctld_up() {
	pidfile_alive "$RIG_HOSTDIR/slurmctld.pid" &&
		_run scontrol ping 2>/dev/null | grep -q 'is UP'
}

# The node answers again (after a slurmctld restart it is "unk" until slurmd
# registers, ~4 s): any state but unknown/down/not-responding.
_node_ready() {
	local t
	t=$(_run sinfo -h -n localhost -o %t 2>/dev/null) || return 1
	[[ -n $t && $t != unk* && $t != down* && $t != *'*' ]]
}

_wait_node_ready() {
	pidfile_alive "$RIG_HOSTDIR/slurmd.pid" || return 0
	wait_for 30 "node localhost to answer" _node_ready || log "WARNING: node state $(_run sinfo -h -n localhost -o %t 2>&1)"
}

_node_idle() {
	[[ $(_run sinfo -h -n localhost -o %T 2>/dev/null) == idle ]]
}

# _wait_ctld TIMEOUT_S: slurmctld answers; dies (showing its log) if it
# exited or did not come up.
_wait_ctld() {
	local deadline=$(($(now_ms) + $1 * 1000))
	until _ctld_up; do
		if ! pidfile_alive "$RIG_HOSTDIR/slurmctld.pid"; then
			tail -n 25 "$RIG_HOSTDIR/slurmctld.log" "$RIG_HOSTDIR/slurmctld.stderr" >&2 2>/dev/null || true
			die "slurmctld exited during start-up (logs above)"
		fi
		if (($(now_ms) >= deadline)); then
			tail -n 25 "$RIG_HOSTDIR/slurmctld.log" >&2 2>/dev/null || true
			die "slurmctld not UP after $1 s"
		fi
		sleep 0.05
	done
	# 22.05 runs on without jobcomp when the plugin fails to load (23.02+
	# exits, caught above): say so loudly.
	local failed
	failed=$(tail -c +$((${CTLD_LOG_OFFSET:-0} + 1)) "$RIG_HOSTDIR/slurmctld.log" 2>/dev/null |
		grep -m1 -E 'cannot create jobcomp context|jobcomp.*(init|plugin).*fail' || true)
	[[ -z $failed ]] || log "WARNING: slurmctld runs WITHOUT jobcomp: $failed"
}

_save_rig_env() {
	{
		printf 'RIG_KIND=%q\n' "$RIG_KIND"
		printf 'RIG_ROOT=%q\n' "$RIG_ROOT"
		printf 'RIG_HOSTDIR=%q\n' "$RIG_HOSTDIR"
		printf 'RIG_INDIR=%q\n' "$RIG_INDIR"
		printf 'CTLD_PORT=%q\n' "$OPT_CTLD_PORT"
		printf 'SLURMD_PORT=%q\n' "$OPT_SLURMD_PORT"
		printf 'AUTH=%q\n' "$OPT_AUTH"
		printf 'CLUSTER=%q\n' "$OPT_CLUSTER"
		printf 'SLURM_VERSION=%q\n' "$SLURM_VERSION"
	} >"$RIG_HOSTDIR/rig.env"
}

# If start fails half-way, stop what it started.
_start_failed_cleanup() {
	local rc=$?
	((rc == 0)) && return 0
	log "start failed: stopping what was started"
	_stop_all 0 || true
	exit "$rc"
}

# slurm_start [--chroot ROOT] DIR [OPTIONS...]   (later options override earlier)
slurm_start() {
	RIG_KIND=host RIG_ROOT=''
	if [[ ${1:-} == --chroot ]]; then
		RIG_KIND=chroot RIG_ROOT=$2
		shift 2
	fi
	RIG_HOSTDIR=$(abs_dir "$1")
	shift
	RIG_INDIR=$(_in_path "$RIG_HOSTDIR")
	OPT_PLUGINDIR='' OPT_JOBCOMP='' OPT_JOBCOMP_LOC='' OPT_JOBCOMP_PARAMS='' OPT_DEBUGFLAGS=''
	OPT_CTLD_PORT=16817 OPT_SLURMD_PORT=16818 OPT_CLUSTER=jk OPT_AUTH='' OPT_TIMEOUT=30
	OPT_CONF=() OPT_FRESH=0
	while (($#)); do
		case $1 in
		--plugindir) OPT_PLUGINDIR=$2 ;;
		--jobcomp) OPT_JOBCOMP=$2 ;;
		--jobcomp-loc) OPT_JOBCOMP_LOC=$2 ;;
		--jobcomp-params) OPT_JOBCOMP_PARAMS=$2 ;;
		--debugflags) OPT_DEBUGFLAGS=$2 ;;
		--ctld-port) OPT_CTLD_PORT=$2 ;;
		--slurmd-port) OPT_SLURMD_PORT=$2 ;;
		--cluster) OPT_CLUSTER=$2 ;;
		--auth) OPT_AUTH=$2 ;;
		--conf) OPT_CONF+=("$2") ;;
		--timeout) OPT_TIMEOUT=$2 ;;
		--fresh) OPT_FRESH=1; shift; continue ;;
		*) die "unknown option: $1" ;;
		esac
		(($# >= 2)) || die "option $1 needs a value"
		shift 2
	done
	# Relative paths that exist are taken relative to the caller's directory.
	[[ -n $OPT_PLUGINDIR && $OPT_PLUGINDIR != /* && -d $OPT_PLUGINDIR ]] && OPT_PLUGINDIR=$(realpath "$OPT_PLUGINDIR")
	[[ -n $OPT_JOBCOMP_LOC && $OPT_JOBCOMP_LOC != /* && -e $OPT_JOBCOMP_LOC ]] && OPT_JOBCOMP_LOC=$(realpath "$OPT_JOBCOMP_LOC")
	SLURM_VERSION=$(${RIG_ROOT:+chroot "$RIG_ROOT"} dpkg-query -W -f='${Version}' slurmctld)
	if [[ -z $OPT_AUTH ]]; then
		OPT_AUTH=none # works on 22.05 and 24.11 alike (checked by the self-tests)
	fi
	[[ $OPT_AUTH =~ ^(none|munge|slurm)$ ]] || die "--auth must be none, munge or slurm"
	if [[ $RIG_KIND == chroot ]]; then
		_chroot_localize_paths
	fi
	CTLD_PORT=$OPT_CTLD_PORT SLURMD_PORT=$OPT_SLURMD_PORT
	if pidfile_alive "$RIG_HOSTDIR/slurmctld.pid" || pidfile_alive "$RIG_HOSTDIR/slurmd.pid"; then
		die "a cluster is already running in $RIG_HOSTDIR (stop it first)"
	fi
	if ((OPT_FRESH)); then
		rm -rf "$RIG_HOSTDIR/state" "$RIG_HOSTDIR/spool"
	fi
	local known
	# 22.05 stores "NAME", 24.11 "NAME|CLUSTER_ID".
	known=$({ cut -d'|' -f1 "$RIG_HOSTDIR/state/clustername" | tr -d '[:space:]'; } 2>/dev/null || true)
	if [[ -n $known && $known != "$OPT_CLUSTER" ]]; then
		die "$RIG_HOSTDIR/state belongs to cluster '$known', not '$OPT_CLUSTER' (slurmctld would refuse): use --fresh or another DIR"
	fi
	local t0
	t0=$(now_ms)
	mkdir -p "$RIG_HOSTDIR/state" "$RIG_HOSTDIR/spool"
	_save_rig_env
	_write_conf
	_write_wrappers
	trap _start_failed_cleanup EXIT
	if [[ $OPT_AUTH == munge ]]; then
		_start_munged
	elif [[ $OPT_AUTH == slurm && ! -s $RIG_HOSTDIR/slurm.key ]]; then
		head -c 1024 /dev/urandom >"$RIG_HOSTDIR/slurm.key"
		chmod 0600 "$RIG_HOSTDIR/slurm.key"
	fi
	_start_slurmctld
	_wait_ctld "$OPT_TIMEOUT"
	_start_slurmd
	if ! wait_for "$OPT_TIMEOUT" "node localhost idle" _node_idle; then
		tail -n 20 "$RIG_HOSTDIR/slurmd.log" >&2 2>/dev/null || true
		die "node did not become idle (state: $(_run sinfo -h -n localhost -o %T 2>&1))"
	fi
	trap - EXIT
	log "$RIG_KIND cluster $OPT_CLUSTER (Slurm $SLURM_VERSION, auth/$OPT_AUTH) up in $(($(now_ms) - t0)) ms:" \
		"ctld :$CTLD_PORT pid $(read_pid "$RIG_HOSTDIR/slurmctld.pid"), slurmd :$SLURMD_PORT pid $(read_pid "$RIG_HOSTDIR/slurmd.pid"); dir $RIG_HOSTDIR"
}

# Paths handed to a chroot cluster must exist inside ROOT: a plugin directory
# or JobCompLoc file outside ROOT is copied into DIR (at start; restart-ctld
# reuses the copy).
_chroot_localize_paths() {
	if [[ -n $OPT_PLUGINDIR ]]; then
		local p out=
		IFS=: read -ra dirs <<<"$OPT_PLUGINDIR"
		for p in "${dirs[@]}"; do
			p=$(realpath -m "$p")
			if [[ $p != "$RIG_ROOT"/* ]]; then
				local copy=$RIG_HOSTDIR/plugins
				mkdir -p "$copy"
				cp -f "$p"/*.so "$copy"/ || die "no .so files in $p"
				log "copied $(compgen -G "$p/*.so" | wc -l) plugin(s) from $p into $copy"
				p=$copy
			fi
			out+=${out:+:}$(_in_path "$p")
		done
		OPT_PLUGINDIR=$out
	fi
	if [[ -n $OPT_JOBCOMP_LOC && $OPT_JOBCOMP_LOC == /* ]]; then
		if [[ $OPT_JOBCOMP_LOC == "$RIG_ROOT"/* ]]; then
			OPT_JOBCOMP_LOC=$(_in_path "$OPT_JOBCOMP_LOC")
		elif [[ -f $OPT_JOBCOMP_LOC ]]; then
			local copy
			copy=$RIG_HOSTDIR/$(basename "$OPT_JOBCOMP_LOC")
			[[ $(realpath "$OPT_JOBCOMP_LOC") == "$copy" ]] || cp -f "$OPT_JOBCOMP_LOC" "$copy"
			log "JobCompLoc $OPT_JOBCOMP_LOC copied to $copy"
			OPT_JOBCOMP_LOC=$(_in_path "$copy")
		fi
		# else: taken as a path inside the chroot
	fi
}

# --- stop ----------------------------------------------------------------

# slurmstepd wipes its environment (to rewrite its process title), but keeps
# slurmd's log file open: match it by an open file inside DIR (and, in a
# chroot, by its root directory).
_stepd_of_rig() {
	local p=$1 fd target
	if [[ $RIG_KIND == chroot ]]; then
		[[ $(readlink "/proc/$p/root" 2>/dev/null) == "$RIG_ROOT" ]] || return 1
	fi
	for fd in /proc/"$p"/fd/*; do
		target=$(readlink "$fd" 2>/dev/null) || continue
		[[ $target == "$RIG_HOSTDIR"/* || ($RIG_KIND == chroot && $target == "$RIG_INDIR"/*) ]] && return 0
	done
	return 1
}

# PIDs of processes carrying this rig's marker (slurmstepd, job processes, ...).
_marked_pids() {
	local p ancestors=" " a=$BASHPID
	# Never the caller itself (it may have been started through `run DIR`).
	while [[ -n $a && $a != 0 ]]; do
		ancestors+="$a "
		a=$(awk '{print $4}' "/proc/$a/stat" 2>/dev/null) || break
	done
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[[ $ancestors == *" $p "* ]] && continue
		if { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qxF "JK_RIG_DIR=$RIG_HOSTDIR"; then
			echo "$p"
		elif [[ $(cat "/proc/$p/comm" 2>/dev/null) == slurmstepd ]] && _stepd_of_rig "$p"; then
			echo "$p"
		fi
	done
}

_stop_all() { # GRACEFUL(1|0)
	local graceful=$1 ctld slurmd
	ctld=$(read_pid "$RIG_HOSTDIR/slurmctld.pid")
	slurmd=$(read_pid "$RIG_HOSTDIR/slurmd.pid")
	if ((graceful)) && pid_alive "$ctld"; then
		# Orderly: slurmctld runs the plugins' fini() and saves state.
		_run scontrol shutdown >/dev/null 2>&1 || true
		wait_pid_gone "$ctld" 15 || log "slurmctld still alive 15 s after scontrol shutdown"
		wait_pid_gone "$slurmd" 5 || true
	fi
	stop_pid "$ctld" 10 slurmctld
	stop_pid "$slurmd" 5 slurmd
	if [[ -f $RIG_HOSTDIR/munge/munged.pid ]]; then
		stop_pidfile "$RIG_HOSTDIR/munge/munged.pid" 3 munged
	fi
	local p leftovers
	leftovers=$(_marked_pids)
	for p in $leftovers; do
		log "stopping leftover $({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | cut -c1-60) (pid $p)"
		# slurmstepd ignores SIGTERM; the daemons that could use it are gone.
		[[ $(cat "/proc/$p/comm" 2>/dev/null) == slurmstepd ]] && kill -KILL "$p" 2>/dev/null
		stop_pid "$p" 2 leftover
	done
	rm -f "$RIG_HOSTDIR/slurmctld.pid" "$RIG_HOSTDIR/slurmd.pid"
}

# --- per-cluster commands (DIR only) ----------------------------------------

_wait_job() { # JOBID TIMEOUT_S -> prints the final state(s)
	[[ -n ${1:-} ]] || die "usage: wait-job DIR JOBID [TIMEOUT_S]"
	local id=$1 timeout=${2:-60} out states s active
	local deadline=$(($(now_ms) + timeout * 1000))
	while :; do
		out=$(_run scontrol -o show job "$id" 2>&1) || true
		if [[ $out == *"Invalid job id"* ]]; then
			echo "PURGED"
			return 0
		fi
		states=$(grep -o 'JobState=[A-Z_]*' <<<"$out" | cut -d= -f2 | sort -u | tr '\n' ' ')
		active=0
		for s in $states; do
			case $s in
			COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | PREEMPTED | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) ;;
			*) active=1 ;;
			esac
		done
		if [[ -n $states ]] && ((active == 0)); then
			echo "${states% }"
			return 0
		fi
		if (($(now_ms) >= deadline)); then
			log "job $id not finished after ${timeout}s (state: ${states:-?})"
			return 1
		fi
		sleep 0.1
	done
}

slurm_command() { # CMD DIR [ARGS...]
	local cmd=$1
	shift
	_load_rig "${1:-}"
	shift
	case $cmd in
	stop)
		local t0
		t0=$(now_ms)
		_stop_all 1
		log "cluster in $RIG_HOSTDIR stopped in $(($(now_ms) - t0)) ms"
		;;
	restart-ctld)
		local t0
		t0=$(now_ms)
		stop_pidfile "$RIG_HOSTDIR/slurmctld.pid" 15 slurmctld
		_start_slurmctld
		_wait_ctld 30
		_wait_node_ready
		log "slurmctld restarted in $(($(now_ms) - t0)) ms (pid $(read_pid "$RIG_HOSTDIR/slurmctld.pid"))"
		;;
	kill9-ctld)
		local pid
		pid=$(read_pid "$RIG_HOSTDIR/slurmctld.pid")
		pid_alive "$pid" || die "slurmctld is not running in $RIG_HOSTDIR"
		kill -KILL "$pid"
		wait_pid_gone "$pid" 5 || die "slurmctld (pid $pid) survived SIGKILL"
		rm -f "$RIG_HOSTDIR/slurmctld.pid"
		log "slurmctld (pid $pid) killed with SIGKILL; start-ctld brings it back"
		;;
	start-ctld)
		local t0
		t0=$(now_ms)
		_start_slurmctld
		_wait_ctld 30
		_wait_node_ready
		log "slurmctld started in $(($(now_ms) - t0)) ms (pid $(read_pid "$RIG_HOSTDIR/slurmctld.pid"))"
		;;
	env)
		[[ $RIG_KIND == host ]] && printf 'export SLURM_CONF=%q\n' "$RIG_HOSTDIR/slurm.conf"
		printf 'export PATH=%q:"$PATH"\n' "$RIG_HOSTDIR/bin"
		;;
	run)
		[[ ${1:-} == -- ]] && shift
		(($#)) || die "usage: run DIR CMD [ARGS...]"
		if [[ $RIG_KIND == chroot ]]; then
			_run /bin/sh -c 'cd "$0" && exec "$@"' "$RIG_INDIR" "$@"
		else
			_run "$@"
		fi
		;;
	wait-job) _wait_job "$@" ;;
	status)
		local name pid rc=0
		for name in slurmctld slurmd; do
			pid=$(read_pid "$RIG_HOSTDIR/$name.pid")
			if pid_alive "$pid"; then echo "$name running pid $pid"; else echo "$name stopped"; rc=1; fi
		done
		_ctld_up && echo "slurmctld answers (ctld port $CTLD_PORT)" || rc=1
		return $rc
		;;
	*) die "unknown command $cmd" ;;
	esac
}
