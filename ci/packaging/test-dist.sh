#!/usr/bin/env bash
# The release tarball (make dist):
#  1. it holds the tracked files, every crate of Cargo.lock vendored from
#     crates.io (each crate's checksum equal to Cargo.lock's) and nothing else;
#  2. unpacked, `make build` works in a network namespace with nothing but
#     loopback, with an empty CARGO_HOME (no registry cache to fall back on);
#  3. the result loads in the host's real slurmctld 22.05.8 (init line with the
#     version) and a job's record reaches Apache Kafka 4.
# Usage: ci/packaging/test-dist.sh   (ports 20410-20413)
set -euo pipefail
RIG_NAME=test-dist
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
slurm=22.05.8
tree_parent=$PKG_CACHE/release
tree=$tree_parent/jobcomp-kafka-$PKG_VERSION
dir=$PKG_CACHE/host-rig
broker_dir=$PKG_CACHE/kafka-host
bootstrap=127.0.0.1:20412
t0=$(now_ms)
cleanup() {
	[[ -f $dir/rig.env ]] && "$PKG_TOP/ci/rig/slurm-host.sh" stop "$dir" >/dev/null 2>&1
	pkg_broker stop "$broker_dir"
}
trap cleanup EXIT

tarball=$("$PKG_TOP/ci/packaging/dist.sh" 2>"$PKG_CACHE/dist.log") || { cat "$PKG_CACHE/dist.log" >&2; die "make dist failed"; }
[[ $(basename "$tarball") == "jobcomp-kafka-$PKG_VERSION.tar.gz" ]] || die "tarball named $(basename "$tarball")"
log "$(basename "$tarball"): $(du -h "$tarball" | cut -f1)"

# 1. Contents.
tar -tzf "$tarball" >"$PKG_CACHE/dist-list.txt"
(cd "$PKG_TOP" && git ls-files) >"$PKG_CACHE/git-files.txt"
python3 - "$tarball" "$PKG_TOP/Cargo.lock" "$PKG_CACHE/git-files.txt" "jobcomp-kafka-$PKG_VERSION" <<'PY' || die "tarball contents (above)"
import json, sys, tarfile, tomllib
tarball, lock_path, git_list, prefix = sys.argv[1:]
lock = tomllib.load(open(lock_path, "rb"))
tracked = set(open(git_list).read().split("\n")) - {""}
problems = []
with tarfile.open(tarball) as tar:
    names = {m.name[len(prefix) + 1:]: m for m in tar.getmembers() if m.name != prefix}
    files = {n for n, m in names.items() if m.isfile()}
    crates = {}
    for package in lock["package"]:
        if package.get("source") is None:
            continue  # this project
        if package["source"] != "registry+https://github.com/rust-lang/crates.io-index":
            problems.append(f"{package['name']} {package['version']} comes from {package['source']}")
        crates[f"{package['name']}-{package['version']}"] = package["checksum"]
    for crate, checksum in crates.items():
        member = f"vendor/{crate}/.cargo-checksum.json"
        if member not in files:
            problems.append(f"{crate} is not vendored")
            continue
        vendored = json.load(tar.extractfile(f"{prefix}/{member}"))
        if vendored["package"] != checksum:
            problems.append(f"{crate}: vendored crate's checksum {vendored['package']} != Cargo.lock's {checksum}")
    extra_crates = {n.split("/")[1] for n in names if n.startswith("vendor/") and n.count("/") >= 1} - set(crates) - {""}
    problems += [f"vendor/{c} is not in Cargo.lock" for c in sorted(extra_crates)]
    generated = {".cargo/config.toml", "jobcomp-kafka.spec"}
    problems += [f"{n}: neither tracked by git nor vendored" for n in sorted(files)
                 if not n.startswith("vendor/") and n not in tracked and n not in generated]
    problems += [f"{n}: a VCS directory" for n in names if "/.git/" in f"/{n}/"]
    problems += [f"{n} tracked but missing" for n in sorted(tracked - files)]
    config = tar.extractfile(f"{prefix}/.cargo/config.toml").read().decode()
    if "offline = true" not in config or 'directory = "vendor"' not in config:
        problems.append(".cargo/config.toml does not make cargo use vendor/ offline")
