#!/usr/bin/env bash
# Apache Kafka itself (KRaft), installed from Maven Central by exact version.
#
# Usage:
#   kafka.sh install VERSION  install the broker and tools (VERSION: exact, or
#                             an alias: 4, 3.9) into
#                             /var/tmp/jobcomp-kafka/kafka-VERSION/libs; prints
#                             that directory. Idempotent; offline once cached.
#   kafka.sh versions         print the aliases and the exact versions pinned
#   kafka.sh cluster-id       print a new random cluster id
#   kafka.sh start DIR --port P [options]
#                             format DIR's storage once (cluster id kept in
#                             DIR/cluster.id) and start one KRaft node in its
#                             own process group: DIR/kafka.pid, DIR/kafka.log,
#                             DIR/server.properties. Returns once the node
#                             serves metadata to a real client (confluent-kafka
#                             AdminClient: this node among the brokers; a
#                             controller-only node: its controller listener
#                             accepts connections).
#     --version V             Kafka version or alias (default 4)
#     --host ADDR             listen/advertise address (default 127.0.0.1)
#     --port P                client listener PLAINTEXT://ADDR:P (required)
#     --controller-port P     controller listener (default P+1)
#     --node-id N             node.id (default 1)
#     --quorum VOTERS         controller.quorum.voters, "1@h:p,2@h:p,3@h:p"
#                             (default: this node alone, N@ADDR:CPORT)
#     --cluster-id ID         the cluster id (the same for every node of a
#                             cluster; default: DIR/cluster.id, else a new one)
#     --roles R               process.roles (default broker,controller)
#     --props FILE            server.properties lines appended after the
#                             rig's (repeatable; the last value of a key wins,
#                             so it may replace listeners, advertised.listeners,
#                             listener.security.protocol.map,
#                             inter.broker.listener.name, authorizer, ...)
#     --client-config FILE    librdkafka properties (key=value lines) of the
#                             readiness check's client, for a node without a
#                             PLAINTEXT client listener (bootstrap.servers,
#                             security.protocol, sasl.*, ssl.*)
#     --scram-user NAME=PASSWORD
#                             SCRAM-SHA-512 user made when DIR is formatted
#                             (KIP-900; repeatable; ignored on a later start)
#     --add-scram SPEC        raw storage-tool --add-scram argument, e.g.
#                             'SCRAM-SHA-256=[name=u,password=p]' (repeatable)
#     --jaas FILE             -Djava.security.auth.login.config=FILE
#     --jvm-opt OPT           one more JVM option (repeatable), e.g.
#                             -Djava.security.krb5.conf=F or
#                             -Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=U
#     --heap SIZE             -Xmx (default 512m; -Xms is 64m)
#     --netns NAME            run the JVM (and the readiness check) inside
#                             `ip netns exec NAME`
#     --no-wait               return once the JVM is started (for a cluster:
#                             start every node, then `kafka.sh wait` each)
#     --timeout S             readiness deadline (default 180)
#   kafka.sh wait DIR [--timeout S]
#                             wait until a started node serves metadata
#   kafka.sh stop DIR [--kill] [--grace S]
#                             SIGTERM, wait up to S s (default 30) for the
#                             controlled shutdown, then SIGKILL; --kill: SIGKILL
#                             at once (crash tests). The data stays in DIR.
#   kafka.sh status DIR       exit 0 when running (prints PID, version, ports)
#   kafka.sh pid DIR          print the node's PID (exit 1 when not running)
#   kafka.sh tool VERSION NAME [ARGS...]
#                             run one of Kafka's command-line tools: topics,
#                             acls, configs, storage, metadata-quorum,
#                             console-consumer, console-producer,
#                             producer-perf, consumer-groups, features
#   kafka.sh scram-user VERSION BOOTSTRAP NAME PASSWORD [--command-config F]
#                             create/replace a SCRAM-SHA-512 user on a running
#                             cluster (configs tool)
#   kafka.sh python           print the venv's python (has confluent-kafka)
#
# The jars come from org.apache.kafka:kafka_2.13 + kafka-tools + an SLF4J
# binding (ci/rig/kafka/pom.xml) through `mvn dependency:copy-dependencies`,
# with a private Maven repository /var/tmp/jobcomp-kafka/m2 (offline once
# it holds them). Debian's openjdk-17-jre-headless and maven are installed
# when java/mvn are missing. Environment: KAFKA_RIG_JAVA (default: java on
# PATH).
set -euo pipefail
RIG_NAME=kafka
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

