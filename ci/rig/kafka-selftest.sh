#!/usr/bin/env bash
# Self-check of ci/rig/kafka.sh against Apache Kafka itself.
#
# Usage: kafka-selftest.sh [--netns]    everything below (`make kafka-selftest`)
#        kafka-selftest.sh --offline    only 5. (ci/e2e-kafka.sh runs it)
#
# 1. installs both pinned lines (4, 3.9) from Maven Central (cached);
# 2. per line: one combined node with a SCRAM-SHA-512 user made at format
#    time; a topic created with Kafka's topics tool; three messages (one not
#    UTF-8, with key and header) produced with confluent-kafka
#    (ci/rig/produce.py) and read back byte for byte (ci/rig/consume.py);
#    the user listed by the configs tool; stop;
# 3. a three-node 4.x cluster on loopback: all three voters in the quorum
#    (metadata-quorum tool), an RF=3 topic with three replicas in sync,
#    messages through it; stop;
# 4. with --netns: one node inside a network namespace made here (veth pair,
#    10.213.0.0/24), reached from the host through the veth; removed after;
# 5. the second run needs no network (issue 22): with the cache warm, each
#    line installed and a node started inside a network namespace that has
#    loopback only (`unshare --net`; a private mount namespace lays an
#    overlay on the cache, so what the check removes is removed for it alone):
#    `install` with the cache as it is, then again from the private Maven
#    repository alone (Maven offline, the installed jars removed), then a node
#    that serves metadata. Fails when the rig as much as tries to download.
#    And a control, every run: the same install with one jar missing from the
#    Maven repository must fail, having tried to download (so the namespace
#    really has no way out, and a cache missing something is caught);
# and first: `kafka.sh cluster-id` never prints an id kafka-storage refuses.
# Ports 21000-21049 (5.: 21046 and 21048, inside its own namespace); work directory
# /tmp/kafka-rig-selftest.XXXX (removed on success). Every timing is logged;
# nothing is asserted about speed. Needs root (namespaces, mounts).
set -euo pipefail
RIG_NAME=kafka-selftest
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
K=$RIG_DIR/kafka.sh

# no_fetch LOG: kafka.sh did not try to download (its line before mvn goes online).
no_fetch() {
	if grep -q 'downloading from Maven Central' "$1"; then
		cat "$1" >&2
		die "kafka.sh tried to download with the cache warm ($1)"
	fi
}

# offline_inner WORK: step 5, run by offline_check inside
# `unshare --net --mount` (a network namespace of its own, with loopback only).
offline_inner() {
	local work=$1 v home d port=21046
	OFFLINE_WORK=$work
	trap 'for d in "$OFFLINE_WORK"/offline-*/; do [[ -f $d/kafka.pid ]] && "$K" stop "$d"; done' EXIT
	trap 'exit 143' TERM
	ip link set lo up
	# No link but loopback: no route leads out of this namespace.
	[[ $(ip -o link show | awk -F': ' '{print $2}') == lo ]] ||
		die "the namespace has links other than lo: $(ip -o link show)"
	# The cache seen through an overlay: what is removed below is removed
	# in this mount namespace only (the real cache is shared with other runs).
	mkdir -p "$work/overlay/upper" "$work/overlay/work"
	mount -t overlay jk-kafka-offline \
		-o "lowerdir=$RIG_CACHE,upperdir=$work/overlay/upper,workdir=$work/overlay/work" "$RIG_CACHE"
	for v in 4 3.9; do
		# The second run: the cache as the first left it.
		home=$("$K" install "$v" 2>"$work/install-$v-cached.log") || {
			cat "$work/install-$v-cached.log" >&2
			die "kafka.sh install $v failed with the cache warm and no network"
		}
		no_fetch "$work/install-$v-cached.log"
		# The jars again from the private Maven repository alone (what a
		# changed pom or binding makes the rig do).
		rm -rf "$home"
		"$K" install "$v" >/dev/null 2>"$work/install-$v-m2.log" || {
			cat "$work/install-$v-m2.log" >&2
			die "kafka.sh install $v failed from the Maven cache with no network"
		}
		no_fetch "$work/install-$v-m2.log"
		grep -q 'from the local Maven cache .* (offline)' "$work/install-$v-m2.log" ||
			die "kafka.sh install $v did not say it installed from the Maven cache: $(cat "$work/install-$v-m2.log")"
		d=$work/offline-$v
		"$K" start "$d" --version "$v" --port "$port" --heap 256m
		"$K" stop "$d"
		log "Kafka $v: installed from the cache as is and from the Maven cache alone, node up and stopped, no network"
		port=$((port + 2))
	done
	# The control: with one jar missing from the Maven repository the rig
	# must try to download it, and fail (nothing leaves this namespace).
	local exact jar
	exact=$("$K" versions | awk '$1 == "4" {print $2}')
	jar=$RIG_CACHE/m2/org/apache/kafka/kafka-clients/$exact/kafka-clients-$exact.jar
	[[ -f $jar ]] || die "control: $jar is not in the Maven cache"
	home=$("$K" install 4 2>/dev/null)
	rm -rf "$home" "$jar"
	if "$K" install 4 >/dev/null 2>"$work/install-control.log"; then
		die "control: kafka.sh install 4 succeeded with $(basename "$jar") missing and no network"
	fi
	grep -q 'downloading from Maven Central' "$work/install-control.log" ||
		die "control: kafka.sh install 4 failed without trying to download: $(cat "$work/install-control.log")"
	log "control: with $(basename "$jar") removed from the Maven cache, install tried to download and failed:" \
		"$(grep -oE 'Could not transfer artifact [^ ]+|(Unknown host|Network is unreachable)[^>]*' \
			"$work/install-control.log" | sort -u | tr '\n' ' ')"
}

