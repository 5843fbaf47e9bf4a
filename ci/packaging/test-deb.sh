#!/usr/bin/env bash
# The Debian package in a Debian chroot with the real slurmctld of that suite:
#   trixie: Slurm 24.11.5     forky: Slurm 26.05.5
# on a private copy of the rig's chroot (the shared one is never changed).
#
#  1. make deb for that release (lintian-clean; see deb.sh);
#  2. apt-get install of the .deb over Debian's slurm-wlm-kafka-plugin replaces it;
#  3. slurmctld loads our plugin from Debian's PluginDir (the init line names the
#     version) and job records reach Apache Kafka 4;
#  4. with the broker down, records wait (the packaged jobcomp-kafka tool shows
#     them); after `apt-get remove` and `purge`
#     StateSaveLocation is unchanged, and after reinstalling they are delivered
#     (once each, the records of step 3 not again: the broker keeps its data);
#  5. another slurmctld release (a stand-in .deb of slurmctld X.Y.Z+1): dpkg -i
#     fails on our Breaks (left unconfigured), and apt-get installs it only by
#     removing our package: no plugin is left that could not load.
# Steps 1-2 run the Debian commands of README.md ("The shortest path") and
# docs/installing.md ("Debian / Ubuntu package"): deb.sh is `make deb`, with
# JK_INSTALL_BUILD_DEPS=1 for its apt-get install of the build dependencies.
# Usage: ci/packaging/test-deb.sh trixie|forky
set -euo pipefail
suite=${1:?usage: test-deb.sh trixie|forky}
RIG_NAME=test-deb-$suite
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case $suite in
trixie) slurm=24.11.5 other=24.11.6 ctld_port=20420 slurmd_port=20421 broker_port=20422 ;;
forky) slurm=26.05.5 other=26.05.6 ctld_port=20430 slurmd_port=20431 broker_port=20432 ;;
*) die "suite must be trixie or forky" ;;
esac
chroot_rig=$PKG_TOP/ci/rig/slurm-chroot.sh
shared=$RIG_CACHE/chroot-$suite
root=$PKG_CACHE/chroot-$suite
dir=$root/rig/pkg
broker_dir=$PKG_CACHE/kafka-$suite
bootstrap=127.0.0.1:$broker_port
topic=jkpkg
t0=$(now_ms)

cleanup() {
	[[ -f $dir/rig.env ]] && "$chroot_rig" stop "$dir" >/dev/null 2>&1
	pkg_broker stop "$broker_dir"
	[[ -d $root ]] && { "$chroot_rig" unmount "$root" >/dev/null 2>&1 || true; }
	[[ ${JK_KEEP:-0} == 1 ]] || rm -rf --one-file-system "$root"
}
trap cleanup EXIT

# 1. The package (a kept CARGO_TARGET_DIR: only this crate is rebuilt).
deb=$(CARGO_TARGET_DIR=$PKG_CACHE/target-deb JK_DEB_STAGE=$PKG_CACHE/deb-stage JK_INSTALL_BUILD_DEPS=1 \
	"$PKG_TOP/ci/packaging/deb.sh" "$slurm")
log "built $(basename "$deb") (lintian clean) in $(($(now_ms) - t0)) ms"
depends=$(dpkg-deb -f "$deb" Depends)
[[ $(dpkg-deb -f "$deb" Version) == "$PKG_VERSION+slurm$slurm-1" ]] || die "version $(dpkg-deb -f "$deb" Version)"
# The pin: every Debian revision of exactly $slurm, nothing else.
pin_ok() { # VERSION -> satisfies both slurmctld relations of Depends
	local rel ver
	while read -r rel ver; do
		dpkg --compare-versions "$1" "$rel" "$ver" || return 1
	done < <(grep -o 'slurmctld ([^)]*)' <<<"$depends" | sed 's/slurmctld (\(.*\) \(.*\))/\1 \2/')
}
for v in "$slurm-1" "$slurm-4+deb13u1" "$slurm-2~bpo12+1" "$slurm+dfsg-1" "$(chroot "$shared" dpkg-query -W -f='${Version}' slurmctld)"; do
	pin_ok "$v" || die "Depends ($depends) refuses slurmctld $v"
