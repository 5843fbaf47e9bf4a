#!/usr/bin/env bash
# A real OpenID provider (npm oidc-provider 9.13.3, run by Debian's nodejs) over
# HTTPS on loopback, for the OIDC (sasl.oauthbearer.method=oidc) test.
#
# Usage:
#   oidc.sh install     npm install oidc-provider into $RIG_CACHE/oidc-provider (once)
#   oidc.sh start DIR PORT CERT KEY CLIENT_ID CLIENT_SECRET SCOPE
#                       serve https://127.0.0.1:PORT (token endpoint /token) with
#                       CERT/KEY; one client (client-credentials grant, JWT access
#                       tokens); writes DIR/oidc.pid, logs (one JSON line per token
#                       request outcome) to DIR/oidc.log; every access token
#                       lives OIDC_TOKEN_TTL seconds (environment; default 600)
#   oidc.sh stop DIR
set -euo pipefail
RIG_NAME=oidc
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

OIDC_DIR=$RIG_CACHE/oidc-provider
OIDC_VERSION=9.13.3

ensure_provider() {
	[[ -f $OIDC_DIR/node_modules/oidc-provider/package.json ]] && return 0
	command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
	with_lock "$RIG_CACHE/oidc-provider.lock" bash -c '
		[[ -f $1/node_modules/oidc-provider/package.json ]] && exit 0
		mkdir -p "$1"
		cd "$1"
		[[ -f package.json ]] || echo "{\"name\":\"jk-oidc\",\"private\":true,\"type\":\"module\"}" >package.json
		npm install --no-audit --no-fund "oidc-provider@$2" >&2
	' _ "$OIDC_DIR" "$OIDC_VERSION"
}

case ${1:-} in
install) ensure_provider ;;
start)
	(($# == 8)) || die "usage: $0 start DIR PORT CERT KEY CLIENT_ID CLIENT_SECRET SCOPE"
	dir=$(abs_dir "$2")
	ensure_provider
	require_port_free 127.0.0.1 "$3"
	# The script runs from the cache so that Node finds node_modules there;
	# named by its content, so that runs of one checkout share one copy.
	script=$OIDC_DIR/provider-$(sha256sum "$RIG_DIR/oidc-provider.mjs" | cut -c1-12).mjs
	[[ -f $script ]] || cp "$RIG_DIR/oidc-provider.mjs" "$script"
	OIDC_PORT=$3 OIDC_CERT=$(realpath "$4") OIDC_KEY=$(realpath "$5") OIDC_CLIENT_ID=$6 OIDC_CLIENT_SECRET=$7 \
		OIDC_SCOPE=$8 OIDC_TOKEN_TTL=${OIDC_TOKEN_TTL:-600} setsid node "$script" >>"$dir/oidc.log" 2>&1 </dev/null &
	echo $! >"$dir/oidc.pid"
	if ! wait_port 127.0.0.1 "$3" 30; then
		tail -n 20 "$dir/oidc.log" >&2
		stop_pidfile "$dir/oidc.pid" 3 oidc-provider
		die "oidc-provider did not come up"
	fi
	log "oidc-provider pid $(cat "$dir/oidc.pid"): https://127.0.0.1:$3/token"
	;;
stop)
	(($# == 2)) || die "usage: $0 stop DIR"
	if pidfile_alive "$2/oidc.pid"; then stop_pidfile "$2/oidc.pid" 5 oidc-provider; fi
	rm -f "$2/oidc.pid"
	;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
