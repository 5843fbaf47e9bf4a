#!/usr/bin/env bash
# A real MIT Kerberos KDC (Debian's krb5-kdc) on loopback, for the Kerberos
# (GSSAPI) end-to-end test. Everything lives in DIR; nothing under /etc changes.
#
# Usage:
#   kdc.sh install                  apt-get install krb5-kdc krb5-admin-server (kdb5_util,
#                                   kadmin.local), krb5-user (kinit: librdkafka runs it)
#                                   and libsasl2-modules-gssapi-mit (Cyrus SASL's GSSAPI
#                                   module, which librdkafka's GSSAPI goes through)
#   kdc.sh start DIR PORT REALM     make DIR/krb5.conf (clients) and DIR/kdc.conf, a new
#                                   database, and start krb5kdc on 127.0.0.1:PORT (UDP and
#                                   TCP); writes DIR/krb5kdc.pid, logs to DIR/kdc.log
#   kdc.sh keytab DIR PRINCIPAL KEYTAB
#                                   add PRINCIPAL (random key) unless it exists, and write
#                                   a new key of it to KEYTAB (older keytabs of it then
#                                   hold an old key)
#   kdc.sh principal DIR PRINCIPAL  add PRINCIPAL (random key) only (e.g. a service)
#   kdc.sh stop DIR                 stop krb5kdc (by PID)
# Clients use the KDC with KRB5_CONFIG=DIR/krb5.conf.
set -euo pipefail
RIG_NAME=kdc
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

KDC_PACKAGES=(krb5-kdc krb5-admin-server krb5-user libsasl2-modules-gssapi-mit)

kdc_env() { # DIR
	export KRB5_CONFIG=$1/krb5.conf KRB5_KDC_PROFILE=$1/kdc.conf
}

cmd_start() {
	(($# == 3)) || die "usage: $0 start DIR PORT REALM"
	local dir port=$2 realm=$3 pid
	dir=$(abs_dir "$1")
	deb_installed "${KDC_PACKAGES[@]}" || apt_install "${KDC_PACKAGES[@]}"
	pidfile_alive "$dir/krb5kdc.pid" && die "krb5kdc already running in $dir"
	require_port_free 127.0.0.1 "$port"
	cat >"$dir/krb5.conf" <<-EOF
		[libdefaults]
		    default_realm = $realm
		    dns_lookup_kdc = false
		    dns_lookup_realm = false
		    rdns = false
		    dns_canonicalize_hostname = false
		    udp_preference_limit = 1
		[realms]
		    $realm = {
		        kdc = 127.0.0.1:$port
		    }
	EOF
	cat >"$dir/kdc.conf" <<-EOF
		[kdcdefaults]
		    kdc_listen = 127.0.0.1:$port
		    kdc_tcp_listen = 127.0.0.1:$port
		[realms]
		    $realm = {
		        database_name = $dir/principal
		        key_stash_file = $dir/stash
		        acl_file = $dir/kadm5.acl
		        max_life = 1h
		        max_renewable_life = 2h
		    }
		[logging]
		    kdc = FILE:$dir/kdc.log
		    admin_server = FILE:$dir/kadmin.log
		    default = FILE:$dir/kdc.log
	EOF
	: >"$dir/kadm5.acl"
	kdc_env "$dir"
	rm -f "$dir"/principal*
	kdb5_util create -s -r "$realm" -P "kdc-master-$$-$RANDOM" >"$dir/kdb5_util.log" 2>&1 ||
		{ cat "$dir/kdb5_util.log" >&2; die "kdb5_util create failed"; }
	setsid krb5kdc -n -r "$realm" >>"$dir/krb5kdc.out" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$dir/krb5kdc.pid"
	echo "$realm" >"$dir/realm"
	if ! wait_port 127.0.0.1 "$port" 20 || ! pid_alive "$pid"; then
		tail -n 20 "$dir/kdc.log" "$dir/krb5kdc.out" >&2 || true
		stop_pidfile "$dir/krb5kdc.pid" 3 krb5kdc
		die "krb5kdc did not come up on 127.0.0.1:$port"
	fi
	log "krb5kdc pid $pid, realm $realm on 127.0.0.1:$port (KRB5_CONFIG=$dir/krb5.conf)"
}

kadmin() { # DIR QUERY
	local dir=$1
	kdc_env "$dir"
	kadmin.local -r "$(cat "$dir/realm")" -q "$2" >>"$dir/kadmin.out" 2>&1 ||
		{ tail -n 5 "$dir/kadmin.out" >&2; die "kadmin.local -q '$2' failed"; }
}

has_principal() { # DIR PRINCIPAL
	kdc_env "$1"
	kadmin.local -r "$(cat "$1/realm")" -q "getprinc $2" 2>/dev/null | grep -q "^Principal: $2\$"
}

cmd=${1:-}
(($#)) && shift
case $cmd in
install) apt_install "${KDC_PACKAGES[@]}" ;;
start) cmd_start "$@" ;;
keytab)
	(($# == 3)) || die "usage: $0 keytab DIR PRINCIPAL KEYTAB"
	has_principal "$1" "$2" || kadmin "$1" "addprinc -randkey $2"
	rm -f "$3"
	kadmin "$1" "ktadd -k $3 $2"
	chmod 0600 "$3"
	;;
principal)
	(($# == 2)) || die "usage: $0 principal DIR PRINCIPAL"
	kadmin "$1" "addprinc -randkey $2"
	;;
stop)
	(($# == 1)) || die "usage: $0 stop DIR"
	if pidfile_alive "$1/krb5kdc.pid"; then stop_pidfile "$1/krb5kdc.pid" 5 krb5kdc; fi
	rm -f "$1/krb5kdc.pid"
	;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