done
for v in "$other-1" "${slurm%.*}.$((${slurm##*.} - 1))-9" "$slurm~rc1-1" "$slurm.1-1" "${slurm}0-1" "1:$slurm-1"; do
	pin_ok "$v" && die "Depends ($depends) accepts slurmctld $v"
done
log "Depends pins slurmctld to $slurm: $depends"
for lib in libssl3 libsasl2-2 libcurl4 zlib1g libc6; do
	grep -q "\b$lib\b" <<<"$depends" || die "Depends lacks $lib (dpkg-shlibdeps): $depends"
done

# 2. A private copy of the suite's chroot (Debian's plugin is installed there).
"$chroot_rig" build "$shared" >/dev/null 2>&1 || SUITE=$suite "$chroot_rig" build "$shared"
cleanup
mkdir -p "$root"
tar -C "$shared" --one-file-system --exclude=./proc --exclude=./sys --exclude=./dev --exclude=./rig \
	-cf - . | tar -C "$root" -xpf -
mkdir -p "$root/proc" "$root/sys" "$root/dev"
log "chroot copied to $root in $(($(now_ms) - t0)) ms"
"$chroot_rig" mount "$root"
ch() { chroot "$root" env DEBIAN_FRONTEND=noninteractive "$@"; }
apt_in() { ch apt-get -q -o DPkg::Lock::Timeout=600 "$@"; }
installed() { [[ $(ch dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }
plugin=/usr/lib/x86_64-linux-gnu/slurm-wlm/jobcomp_kafka.so
installed slurm-wlm-kafka-plugin || die "Debian's slurm-wlm-kafka-plugin is not installed in $shared"
cp "$deb" "$root/tmp/"
apt_in install -y --no-install-recommends "/tmp/$(basename "$deb")" >"$PKG_CACHE/apt-$suite.log" 2>&1 ||
	{ cat "$PKG_CACHE/apt-$suite.log" >&2; die "apt-get install of our package failed"; }
installed jobcomp-kafka || die "jobcomp-kafka not installed"
installed slurm-wlm-kafka-plugin && die "slurm-wlm-kafka-plugin is still installed next to ours"
[[ $(ch dpkg -S "$plugin") == "jobcomp-kafka: $plugin" ]] || die "$plugin is not ours: $(ch dpkg -S "$plugin")"
[[ $(stat -c %a "$root/usr/share/doc/jobcomp-kafka/examples/jobcomp_kafka.conf.example") == 600 ]] ||
	die "the example JobCompLoc is not mode 0600"
[[ -f $root/usr/share/doc/jobcomp-kafka/README.md.gz ]] || die "no README in /usr/share/doc/jobcomp-kafka"
[[ $(ch dpkg -S /usr/sbin/jobcomp-kafka) == "jobcomp-kafka: /usr/sbin/jobcomp-kafka" ]] || die "no /usr/sbin/jobcomp-kafka in the package"
[[ -f $root/usr/share/man/man8/jobcomp-kafka.8.gz ]] || die "no jobcomp-kafka(8) man page"
[[ -f $root/usr/share/jobcomp-kafka/schema/24.11/finish.schema.json && -f $root/usr/share/jobcomp-kafka/schema/common.schema.json ]] ||
	die "no record schemas in /usr/share/jobcomp-kafka/schema"
[[ -f $root/usr/share/man/man5/jobcomp_kafka.5.gz ]] || die "no jobcomp_kafka(5) man page"
check_man_page "$root/usr/share/man/man8/jobcomp-kafka.8.gz" "$root/usr/share/man/man5/jobcomp_kafka.5.gz"
cmp -s "$root/usr/share/jobcomp-kafka/jobcomp-kafka.rules.yml" "$PKG_TOP/ci/packaging/alerts/jobcomp-kafka.rules.yml" ||
	die "the package lacks the alerting rules in /usr/share/jobcomp-kafka/"
compgen -G "$root/usr/share/doc/jobcomp-kafka/docs/operating.md*" >/dev/null || die "no docs/ in /usr/share/doc/jobcomp-kafka"
[[ -z $(dpkg-deb -f "$deb" Homepage) ]] || die "Homepage names an address the project has not published: $(dpkg-deb -f "$deb" Homepage)"
log "installed over slurm-wlm-kafka-plugin (removed); $plugin belongs to jobcomp-kafka"

# 3. slurmctld loads it; records arrive.
rm -rf "$broker_dir"
pkg_broker start "$broker_dir" "$broker_port"
mkdir -p "$dir"
printf 'bootstrap.servers=%s\nmessage.timeout.ms=300000\n' "$bootstrap" >"$dir/jobcomp_kafka.conf"
chmod 0600 "$dir/jobcomp_kafka.conf"
"$chroot_rig" start "$root" "$dir" --fresh --cluster "$topic" --jobcomp jobcomp/kafka \
	--jobcomp-loc "$dir/jobcomp_kafka.conf" --ctld-port "$ctld_port" --slurmd-port "$slurmd_port" >/dev/null
grep -q "jobcomp-kafka $PKG_VERSION (built for Slurm $slurm) starting" "$dir/slurmctld.log" ||
	die "slurmctld did not log our init line; see $dir/slurmctld.log"
run_jobs() { # N -> prints the job ids once they ended
	local i id ids=()
	for ((i = 0; i < $1; i++)); do
		id=$("$chroot_rig" run "$dir" sbatch --parsable --wrap "echo package test $i") || die "sbatch failed"
		ids+=("$id")
	done
	for id in "${ids[@]}"; do "$chroot_rig" wait-job "$dir" "$id" 60 >/dev/null || die "job $id did not end"; done
	echo "${ids[*]}"
}
first=$(run_jobs 3)
# shellcheck disable=SC2086
expect_records "$bootstrap" "$topic" $first

# 4. Broker down: records wait in StateSaveLocation through remove/purge/reinstall.
pkg_broker stop "$broker_dir"
waiting=$(run_jobs 2)
"$chroot_rig" stop "$dir" >/dev/null
[[ -s $dir/state/jobcomp_kafka_state ]] || die "no undelivered records saved in StateSaveLocation (the test needs some)"
# The packaged tool, inside the chroot, sees the two records handed over at fini.
status=$(ch /usr/sbin/jobcomp-kafka -d "${dir#"$root"}/state" status) || die "jobcomp-kafka status failed: $status"
grep -qx "state file: 2 record(s) handed over at fini (produced at the next start)" <<<"$status" ||
	die "jobcomp-kafka status does not show the 2 saved records:"$'\n'"$status"
saved_jobs=$(ch /usr/sbin/jobcomp-kafka -d "${dir#"$root"}/state" dump --saved | python3 -c '
import json, sys
print(" ".join(sorted(str(json.loads(line)["job_id"]) for line in sys.stdin)))')
want=$(tr ' ' '\n' <<<"$waiting" | sort | xargs)
[[ $saved_jobs == "$want" ]] || die "jobcomp-kafka dump --saved shows jobs '$saved_jobs', not '$want'"
log "jobcomp-kafka (the packaged tool) shows jobs $saved_jobs saved in StateSaveLocation"
before=$(state_digest "$dir/state")
apt_in remove -y jobcomp-kafka >>"$PKG_CACHE/apt-$suite.log" 2>&1 || die "apt-get remove failed"
[[ ! -e $root$plugin ]] || die "$plugin left behind by apt-get remove"
[[ $(state_digest "$dir/state") == "$before" ]] || die "apt-get remove changed StateSaveLocation"
ch dpkg --purge jobcomp-kafka >>"$PKG_CACHE/apt-$suite.log" 2>&1 || die "dpkg --purge failed"
[[ $(state_digest "$dir/state") == "$before" ]] || die "dpkg --purge changed StateSaveLocation"
apt_in install -y --no-install-recommends "/tmp/$(basename "$deb")" >>"$PKG_CACHE/apt-$suite.log" 2>&1 || die "reinstall failed"
pkg_broker start "$broker_dir" "$broker_port"
"$chroot_rig" start "$root" "$dir" --cluster "$topic" --jobcomp jobcomp/kafka --jobcomp-loc "$dir/jobcomp_kafka.conf" \
	--ctld-port "$ctld_port" --slurmd-port "$slurmd_port" >/dev/null
# The broker kept the topic: the first records once, and exactly the records
# saved while it was down.
# shellcheck disable=SC2086
expect_records "$bootstrap" "$topic" $first $waiting
"$chroot_rig" stop "$dir" >/dev/null
log "records of jobs $waiting survived remove, purge and reinstall, and were delivered"

# 5. Another slurmctld release: a stand-in package slurmctld $other-1.
fake=$PKG_CACHE/fake-slurmctld-$other
rm -rf "$fake" && mkdir -p "$fake/DEBIAN"
cat >"$fake/DEBIAN/control" <<CONTROL
Package: slurmctld
Version: $other-1
Architecture: amd64
Maintainer: jobcomp-kafka tests <jobcomp-kafka@example.org>
Description: stand-in for a different Slurm release (package test only)
CONTROL
dpkg-deb --root-owner-group --build "$fake" "$root/tmp/slurmctld_$other-1_amd64.deb" >/dev/null
have=$(ch dpkg-query -W -f='${Version}' slurmctld)
# dpkg alone unpacks it but, because of our Breaks, refuses to configure it
# (an error naming our package); apt-get below must settle it.
if ch dpkg -i "/tmp/slurmctld_$other-1_amd64.deb" >"$PKG_CACHE/dpkg-other-$suite.log" 2>&1; then
	die "dpkg -i slurmctld $other succeeded while jobcomp-kafka (for $slurm) is installed"
fi
grep -q "jobcomp-kafka .* breaks slurmctld" "$PKG_CACHE/dpkg-other-$suite.log" ||
	die "dpkg -i slurmctld $other failed, but not for our Breaks: $(cat "$PKG_CACHE/dpkg-other-$suite.log")"
log "dpkg -i slurmctld $other: not configured ($(grep -m1 -o 'jobcomp-kafka .* breaks slurmctld.*' "$PKG_CACHE/dpkg-other-$suite.log"))"
# apt resolves the state dpkg left (-f): it installs the requested release only
# by removing our package, as the README says ("apt removes this package to do
# it"); that outcome and no other.
apt_in install -y -f "/tmp/slurmctld_$other-1_amd64.deb" >"$PKG_CACHE/apt-other-$suite.log" 2>&1 ||
	die "apt-get install slurmctld $other failed: $(tail -n 20 "$PKG_CACHE/apt-other-$suite.log")"
[[ $(ch dpkg-query -W -f='${Version}' slurmctld) == "$other-1" ]] ||
	die "apt-get install slurmctld $other left slurmctld $(ch dpkg-query -W -f='${Version}' slurmctld)"
installed jobcomp-kafka && die "slurmctld $other installed and jobcomp-kafka (for $slurm) kept"
[[ ! -e $root$plugin ]] || die "slurmctld $other installed and $plugin left behind"
log "apt-get install slurmctld $other removed jobcomp-kafka (and its plugin)"
log "PASS: Debian package on $suite (Slurm $slurm) in $(($(now_ms) - t0)) ms"
