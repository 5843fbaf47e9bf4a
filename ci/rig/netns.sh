#!/usr/bin/env bash
# Network namespaces for a multi-node rig (a Kafka cluster whose nodes can be
# cut off the network rather than stopped): N namespaces PREFIX-k1..kN, each
# with one veth link into a bridge on the host, addresses SUBNET.11..SUBNET.1N
# (/24), the bridge SUBNET.1. The host (and so a Debian chroot, which shares
# the host's network) reaches every node through the bridge; the nodes reach
# each other through it at layer 2 (no IP forwarding, no firewall rules).
#
# Usage:
#   netns.sh up PREFIX SUBNET N      create (idempotent: a complete topology is
#                                    kept, a partial one is removed first)
#   netns.sh down PREFIX             remove namespaces, links and the processes
#                                    still running in the namespaces (by PID);
#                                    a no-op when nothing is left
#   netns.sh cut PREFIX I            node I's cable pulled: its host-side link
#                                    down. Nothing answers for its address any
#                                    more: no RST, no ICMP, no ARP failure (the
#                                    neighbour entries are permanent), so
#                                    connections to it hang, they are not refused
#   netns.sh heal PREFIX I           the link up again
#   netns.sh addr PREFIX I           print node I's address
#   netns.sh status PREFIX           links and addresses
#
# PREFIX: at most 8 characters (interface names: PREFIX-br, PREFIX-hI, PREFIX-nI
# must fit Linux's 15); SUBNET: the first three octets, e.g. 10.213.23.
# Needs root and iproute2 (installed when missing).
set -euo pipefail
RIG_NAME=netns
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