for p in problems:
    print("tarball:", p, file=sys.stderr)
print(f"{len(crates)} crates vendored, all from crates.io with Cargo.lock's checksums", file=sys.stderr)
sys.exit(1 if problems else 0)
PY

# 2. Offline build: docs/installing.md's "Offline source build" commands, in a network
# namespace with loopback only and an empty CARGO_HOME. The build directory is
# kept between runs (CARGO_TARGET_DIR): a warm run rebuilds this crate only.
rm -rf "$tree" && mkdir -p "$tree_parent"
tar -C "$tree_parent" -xzf "$tarball"
cargo_bin=$(rustup which cargo 2>/dev/null || command -v cargo)
empty_home=$PKG_CACHE/cargo-home-empty
rm -rf "$empty_home" && mkdir -p "$empty_home"
export CARGO_TARGET_DIR=$PKG_CACHE/target-dist
CARGO_HOME=$empty_home PATH=$(dirname "$cargo_bin"):$PATH unshare -n bash -c '
	set -euo pipefail
	links=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\n" " ")
	[[ $links == "lo " ]] || { echo "network namespace has interfaces: $links" >&2; exit 1; }
	cd "$1" && make build SLURM_VERSION="$2" CARGO="$3"
' _ "$tree" "$slurm" "$cargo_bin" >"$PKG_CACHE/offline-build.log" 2>&1 < /dev/null ||
	{ tail -n 30 "$PKG_CACHE/offline-build.log" >&2; die "offline build failed (log: $PKG_CACHE/offline-build.log)"; }
so=$tree/build/slurm-$slurm/jobcomp_kafka.so
[[ -f $so ]] || die "no $so"
log "built offline (loopback-only namespace, empty CARGO_HOME) in $(($(now_ms) - t0)) ms"

# 3. The real slurmctld 22.05.8 loads it; a job's record arrives.
"$PKG_TOP/ci/rig/slurm-host.sh" install >/dev/null
mkdir -p "$dir"
rm -rf "$broker_dir"
pkg_broker start "$broker_dir" 20412
printf 'bootstrap.servers=%s\n' "$bootstrap" >"$dir/jobcomp_kafka.conf"
chmod 0600 "$dir/jobcomp_kafka.conf"
# make install into a private PluginDir (docs/installing.md, "Installing it into
# the PluginDir", with PLUGINDIR=) (the host's system directory is shared
# with the other suites).
(cd "$tree" && make install SLURM_VERSION=$slurm PLUGINDIR="$dir/plugins" CARGO="$cargo_bin" >/dev/null)
"$PKG_TOP/ci/rig/slurm-host.sh" start "$dir" --fresh --cluster jkdist --plugindir "$dir/plugins" \
	--jobcomp jobcomp/kafka --jobcomp-loc "$dir/jobcomp_kafka.conf" --ctld-port 20410 --slurmd-port 20411 >/dev/null
grep -q "jobcomp-kafka $PKG_VERSION (built for Slurm $slurm) starting" "$dir/slurmctld.log" ||
	die "slurmctld 22.05.8 did not log our init line; see $dir/slurmctld.log"
id=$("$PKG_TOP/ci/rig/slurm-host.sh" run "$dir" sbatch --parsable --chdir "$dir" --wrap "echo offline build") || die "sbatch failed"
"$PKG_TOP/ci/rig/slurm-host.sh" wait-job "$dir" "$id" 60 >/dev/null || die "job $id did not end"
expect_records "$bootstrap" jkdist "$id"
log "PASS: release tarball built offline, loaded by slurmctld $slurm, record delivered, in $(($(now_ms) - t0)) ms"