if [[ ${1:-} == --offline-inner ]]; then
	offline_inner "$2"
	exit 0
fi

NETNS=0 OFFLINE_ONLY=0
case ${1:-} in
--netns) NETNS=1 ;;
--offline) OFFLINE_ONLY=1 ;;
"") ;;
*) die "usage: $0 [--netns | --offline]" ;;
esac

WORK=$(mktemp -d /tmp/kafka-rig-selftest.XXXX)
STARTED=()
NS=kafka-rig-st$$
INNER_PID=
cleanup() {
	local rc=$? d
	if [[ -n $INNER_PID ]] && pid_alive "$INNER_PID"; then
		kill -TERM "$INNER_PID" 2>/dev/null || true
		wait_pid_gone "$INNER_PID" 60 || true
	fi
	for d in "${STARTED[@]}"; do
		"$K" stop "$d" --grace 20 || true
	done
	for d in "$WORK"/offline-*/; do
		[[ -f $d/kafka.pid ]] && "$K" stop "$d" --grace 20 || true
	done
	if ((NETNS)); then
		ip netns del "$NS" 2>/dev/null || true
		ip link del krst-h 2>/dev/null || true
	fi
	if ((rc == 0)); then rm -rf "$WORK"; else log "FAILED; kept $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_venv
PY=$RIG_VENV/bin/python

# offline_check: step 5. The cache is warmed first (the network may be used
# here, as on a fresh machine), then everything runs without it.
offline_check() {
	local t
	"$K" install 4 >/dev/null
	"$K" install 3.9 >/dev/null
	t=$(now_ms)
	# In the background: a TERM to this script then stops it at once (cleanup).
	unshare --net --mount --propagation private -- "$(realpath "${BASH_SOURCE[0]}")" --offline-inner "$WORK" &
	INNER_PID=$!
	wait "$INNER_PID" || die "the rig needs the network with the cache warm (see above)"
	INNER_PID=
	log "no network, cache warm: both lines installed and started in $(($(now_ms) - t)) ms"
}
if ((OFFLINE_ONLY)); then
	offline_check
	log "OK"
	exit 0
fi

# roundtrip BOOTSTRAP TOPIC: produce 3 messages, read them back byte-exact.
roundtrip() {
	local bs=$1 topic=$2
	printf '%s\n' \
		'{"key": "k1", "value": "hello kafka", "headers": {"h": "1"}}' \
		'{"key": "k2", "value_b64": "AP/+gA=="}' \
		'{"key": "k3", "value": "{\"job_id\": 3}"}' |
		"$PY" "$RIG_DIR/produce.py" --bootstrap "$bs" --topic "$topic" >"$WORK/$topic.produced"
	"$PY" "$RIG_DIR/consume.py" --bootstrap "$bs" --topic "$topic" --from-beginning --expect 3 \
		--exact --linger 1 --timeout 60 >"$WORK/$topic.consumed"
	"$PY" - "$WORK/$topic.consumed" <<'EOF'
import base64, json, sys
got = sorted((json.loads(l) for l in open(sys.argv[1])), key=lambda m: m["key"])
want = [("k1", b"hello kafka"), ("k2", b"\x00\xff\xfe\x80"), ("k3", b'{"job_id": 3}')]
assert [(m["key"], base64.b64decode(m["value_b64"])) for m in got] == want, got
assert got[0]["headers"] == {"h": "1"}, got[0]["headers"]
EOF
	log "$topic on $bs: 3 messages produced and read back byte-exact"
}

# Cluster ids: kafka-storage refuses one that starts with '-' (its argument
# parser takes it for an option); 1 in 64 random ids would, so 500 draws of
# the unguarded generator all pass with probability 0.04%.
for _ in $(seq 500); do "$K" cluster-id; done | awk '
	length($0) != 22 || /[^A-Za-z0-9_-]/ { bad++; print "not a Kafka Uuid: " $0 > "/dev/stderr" }
	/^-/ { dash++ }
	END { if (bad || dash || NR != 500) { print "cluster-id: " NR " ids, " bad+0 " malformed, " dash+0 " with a leading -" > "/dev/stderr"; exit 1 } }' ||
	die "kafka.sh cluster-id printed an id kafka-storage format cannot take"
log "kafka.sh cluster-id: 500 ids, none malformed or with a leading '-'"

t=$(now_ms)
"$K" install 4 >/dev/null
"$K" install 3.9 >/dev/null
log "install 4 + 3.9: $(($(now_ms) - t)) ms"

# --- single nodes, both lines ------------------------------------------------
port=21000
for v in 4 3.9; do
	d=$WORK/single-$v
	STARTED+=("$d")
	t=$(now_ms)
	"$K" start "$d" --version "$v" --port $port --scram-user jobcomp=jobcomp-secret
	log "Kafka $v single node: start $(($(now_ms) - t)) ms"
	bs=127.0.0.1:$port
	"$K" tool "$v" topics --bootstrap-server "$bs" --create --topic selftest --partitions 2 --replication-factor 1
	roundtrip "$bs" selftest
	"$K" tool "$v" configs --bootstrap-server "$bs" --describe --entity-type users --entity-name jobcomp |
		grep -q 'SCRAM-SHA-512' || die "SCRAM-SHA-512 user jobcomp not found on Kafka $v"
	log "Kafka $v: SCRAM-SHA-512 user made at format time is listed"
	t=$(now_ms)
	"$K" stop "$d"
	log "Kafka $v single node: stop $(($(now_ms) - t)) ms"
	port=$((port + 10))
done

# --- three-node 4.x cluster ---------------------------------------------------
cid=$("$K" cluster-id)
quorum="1@127.0.0.1:21021,2@127.0.0.1:21023,3@127.0.0.1:21025"
t=$(now_ms)
for n in 1 2 3; do
	d=$WORK/cluster-$n
	STARTED+=("$d")
	"$K" start "$d" --version 4 --node-id $n --port $((21018 + 2 * n)) --controller-port $((21019 + 2 * n)) \
		--quorum "$quorum" --cluster-id "$cid" --heap 384m --no-wait
done
for n in 1 2 3; do "$K" wait "$WORK/cluster-$n"; done
log "Kafka 4 three-node cluster: start $(($(now_ms) - t)) ms"
bs=127.0.0.1:21020,127.0.0.1:21022,127.0.0.1:21024
"$K" tool 4 metadata-quorum --bootstrap-server "$bs" describe --status | tee "$WORK/quorum.txt" >&2
"$PY" - "$WORK/quorum.txt" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
voters = json.loads(re.search(r"CurrentVoters:\s*(\[.*\])", text).group(1))
ids = sorted(v["id"] if isinstance(v, dict) else v for v in voters)
assert ids == [1, 2, 3], ids
EOF
log "quorum: voters 1, 2, 3"
"$K" tool 4 topics --bootstrap-server "$bs" --create --topic rf3 --partitions 3 --replication-factor 3 \
	--config min.insync.replicas=2
# Every partition: three replicas, all in sync (polled: followers join the
# ISR after their first fetch).
rf3_in_sync() {
	"$K" tool 4 topics --bootstrap-server "$bs" --describe --topic rf3 >"$WORK/rf3.txt"
	[[ $(grep -cE 'Replicas: [0-9],[0-9],[0-9]\s+Isr: [0-9],[0-9],[0-9]' "$WORK/rf3.txt") == 3 ]]
}
wait_for 120 "every partition of rf3 with 3 replicas in sync" rf3_in_sync ||
	die "topic rf3: not every partition has 3 replicas in sync: $(cat "$WORK/rf3.txt")"
cat "$WORK/rf3.txt" >&2
roundtrip "$bs" rf3
t=$(now_ms)
# All at once: a node stopped last alone has no quorum for its controlled
# shutdown and would wait for SIGKILL.
for n in 1 2 3; do "$K" stop "$WORK/cluster-$n" --grace 30 & done
wait
log "Kafka 4 three-node cluster: stop $(($(now_ms) - t)) ms"

# --- a node inside a network namespace ---------------------------------------
if ((NETNS)); then
	ip netns add "$NS"
	ip link add krst-h type veth peer name krst-n
	ip link set krst-n netns "$NS"
	ip addr add 10.213.0.1/24 dev krst-h
	ip link set krst-h up
	ip -n "$NS" addr add 10.213.0.2/24 dev krst-n
	ip -n "$NS" link set krst-n up
	ip -n "$NS" link set lo up
	d=$WORK/netns
	STARTED+=("$d")
	t=$(now_ms)
	"$K" start "$d" --version 4 --netns "$NS" --host 10.213.0.2 --port 21040
	log "Kafka 4 in netns $NS: start $(($(now_ms) - t)) ms"
	pid=$("$K" pid "$d")
	[[ $(readlink "/proc/$pid/ns/net") == $(readlink "/proc/self/ns/net") ]] &&
		die "the JVM runs in the host's network namespace"
	roundtrip 10.213.0.2:21040 netns
	"$K" stop "$d"
fi

offline_check
log "OK"
