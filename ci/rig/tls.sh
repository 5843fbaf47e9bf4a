#!/usr/bin/env bash
# A TLS endpoint (Debian's stunnel4) in front of a plaintext Kafka broker, and
# the certificates the secured end-to-end tests use, made with openssl.
#
# Usage:
#   tls.sh install                 apt-get install stunnel4 (no-op when installed)
#   tls.sh certs DIR               make DIR/: ca.pem (+ ca.key), the broker's
#                                  server.pem/server.key (subjectAltName IP:127.0.0.1,
#                                  DNS:localhost), client.pem + client.key (encrypted
#                                  with the password in DIR/client.key.password),
#                                  and the bad ones: other-ca.pem (a CA that signed
#                                  nothing here), expired.pem/.key (valid 2020-01-01
#                                  to 2020-01-02), wronghost.pem/.key (for
#                                  kafka.invalid / 127.0.0.2 only), broker.pem/.key
#                                  (CN=kafka-broker, IP:127.0.0.1: an Apache Kafka
#                                  broker's own certificate, server and client), and
#                                  other-client.pem/.key (CN=slurmctld, issued by
#                                  other-ca: a client certificate a broker must refuse)
#   tls.sh start DIR PORT BACKEND_PORT CERT KEY [--verify CA]
#                                  stunnel accepting TLS on 127.0.0.1:PORT with CERT/KEY,
#                                  forwarding to 127.0.0.1:BACKEND_PORT; with --verify it
#                                  demands a client certificate signed by CA (mutual TLS).
#                                  Writes DIR/stunnel.pid, logs to DIR/stunnel.log.
#   tls.sh stop DIR                stop it (by PID)
# The password of client.key is read from the environment variable
# CLIENT_KEY_PASSWORD when set (the tests take it from the README's example),
# else "jobcomp-test-key-password".
set -euo pipefail
RIG_NAME=tls
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

