#!/usr/bin/env bash
# make build: the plugin and the jobcomp-kafka tool for $SLURM_VERSION, copied
# from cargo's profile directory into OUT.
#
#   ci/build-plugin.sh OUT PROFILE_DIR
#
# `make test` runs the real-rig suites in two lanes side by side, and each
# builds the plugin for its own release into the same target directory: the
# lock (held from cargo build to the copies) keeps a lane from copying another
# lane's build. The copies are renamed into place, so a slurmctld running the
# plugin from OUT keeps the file it mapped.
set -euo pipefail
out=${1:?usage: build-plugin.sh OUT PROFILE_DIR}
profile_dir=${2:?usage: build-plugin.sh OUT PROFILE_DIR}

build_and_copy() {
	${CARGO:-cargo} build --release --lib --bin jobcomp-kafka
	mkdir -p "$out"
	local from to
	for pair in libjobcomp_kafka.so:jobcomp_kafka.so jobcomp-kafka:jobcomp-kafka; do
		from=$profile_dir/${pair%%:*} to=$out/${pair#*:}
		install -m 0755 "$from" "$to.new"
		mv -f "$to.new" "$to"
	done
}
# The same lock file as build_lock in ci/lib/common.sh (not sourced here: this
# script also runs in the release tarball's offline and RPM builds).
mkdir -p "$profile_dir"
(
	flock -w 1800 9 || { echo "error: could not lock $profile_dir/.jk-build.lock" >&2; exit 1; }
	build_and_copy
) 9>"$profile_dir/.jk-build.lock"
