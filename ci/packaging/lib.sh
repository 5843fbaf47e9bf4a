# Shared by the package tests (source after ci/lib/common.sh): the cache, the
# broker (Apache Kafka 4, ci/rig/kafka.sh) and the check that job records
# arrived.
#
# Ports: 20400-20499 on 127.0.0.1 only (this suite's range; the other e2e
# suites use other fixed ports, so they can run at the same time).
PKG_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PKG_CACHE=${JK_PKG_CACHE:-$RIG_CACHE/packages}
PKG_VERSION=$("$PKG_TOP/ci/packaging/version.sh" "$PKG_TOP/Cargo.toml")
mkdir -p "$PKG_CACHE"

# expect_records BOOTSTRAP TOPIC JOBID...: every job's record arrives (key =
# job id, value JSON with that jobid), within a generous bound, and nothing
# else: --exact reads on for 3 s after the last one expected, and an extra
# copy fails. Each record is valid against the record contract of Slurm
# $slurm (schema/, tests/e2e/record_schema.py; the caller sets slurm).
expect_records() {
	local bootstrap=$1 topic=$2
	shift 2
	local out rc=0
	out=$("$PKG_TOP/ci/rig/consume.sh" --bootstrap "$bootstrap" --topic "$topic" --from-beginning \
		--expect "$#" --exact --linger 3 --timeout 90) || rc=$?
	case $rc in
	0) ;;
	5) die "more than the $# record(s) for job(s) $* reached $topic: $out" ;;
	*) die "only part of the $# record(s) for job(s) $* reached $topic (consume.sh exit $rc): $out" ;;
	esac
	local got
	got=$(printf '%s\n' "$out" | "$RIG_VENV/bin/python" -c '
import json, sys
sys.path.insert(0, sys.argv[1] + "/tests/e2e")
from record_schema import contract_problems
records = [json.loads(json.loads(line)["value"]) for line in sys.stdin if line.strip()]
for rec in records:
    problems = contract_problems(rec, sys.argv[2])
    if problems:
        sys.exit("job %s: %s" % (rec.get("jobid"), "; ".join(problems)))
print(" ".join(map(str, sorted(rec["jobid"] for rec in records))))' "$PKG_TOP" "$slurm") ||
		die "a record in $topic breaks the record contract of Slurm $slurm (above)"
	[[ $got == "$(printf '%s\n' "$@" | sort -n | tr '\n' ' ' | sed 's/ $//')" ]] ||
		die "records in $topic are for jobs [$got], expected [$*]"
	log "records of job(s) $* arrived in $topic, valid against schema/$(cut -d. -f1,2 <<<"$slurm")"
}

# pkg_broker start DIR PORT | stop DIR: the package tests' broker, one Apache
# Kafka 4 node (KRaft; its controller on PORT+1) in DIR. Its data stays in DIR
# across stop and start; the first start of a test gets an empty DIR.
pkg_broker() {
	case $1 in
	start)
		"$PKG_TOP/ci/rig/kafka.sh" start "$2" --port "$3" --version 4 --heap 256m >"$2.start.log" 2>&1 ||
			{ cat "$2.start.log" >&2; die "Apache Kafka did not start on 127.0.0.1:$3 (above)"; } ;;
	stop) "$PKG_TOP/ci/rig/kafka.sh" stop "$2" >/dev/null 2>&1 || true ;;
	*) die "pkg_broker start DIR PORT | stop DIR" ;;
	esac
}

# state_digest DIR: the names and contents of every file under DIR.
state_digest() {
	(cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

# check_man_page FILE...: each man page (plain or compressed) renders with
# man-db and groff's warnings on, and prints none (an unknown macro, a line
# that cannot be broken, a bad escape: each a warning on stderr).
check_man_page() {
	command -v man >/dev/null || die "man (man-db) is not installed"
	local page warnings
	for page in "$@"; do
		[[ -f $page ]] || die "no man page $page"
		warnings=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -l "$page" 2>&1 >/dev/null) ||
			die "man -l $page failed: $warnings"
		[[ -z $warnings ]] || die "man -l $page warns:"$'\n'"$warnings"
	done
	log "man pages render without warnings: $*"
}