cmd_certs() {
	(($# == 1)) || die "usage: $0 certs DIR"
	local d
	d=$(abs_dir "$1")
	local pw=${CLIENT_KEY_PASSWORD:-jobcomp-test-key-password}
	local days=3650
	# A CA: key + self-signed certificate with the CA basic constraint.
	make_ca() { # NAME CN
		openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/$1.key" -out "$d/$1.pem" -days $days \
			-subj "/CN=$2" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
			2>/dev/null
	}
	make_ca ca "jobcomp-kafka test CA"
	make_ca other-ca "jobcomp-kafka other CA"
	# A leaf signed by ca: CSR, then `openssl ca` (which, unlike `x509 -req` in
	# OpenSSL 3.0, can give any validity period, so an expired one too).
	mkdir -p "$d/ca.db"
	: >"$d/ca.db/index.txt"
	echo 1000 >"$d/ca.db/serial"
	cat >"$d/ca.cnf" <<-EOF
		[ca]
		default_ca = test_ca
		[test_ca]
		dir = $d/ca.db
		database = \$dir/index.txt
		serial = \$dir/serial
		new_certs_dir = \$dir
		certificate = $d/ca.pem
		private_key = $d/ca.key
		default_md = sha256
		policy = any
		unique_subject = no
		copy_extensions = copy
		[any]
		commonName = supplied
	EOF
	leaf() { # NAME CN SAN EXT [ca args...]
		local name=$1 cn=$2 san=$3 ext=$4
		shift 4
		openssl req -newkey rsa:2048 -nodes -keyout "$d/$name.key" -out "$d/$name.csr" -subj "/CN=$cn" \
			-addext "subjectAltName=$san" -addext "extendedKeyUsage=$ext" 2>/dev/null
		openssl ca -batch -config "$d/ca.cnf" -notext -in "$d/$name.csr" -out "$d/$name.pem" "$@" 2>/dev/null ||
			die "openssl ca failed for $name"
		rm -f "$d/$name.csr"
	}
	leaf server localhost "IP:127.0.0.1,DNS:localhost" serverAuth -days $days
	leaf expired localhost "IP:127.0.0.1,DNS:localhost" serverAuth -startdate 20200101000000Z -enddate 20200102000000Z
	leaf wronghost kafka.invalid "IP:127.0.0.2,DNS:kafka.invalid" serverAuth -days $days
	leaf client slurmctld "DNS:slurmctld" clientAuth -days $days
	leaf broker kafka-broker "IP:127.0.0.1,DNS:localhost" serverAuth,clientAuth -days $days
	# The same subject as client.pem, issued by the other CA.
	openssl req -newkey rsa:2048 -nodes -keyout "$d/other-client.key" -out "$d/other-client.csr" -subj "/CN=slurmctld" \
		2>/dev/null
	openssl x509 -req -in "$d/other-client.csr" -CA "$d/other-ca.pem" -CAkey "$d/other-ca.key" -CAcreateserial \
		-days $days -out "$d/other-client.pem" 2>/dev/null || die "openssl x509 failed for other-client"
	rm -f "$d/other-client.csr"
	# The client's key encrypted (PKCS#8, AES-256): librdkafka needs ssl.key.password.
	openssl pkcs8 -topk8 -v2 aes-256-cbc -in "$d/client.key" -out "$d/client.key.enc" -passout "pass:$pw"
	mv "$d/client.key.enc" "$d/client.key"
	printf '%s\n' "$pw" >"$d/client.key.password"
	chmod 0600 "$d"/*.key "$d/client.key.password"
	log "certificates in $d"
}

cmd_start() {
	(($# == 5 || $# == 7)) || die "usage: $0 start DIR PORT BACKEND_PORT CERT KEY [--verify CA]"
	local dir port=$2 backend=$3 cert key verify=""
	dir=$(abs_dir "$1")
	cert=$(realpath "$4")
	key=$(realpath "$5")
	if (($# == 7)); then
		[[ $6 == --verify ]] || die "unknown option $6"
		verify=$(realpath "$7")
	fi
	deb_installed stunnel4 || apt_install stunnel4
	if pidfile_alive "$dir/stunnel.pid"; then
		die "stunnel already running in $dir"
	fi
	require_port_free 127.0.0.1 "$port"
	{
		echo "foreground = yes"
		echo "pid ="
		echo "output = $dir/stunnel.log"
		echo "debug = notice"
		echo "[kafka-tls]"
		echo "accept = 127.0.0.1:$port"
		echo "connect = 127.0.0.1:$backend"
		echo "cert = $cert"
		echo "key = $key"
		if [[ -n $verify ]]; then
			echo "CAfile = $verify"
			echo "verifyChain = yes"
			echo "requireCert = yes"
		fi
	} >"$dir/stunnel.conf"
	setsid stunnel4 "$dir/stunnel.conf" >>"$dir/stunnel.out" 2>&1 </dev/null &
	local pid=$!
	echo "$pid" >"$dir/stunnel.pid"
	if ! wait_port 127.0.0.1 "$port" 20 || ! pid_alive "$pid"; then
		tail -n 20 "$dir/stunnel.log" "$dir/stunnel.out" >&2 || true
		stop_pidfile "$dir/stunnel.pid" 3 stunnel
		die "stunnel did not come up on 127.0.0.1:$port"
	fi
	log "stunnel pid $pid: TLS 127.0.0.1:$port -> 127.0.0.1:$backend (cert $(basename "$cert")${verify:+, client certificates from $(basename "$verify")})"
}

cmd_stop() {
	(($# == 1)) || die "usage: $0 stop DIR"
	if pidfile_alive "$1/stunnel.pid"; then
		stop_pidfile "$1/stunnel.pid" 5 stunnel
	fi
	rm -f "$1/stunnel.pid"
}

cmd=${1:-}
(($#)) && shift
case $cmd in
install) apt_install stunnel4 openssl ;;
certs) cmd_certs "$@" ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