# The pinned versions: alias, exact version, SLF4J binding (groupId:artifactId:
# version) that makes the broker log. The newest of each line on Maven Central
# on 2026-12-07. Change them here only.
KAFKA_PINS=(
	"4   4.4.0 org.apache.logging.log4j:log4j-slf4j-impl:2.25.5"
	"3.9 3.9.2 org.slf4j:slf4j-reload4j:1.7.36"
)
KAFKA_DEFAULT=4
KAFKA_M2=$RIG_CACHE/m2
KAFKA_POM_DIR=$RIG_DIR/kafka
KAFKA_JAVA=${KAFKA_RIG_JAVA:-java}

# The main class of each tool, per line: the first class the installed jars
# have (several moved from kafka_2.13's Scala to kafka-tools in 4.0).
declare -A TOOL_CLASSES=(
	[topics]="org.apache.kafka.tools.TopicCommand kafka.admin.TopicCommand"
	[acls]="org.apache.kafka.tools.AclCommand kafka.admin.AclCommand"
	[configs]="org.apache.kafka.tools.ConfigCommand kafka.admin.ConfigCommand"
	[storage]="org.apache.kafka.tools.StorageTool kafka.tools.StorageTool"
	[metadata-quorum]="org.apache.kafka.tools.MetadataQuorumCommand"
	[console-consumer]="org.apache.kafka.tools.consumer.ConsoleConsumer kafka.tools.ConsoleConsumer"
	[console-producer]="org.apache.kafka.tools.ConsoleProducer kafka.tools.ConsoleProducer"
	[producer-perf]="org.apache.kafka.tools.ProducerPerformance"
	[consumer-groups]="org.apache.kafka.tools.consumer.group.ConsumerGroupCommand kafka.admin.ConsumerGroupCommand"
	[features]="org.apache.kafka.tools.FeatureCommand kafka.admin.FeatureCommand"
)

