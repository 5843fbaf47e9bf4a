#!/usr/bin/env bash
# A private PostgreSQL server (Debian's postgresql package) on loopback, for
# the consumers' tests: its own cluster in DIR (initdb), not the system service.
#
# Usage:
#   postgres.sh install          apt-get install postgresql (no-op when installed)
#   postgres.sh start DIR PORT   initdb DIR/data (first time), start on 127.0.0.1:PORT
#                                (socket in DIR), create database "jobcomp"; writes
#                                DIR/postgres.pid and DIR/dsn (a libpq URI)
#   postgres.sh stop DIR         pg_ctl stop -m fast, then by PID
#   postgres.sh dsn DIR          print the connection URI
#
# The server runs as the "postgres" user the package creates (initdb refuses
# root); DIR is made theirs. Authentication: trust, loopback only.
set -euo pipefail
RIG_NAME=postgres
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

pg_bindir() {
	local d
	d=$(compgen -G "/usr/lib/postgresql/*/bin" | sort -V | tail -n1 || true)
	[[ -n $d && -x $d/initdb ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql (postgres.sh install)"
	echo "$d"
}

as_pg() { runuser -u postgres -- "$@"; }

cmd_start() {
	(($# == 2)) || die "usage: $0 start DIR PORT"
	local dir port=$2 bin t0
	dir=$(abs_dir "$1")
	deb_installed postgresql || apt_install postgresql
	bin=$(pg_bindir)
	if pidfile_alive "$dir/postgres.pid"; then
		die "postgres already running in $dir"
	fi
	require_port_free 127.0.0.1 "$port"
	chown postgres: "$dir"
	chmod 0755 "$dir"
	t0=$(now_ms)
	if [[ ! -s $dir/data/PG_VERSION ]]; then
		as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
			{ cat "$dir/initdb.log" >&2; die "initdb failed"; }
	fi
	# fsync off: a test database, thrown away after the run.
	as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off -c TimeZone=UTC" \
		start >&2 || { tail -n 20 "$dir/postgres.log" >&2; die "postgres did not start"; }
	head -n1 "$dir/data/postmaster.pid" >"$dir/postgres.pid"
	echo "$port" >"$dir/postgres.port"
	if ! as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -Atqc "SELECT 1 FROM pg_database WHERE datname='jobcomp'" | grep -q 1; then
		as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres jobcomp
	fi
	echo "postgresql://postgres@127.0.0.1:$port/jobcomp" >"$dir/dsn"
	log "postgres pid $(cat "$dir/postgres.pid") on 127.0.0.1:$port, up in $(($(now_ms) - t0)) ms"
}

cmd_stop() {
	(($# == 1)) || die "usage: $0 stop DIR"
	local dir=$1 bin
	if ! pidfile_alive "$dir/postgres.pid"; then
		rm -f "$dir/postgres.pid"
		return 0
	fi
	bin=$(pg_bindir)
	as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >&2 || true
	stop_pidfile "$dir/postgres.pid" 5 postgres
	log "postgres stopped"
}

cmd=${1:-}
(($#)) && shift
case $cmd in
install) apt_install postgresql ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
dsn) cat "$1/dsn" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
