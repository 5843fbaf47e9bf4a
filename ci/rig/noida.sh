#!/usr/bin/env bash
# noida-db 0.2.3 (PyPI), a second Kafka-protocol broker, here for its SASL
# PLAIN listener (it accepts any password). Installed into its own venv
# ($RIG_CACHE/noida-venv), never into the shared rig venv.
#
# Usage:
#   noida.sh start DIR PORT   Kafka only, on 127.0.0.1:PORT, data in DIR/data;
#                             writes DIR/noida.pid, logs to DIR/noida.log
#   noida.sh stop DIR
set -euo pipefail
RIG_NAME=noida
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

NOIDA_VENV=$RIG_CACHE/noida-venv

ensure_noida() {
	[[ -x $NOIDA_VENV/bin/noida-db ]] && return 0
	with_lock "$RIG_CACHE/noida-venv.lock" bash -c '
		[[ -x $1/bin/noida-db ]] && exit 0
		rm -rf "$1"
		python3 -m venv "$1"
		"$1/bin/python" -m pip install -q --disable-pip-version-check noida-db==0.2.3 >&2
	' _ "$NOIDA_VENV"
}

case ${1:-} in
start)
	(($# == 3)) || die "usage: $0 start DIR PORT"
	dir=$(abs_dir "$2")
	port=$3
	ensure_noida
	require_port_free 127.0.0.1 "$port"
	# The package's binary itself (bin/noida-db is a Python wrapper that
	# starts it as a child: its PID would not stop the server).
	bin=$(compgen -G "$NOIDA_VENV/lib/python3*/site-packages/noida_db/noida-db" | head -n 1)
	[[ -x $bin ]] || die "noida-db binary not found in $NOIDA_VENV"
	setsid "$bin" start --data-dir "$dir/data" --host 127.0.0.1 --only kafka \
		--kafka-port "$port" >>"$dir/noida.log" 2>&1 </dev/null &
	echo $! >"$dir/noida.pid"
	wait_port 127.0.0.1 "$port" 30 || { tail -n 20 "$dir/noida.log" >&2; stop_pidfile "$dir/noida.pid" 3 noida; die "noida-db did not come up"; }
	log "noida-db pid $(cat "$dir/noida.pid") on 127.0.0.1:$port"
	;;
stop)
	(($# == 2)) || die "usage: $0 stop DIR"
	if pidfile_alive "$2/noida.pid"; then stop_pidfile "$2/noida.pid" 10 noida; fi
	rm -f "$2/noida.pid"
	;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