# resolve_version V: the exact version of an alias (an exact version as is).
resolve_version() {
	local p a v
	for p in "${KAFKA_PINS[@]}"; do
		read -r a v _ <<<"$p"
		if [[ $1 == "$a" || $1 == "$v" ]]; then
			echo "$v"
			return
		fi
	done
	[[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "unknown Kafka version '$1' (aliases: $(pins_aliases))"
	echo "$1"
}

pins_aliases() {
	local p a
	for p in "${KAFKA_PINS[@]}"; do
		read -r a _ <<<"$p"
		printf '%s ' "$a"
	done
}

# log_binding V: the SLF4J binding of V's line (4.x: log4j2, 3.x: reload4j).
log_binding() {
	local p a v b
	for p in "${KAFKA_PINS[@]}"; do
		read -r a v b <<<"$p"
		if [[ ${1%%.*} == "${v%%.*}" ]]; then
			echo "$b"
			return
		fi
	done
	die "no logging backend known for Kafka $1"
}

kafka_home() {
	echo "$RIG_CACHE/kafka-$1"
}

# The install's signature: a change of the pom or the binding reinstalls.
install_sig() {
	echo "$1 $(log_binding "$1") $(sha256sum "$KAFKA_POM_DIR/pom.xml" | cut -c1-16)"
}

_installed() {
	local home
	home=$(kafka_home "$1")
	[[ -f $home/.jk-rig-complete && $(cat "$home/.jk-rig-complete") == "$(install_sig "$1")" ]]
}

_install_locked() {
	local v=$1 home tmp binding g a lv cls c found
	_installed "$v" && return 0
	command -v mvn >/dev/null || apt_install maven
	home=$(kafka_home "$v")
	tmp=$home.tmp.$$
	rm -rf "$tmp"
	mkdir -p "$tmp/libs" "$KAFKA_M2"
	binding=$(log_binding "$v")
	IFS=: read -r g a lv <<<"$binding"
	local mvn=(mvn -B -q -f "$KAFKA_POM_DIR/pom.xml" -Dmaven.repo.local="$KAFKA_M2"
		-Dkafka.version="$v" -Dlog.groupId="$g" -Dlog.artifactId="$a" -Dlog.version="$lv"
		dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/libs")
	local t0
	t0=$(now_ms)
	# Offline first: a cached Maven repository needs no network.
	if "${mvn[@]}" -o >"$tmp/mvn.log" 2>&1; then
		log "Kafka $v: jars from the local Maven cache $KAFKA_M2 (offline)"
	else
		log "Kafka $v: downloading from Maven Central into $KAFKA_M2"
		"${mvn[@]}" >"$tmp/mvn.log" 2>&1 || {
			tail -n 30 "$tmp/mvn.log" >&2
			rm -rf "$tmp"
			die "mvn could not fetch Apache Kafka $v"
		}
	fi
	# The tools' main classes present in these jars (TOOL_CLASSES).
	local jar
	for jar in "$tmp"/libs/kafka*.jar; do
		unzip -Z1 "$jar"
	done | sed -n 's/\.class$//p' | tr / . | sort -u >"$tmp/classes.txt"
	: >"$tmp/tools.txt"
	for c in "${!TOOL_CLASSES[@]}"; do
		found=
		for cls in ${TOOL_CLASSES[$c]}; do
			if grep -qxF "$cls" "$tmp/classes.txt"; then
				found=$cls
				break
			fi
		done
		[[ -n $found ]] && echo "$c=$found" >>"$tmp/tools.txt"
	done
	grep -qxF kafka.Kafka "$tmp/classes.txt" || die "kafka.Kafka not in the jars of $v"
	rm -f "$tmp/classes.txt"
	echo "$(install_sig "$v")" >"$tmp/.jk-rig-complete"
	rm -rf "$home"
	mv "$tmp" "$home"
	log "Kafka $v installed in $home ($(ls "$home/libs" | wc -l) jars, $(du -sm "$home/libs" | cut -f1) MiB) in $(($(now_ms) - t0)) ms"
}

ensure_kafka() {
	# Java 17+ (4.x needs 17; Debian 12's default JRE is 17).
	if [[ $KAFKA_JAVA == java ]] && ! command -v java >/dev/null; then
		apt_install openjdk-17-jre-headless
	fi
	_installed "$1" || with_lock "$RIG_CACHE/kafka.lock" _install_locked "$1"
}

cmd_install() {
	(($# == 1)) || die "usage: $0 install VERSION"
	local v
	v=$(resolve_version "$1")
	ensure_kafka "$v"
	kafka_home "$v"
}

# java_cmd V LOGLEVEL: the java command line of version V (class path, logging).
java_cmd() {
	local v=$1 level=$2 home
	home=$(kafka_home "$v")
	local cfg
	if [[ ${v%%.*} -ge 4 ]]; then
		cfg=(-Dlog4j2.configurationFile="$KAFKA_POM_DIR/log4j2.properties")
	else
		cfg=(-Dlog4j.configuration="file:$KAFKA_POM_DIR/log4j.properties")
	fi
	JAVA_CMD=("$KAFKA_JAVA" -Djava.awt.headless=true -Dkafka.rig.loglevel="$level" "${cfg[@]}"
		-cp "$home/libs/*")
}

tool_class() {
	local v=$1 name=$2 c
	c=$(sed -n "s/^$name=//p" "$(kafka_home "$v")/tools.txt")
	[[ -n $c ]] || die "no tool '$name' in Kafka $v (known: $(cut -d= -f1 "$(kafka_home "$v")/tools.txt" | sort | tr '\n' ' '))"
	echo "$c"
}

cmd_tool() {
	(($# >= 2)) || die "usage: $0 tool VERSION NAME [ARGS...]"
	local v name=$2 cls
	v=$(resolve_version "$1")
	shift 2
	ensure_kafka "$v"
	cls=$(tool_class "$v" "$name")
	java_cmd "$v" WARN
	# Short-lived: C1 only starts faster; a small heap is plenty.
	exec "${JAVA_CMD[@]}" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC ${KAFKA_TOOL_OPTS:-} "$cls" "$@"
}

new_cluster_id() {
	# Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding.
	# Never one that starts with '-' (1 in 64): kafka-storage's argument
	# parser takes `-t -xyz...` for a missing value and an unknown option,
	# and formatting fails (seen in CI); Kafka's own Uuid.randomUuid draws
	# again in that case too.
	local id=-
	while [[ $id == -* ]]; do
		id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
	done
	echo "$id"
}

# rss_kib PID: resident set size of PID (KiB).
rss_kib() {
	awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# ready_check DIR: this node serves metadata (it is among the brokers the
# cluster's metadata names) to a confluent-kafka client.
ready_check() {
	local dir=$1 ns
	ns=$(cat "$dir/netns" 2>/dev/null || true)
	local pre=()
	[[ -n $ns ]] && pre=(ip netns exec "$ns")
	if [[ $(cat "$dir/roles" 2>/dev/null || echo broker) != *broker* ]]; then
		# A controller alone serves no client metadata: its listener is up.
		"${pre[@]}" bash -c ". '$RIG_LIB_DIR/common.sh'; port_open '$(cat "$dir/host")' '$(cat "$dir/controller.port")'"
		return
	fi
	"${pre[@]}" "$RIG_VENV/bin/python" - "$dir/client.properties" "$(cat "$dir/node.id")" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient
conf = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line and not line.startswith("#") and "=" in line:
        k, v = line.split("=", 1)
        conf[k.strip()] = v.strip()
conf.setdefault("socket.timeout.ms", "3000")
md = AdminClient(conf).list_topics(timeout=3)
sys.exit(0 if int(sys.argv[2]) in md.brokers else 1)
EOF
}

# wait_ready DIR TIMEOUT_S T0_MS: poll ready_check; log start-up time, heap, RSS.
wait_ready() {
	local dir=$1 timeout=$2 t0=$3 pid
	pid=$(read_pid "$dir/kafka.pid")
	local deadline=$(($(now_ms) + timeout * 1000))
	until ready_check "$dir" >/dev/null 2>&1; do
		if ! pid_alive "$pid"; then
			tail -n 30 "$dir/kafka.log" >&2 || true
			rm -f "$dir/kafka.pid"
			die "Kafka node in $dir exited during start-up (log: $dir/kafka.log)"
		fi
		if (($(now_ms) >= deadline)); then
			tail -n 30 "$dir/kafka.log" >&2 || true
			die "Kafka node in $dir does not serve metadata after ${timeout}s (still running: pid $pid; log: $dir/kafka.log)"
		fi
		sleep 0.5
	done
	log "Kafka $(cat "$dir/version") node $(cat "$dir/node.id") pid $pid on $(cat "$dir/bootstrap")${t0:+, up in $(($(now_ms) - t0)) ms}, heap $(cat "$dir/heap"), RSS $(($(rss_kib "$pid") / 1024)) MiB"
}

cmd_start() {
	(($# >= 1)) || die "usage: $0 start DIR --port P [options] (see $0 help)"
	local dir
	dir=$(abs_dir "$1")
	shift
	local ver=$KAFKA_DEFAULT host=127.0.0.1 port= cport= node=1 quorum= cid= roles=broker,controller
	local heap=512m netns= wait=1 timeout=180 client_cfg=
	local props=() scram=() jvm=()
	while (($#)); do
		case $1 in
		--version) ver=$2; shift 2 ;;
		--host) host=$2; shift 2 ;;
		--port) port=$2; shift 2 ;;
		--controller-port) cport=$2; shift 2 ;;
		--node-id) node=$2; shift 2 ;;
		--quorum) quorum=$2; shift 2 ;;
		--cluster-id) cid=$2; shift 2 ;;
		--roles) roles=$2; shift 2 ;;
		--props) [[ -r $2 ]] || die "--props $2: not readable"; props+=("$(realpath "$2")"); shift 2 ;;
		--client-config) [[ -r $2 ]] || die "--client-config $2: not readable"; client_cfg=$(realpath "$2"); shift 2 ;;
		--scram-user) [[ $2 == *=* ]] || die "--scram-user NAME=PASSWORD"; scram+=("SCRAM-SHA-512=[name=${2%%=*},password=${2#*=}]"); shift 2 ;;
		--add-scram) scram+=("$2"); shift 2 ;;
		--jaas) [[ -r $2 ]] || die "--jaas $2: not readable"; jvm+=("-Djava.security.auth.login.config=$(realpath "$2")"); shift 2 ;;
		--jvm-opt) jvm+=("$2"); shift 2 ;;
		--heap) heap=$2; shift 2 ;;
		--netns) netns=$2; shift 2 ;;
		--no-wait) wait=0; shift ;;
		--timeout) timeout=$2; shift 2 ;;
		*) die "start: unknown option '$1' (see $0 help)" ;;
		esac
	done
	[[ -n $port ]] || die "start: --port P is required"
	cport=${cport:-$((port + 1))}
	quorum=${quorum:-$node@$host:$cport}
	ver=$(resolve_version "$ver")
	if pidfile_alive "$dir/kafka.pid"; then
		die "Kafka already running in $dir (pid $(read_pid "$dir/kafka.pid"))"
	fi
	ensure_kafka "$ver"
	ensure_venv
	local pre=()
	if [[ -n $netns ]]; then
		ip netns list | grep -qw "$netns" || die "no network namespace '$netns'"
		pre=(ip netns exec "$netns")
	else
		require_port_free "$host" "$port"
		require_port_free "$host" "$cport"
	fi
	# The cluster id: given, else the one DIR was formatted with, else new.
	if [[ -z $cid ]]; then
		cid=$(cat "$dir/cluster.id" 2>/dev/null || new_cluster_id)
	elif [[ -s $dir/cluster.id && $(cat "$dir/cluster.id") != "$cid" ]]; then
		die "$dir was formatted for cluster $(cat "$dir/cluster.id"), not $cid"
	fi
	local nvoters rf isr
	nvoters=$(tr ',' '\n' <<<"$quorum" | grep -c @)
	rf=$((nvoters < 3 ? nvoters : 3))
	isr=$((rf < 2 ? 1 : 2))
	mkdir -p "$dir/data"
	{
		echo "# written by ci/rig/kafka.sh start; --props files follow (the last value of a key wins)"
		echo "process.roles=$roles"
		echo "node.id=$node"
		echo "controller.quorum.voters=$quorum"
		echo "controller.listener.names=CONTROLLER"
		if [[ $roles == *broker* ]]; then
			echo "listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$cport"
			echo "advertised.listeners=PLAINTEXT://$host:$port"
		else
			echo "listeners=CONTROLLER://$host:$cport"
		fi
		echo "inter.broker.listener.name=PLAINTEXT"
		echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
		echo "log.dirs=$dir/data"
		echo "num.partitions=1"
		echo "default.replication.factor=$rf"
		echo "offsets.topic.replication.factor=$rf"
		echo "offsets.topic.num.partitions=5"
		echo "transaction.state.log.replication.factor=$rf"
		echo "transaction.state.log.min.isr=$isr"
		echo "transaction.state.log.num.partitions=5"
		echo "share.coordinator.state.topic.replication.factor=$rf"
		echo "share.coordinator.state.topic.min.isr=$isr"
		echo "group.initial.rebalance.delay.ms=0"
		echo "auto.create.topics.enable=true"
		local f
		for f in "${props[@]}"; do
			echo "# --props $f"
			cat "$f"
			echo
		done
	} >"$dir/server.properties"
	echo "$ver" >"$dir/version"
	echo "$node" >"$dir/node.id"
	echo "-Xmx$heap" >"$dir/heap"
	echo "$host:$port" >"$dir/bootstrap"
	echo "$cport" >"$dir/controller.port"
	echo "$host" >"$dir/host"
	echo "$roles" >"$dir/roles"
	if [[ -n $netns ]]; then echo "$netns" >"$dir/netns"; else rm -f "$dir/netns"; fi
	if [[ -n $client_cfg ]]; then
		cp "$client_cfg" "$dir/client.properties"
		grep -q '^ *bootstrap.servers' "$dir/client.properties" || echo "bootstrap.servers=$host:$port" >>"$dir/client.properties"
	else
		echo "bootstrap.servers=$host:$port" >"$dir/client.properties"
	fi
	local t0
	t0=$(now_ms)
	# Format once (KRaft): the cluster id and the SCRAM users (KIP-900).
	if [[ ! -f $dir/data/meta.properties ]]; then
		local fmt=(format -t "$cid" -c "$dir/server.properties") s
		for s in "${scram[@]}"; do fmt+=(--add-scram "$s"); done
		java_cmd "$ver" WARN
		if ! "${JAVA_CMD[@]}" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "${jvm[@]}" \
			"$(tool_class "$ver" storage)" "${fmt[@]}" >>"$dir/format.log" 2>&1; then
			cat "$dir/format.log" >&2
			die "formatting $dir/data failed"
		fi
		echo "$cid" >"$dir/cluster.id"
		log "formatted $dir/data: cluster $cid${scram:+, ${#scram[@]} SCRAM user(s)} in $(($(now_ms) - t0)) ms"
	elif ((${#scram[@]})); then
		log "$dir already formatted: --scram-user/--add-scram ignored (use kafka.sh scram-user)"
	fi
	java_cmd "$ver" INFO
	# setsid: own process group (a Ctrl-C of the caller does not reach it);
	# `ip netns exec` execs the JVM, so the PID stays the JVM's.
	t0=$(now_ms)
	setsid "${pre[@]}" "${JAVA_CMD[@]}" -Xms64m -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
		-XX:+ExitOnOutOfMemoryError -Dkafka.logs.dir="$dir" "${jvm[@]}" \
		kafka.Kafka "$dir/server.properties" >>"$dir/kafka.log" 2>&1 </dev/null &
	echo $! >"$dir/kafka.pid"
	if ((wait)); then
		wait_ready "$dir" "$timeout" "$t0"
	else
		echo "$t0" >"$dir/started.ms"
		log "Kafka $ver node $node pid $! starting on $host:$port (not waiting)"
	fi
}

cmd_wait() {
	(($# >= 1)) || die "usage: $0 wait DIR [--timeout S]"
	local dir=$1 timeout=180
	[[ ${2:-} == --timeout ]] && timeout=$3
	pidfile_alive "$dir/kafka.pid" || die "no Kafka running in $dir"
	ensure_venv
	wait_ready "$dir" "$timeout" "$(cat "$dir/started.ms" 2>/dev/null || true)"
	rm -f "$dir/started.ms"
}

cmd_stop() {
	(($# >= 1)) || die "usage: $0 stop DIR [--kill] [--grace S]"
	local dir=$1 kill=0 grace=30
	shift
	while (($#)); do
		case $1 in
		--kill) kill=1; shift ;;
		--grace) grace=$2; shift 2 ;;
		*) die "stop: unknown option '$1'" ;;
		esac
	done
	local f=$dir/kafka.pid pid t0
	if ! pidfile_alive "$f"; then
		rm -f "$f"
		log "Kafka not running in $dir"
		return 0
	fi
	pid=$(read_pid "$f")
	t0=$(now_ms)
	if ((kill)); then
		kill -KILL "$pid" 2>/dev/null || true
		wait_pid_gone "$pid" 10 || log "WARNING: pid $pid survived SIGKILL"
		rm -f "$f"
		log "Kafka in $dir killed (SIGKILL, pid $pid)"
	else
		stop_pidfile "$f" "$grace" kafka
		log "Kafka in $dir stopped (pid $pid) in $(($(now_ms) - t0)) ms"
	fi
}

cmd_status() {
	(($# == 1)) || die "usage: $0 status DIR"
	local f=$1/kafka.pid
	pidfile_alive "$f" || { echo "stopped"; return 1; }
	echo "running pid $(read_pid "$f") version $(cat "$1/version") node $(cat "$1/node.id") bootstrap $(cat "$1/bootstrap") controller-port $(cat "$1/controller.port")"
}

cmd_pid() {
	(($# == 1)) || die "usage: $0 pid DIR"
	pidfile_alive "$1/kafka.pid" || return 1
	read_pid "$1/kafka.pid"
	echo
}

cmd_scram_user() {
	(($# == 4 || $# == 6)) || die "usage: $0 scram-user VERSION BOOTSTRAP NAME PASSWORD [--command-config F]"
	local extra=()
	(($# == 6)) && extra=("$5" "$6")
	cmd_tool "$1" configs --bootstrap-server "$2" "${extra[@]}" --alter --entity-type users --entity-name "$3" \
		--add-config "SCRAM-SHA-512=[password=$4]"
}

cmd=${1:-}
(($#)) && shift
case $cmd in
install) cmd_install "$@" ;;
versions) printf '%s\n' "${KAFKA_PINS[@]}" | awk '{print $1, $2}' ;;
cluster-id) new_cluster_id ;;
start) cmd_start "$@" ;;
wait) cmd_wait "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
pid) cmd_pid "$@" ;;
tool) cmd_tool "$@" ;;
scram-user) cmd_scram_user "$@" ;;
python) ensure_venv; echo "$RIG_VENV/bin/python" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