check_prefix() {
	[[ $1 =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "PREFIX must be 1-8 lower-case letters/digits, not '$1'"
}

check_subnet() {
	[[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || die "SUBNET must be three octets (10.213.23), not '$1'"
}

# node_addr SUBNET I / node_mac SUBNET HOST_OCTET: fixed addresses, so that
# the neighbour entries can be written in advance.
node_addr() { echo "$1.$((10 + $2))"; }
mac_of() {
	local IFS=.
	# shellcheck disable=SC2086
	set -- $1 "$2"
	printf '02:00:%02x:%02x:%02x:%02x\n' "$1" "$2" "$3" "$4"
}

# Namespaces and host links of PREFIX that exist now.
our_netns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$1-k[0-9]+$" || true; }
our_links() { ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^$1-(br|h[0-9]+)$" || true; }

# complete PREFIX SUBNET N: every piece is there with its address and up.
complete() {
	local prefix=$1 subnet=$2 n=$3 i
	ip link show "$prefix-br" >/dev/null 2>&1 || return 1
	ip -o addr show dev "$prefix-br" | grep -q " $subnet.1/24 " || return 1
	for ((i = 1; i <= n; i++)); do
		ip netns exec "$prefix-k$i" true 2>/dev/null || return 1
		ip -n "$prefix-k$i" -o addr show dev "$prefix-n$i" 2>/dev/null | grep -q " $(node_addr "$subnet" "$i")/24 " || return 1
	done
	[[ $(our_netns "$prefix" | wc -l) == "$n" ]]
}

cmd_up() {
	(($# == 3)) || usage
	local prefix=$1 subnet=$2 n=$3 i j addr
	check_prefix "$prefix"
	check_subnet "$subnet"
	[[ $n =~ ^[1-9]$ ]] || die "N must be 1-9"
	command -v ip >/dev/null || apt_install iproute2
	if complete "$prefix" "$subnet" "$n"; then
		for ((i = 1; i <= n; i++)); do ip link set "$prefix-h$i" up; done
		log "$prefix: $n namespaces already up"
		return 0
	fi
	cmd_down "$prefix"
	ip link add "$prefix-br" type bridge
	# A fixed MAC: a bridge otherwise takes its lowest port's, which changes
	# when a port goes.
	ip link set "$prefix-br" address "$(mac_of "$subnet" 1)"
	ip addr add "$subnet.1/24" dev "$prefix-br"
	ip link set "$prefix-br" up
	for ((i = 1; i <= n; i++)); do
		addr=$(node_addr "$subnet" "$i")
		ip netns add "$prefix-k$i"
		ip link add "$prefix-h$i" type veth peer name "$prefix-n$i"
		ip link set "$prefix-n$i" netns "$prefix-k$i"
		ip link set "$prefix-h$i" master "$prefix-br"
		ip link set "$prefix-h$i" up
		ip -n "$prefix-k$i" link set lo up
		ip -n "$prefix-k$i" link set "$prefix-n$i" address "$(mac_of "$subnet" $((10 + i)))"
		ip -n "$prefix-k$i" addr add "$addr/24" dev "$prefix-n$i"
		ip -n "$prefix-k$i" link set "$prefix-n$i" up
	done
	# Permanent neighbour entries everywhere: a node whose link is down is
	# silent (packets dropped), never "no route to host" after an ARP timeout.
	for ((i = 1; i <= n; i++)); do
		addr=$(node_addr "$subnet" "$i")
		ip neigh replace "$addr" lladdr "$(mac_of "$subnet" $((10 + i)))" dev "$prefix-br" nud permanent
		ip -n "$prefix-k$i" neigh replace "$subnet.1" lladdr "$(mac_of "$subnet" 1)" dev "$prefix-n$i" nud permanent
		for ((j = 1; j <= n; j++)); do
			((i == j)) && continue
			ip -n "$prefix-k$i" neigh replace "$(node_addr "$subnet" "$j")" \
				lladdr "$(mac_of "$subnet" $((10 + j)))" dev "$prefix-n$i" nud permanent
		done
	done
	# The bridge forwards only once its ports are in forwarding state
	# (immediately without STP, but wait for carrier on every port).
	for ((i = 1; i <= n; i++)); do
		wait_for 10 "$prefix-h$i carrier" grep -qx 1 "/sys/class/net/$prefix-h$i/carrier" ||
			die "$prefix-h$i has no carrier"
	done
	log "$prefix: $n namespaces up: $(for ((i = 1; i <= n; i++)); do printf '%s=%s ' "$prefix-k$i" "$(node_addr "$subnet" "$i")"; done)(bridge $prefix-br $subnet.1)"
}

# Processes still running in a namespace (brokers of a run that died): ended
# by PID, SIGTERM then SIGKILL.
stop_netns_pids() {
	local ns=$1 p pids
	pids=$(ip netns pids "$ns" 2>/dev/null || true)
	[[ -n $pids ]] || return 0
	for p in $pids; do
		log "stopping leftover $({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | cut -c1-80) (pid $p) in $ns"
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in $pids; do
		wait_pid_gone "$p" 10 || { kill -KILL "$p" 2>/dev/null || true; wait_pid_gone "$p" 5 || true; }
	done
}

cmd_down() {
	(($# == 1)) || usage
	local prefix=$1 ns l
	check_prefix "$prefix"
	for ns in $(our_netns "$prefix"); do
		stop_netns_pids "$ns"
		ip netns del "$ns" 2>/dev/null || true
	done
	# Deleting one end of a veth deletes the other; the bridge goes last.
	for l in $(our_links "$prefix" | sort -r); do
		ip link del "$l" 2>/dev/null || true
	done
	[[ -z $(our_netns "$prefix") && -z $(our_links "$prefix") ]] || die "$prefix: could not remove $(our_netns "$prefix") $(our_links "$prefix")"
}

cmd_cut() {
	(($# == 2)) || usage
	check_prefix "$1"
	ip link set "$1-h$2" down
	log "$1-k$2 cut off ($1-h$2 down)"
}

cmd_heal() {
	(($# == 2)) || usage
	check_prefix "$1"
	ip link set "$1-h$2" up
	wait_for 10 "$1-h$2 carrier" grep -qx 1 "/sys/class/net/$1-h$2/carrier" || die "$1-h$2 has no carrier after heal"
	log "$1-k$2 healed ($1-h$2 up)"
}

cmd_addr() {
	(($# == 2)) || usage
	check_prefix "$1"
	ip -n "$1-k$2" -o -4 addr show dev "$1-n$2" | awk '{print $4}' | cut -d/ -f1
}

cmd_status() {
	(($# == 1)) || usage
	local ns
	check_prefix "$1"
	ip -br link show | grep -E "^$1-" || true
	for ns in $(our_netns "$1"); do
		echo "$ns: $(ip -n "$ns" -br -4 addr show | grep -v '^lo' | tr -s ' ')"
	done
}

cmd=${1:-}
(($#)) && shift
case $cmd in
up) cmd_up "$@" ;;
down) cmd_down "$@" ;;
cut) cmd_cut "$@" ;;
heal) cmd_heal "$@" ;;
addr) cmd_addr "$@" ;;
status) cmd_status "$@" ;;
*) usage ;;
esac
