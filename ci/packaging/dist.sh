#!/usr/bin/env bash
# make dist: build/packages/jobcomp-kafka-<version>.tar.gz, a source release that
# builds with no network at all.
#
# It holds the files git tracks (as they are in the working tree), every crate
# of Cargo.lock vendored by `cargo vendor` (from crates.io only: Cargo.lock has
# no other source; rdkafka-sys's crate carries librdkafka's C source, zstd-sys
# and the other -sys crates their C sources), .cargo/config.toml pointing cargo
# at vendor/ and forbidding the network, and jobcomp-kafka.spec (rendered from
# ci/packaging/rpm/) so that `rpmbuild -tb` finds it.
#
# Usage: ci/packaging/dist.sh [OUTDIR]     (default build/packages); prints the path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
version=$("$here/version.sh" "$top/Cargo.toml")
name=jobcomp-kafka-$version
out=$(mkdir -p "${1:-$top/build/packages}" && cd "${1:-$top/build/packages}" && pwd)
git -C "$top" rev-parse --git-dir >/dev/null 2>&1 ||
	{ echo "error: make dist needs a git checkout (an unpacked tarball is already the release)" >&2; exit 2; }

if grep '^source = ' "$top/Cargo.lock" | grep -qv '"registry+https://github.com/rust-lang/crates.io-index"'; then
	echo "error: Cargo.lock has a source other than crates.io; the release must vendor crates.io only" >&2
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/jk-dist.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/$name
mkdir -p "$stage"
# The project: tracked files only (no target/, build/, editor leftovers).
(cd "$top" && git ls-files -z | while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done |
	tar --null -T - -cf -) | tar -C "$stage" -xf -

# Every crate, exactly as Cargo.lock pins it (--locked: never re-resolved).
(cd "$top" && cargo vendor --locked --versioned-dirs -q "$stage/vendor" >/dev/null)
# rpmbuild -tb takes the spec file from the tarball and refuses one with two:
# librdkafka's own packaging/rpm/librdkafka.spec (inside rdkafka-sys, not used
# by the build) is left out, and so dropped from that crate's file checksums
# (cargo verifies every file listed there; the crate's checksum, which
# Cargo.lock pins, is kept).
python3 - "$stage/vendor" <<'PY'
import json, pathlib, sys
for checksums in pathlib.Path(sys.argv[1]).glob("*/.cargo-checksum.json"):
    crate = checksums.parent
    data = json.loads(checksums.read_text())
    specs = [name for name in data["files"] if name.endswith(".spec") or name.split("/")[-1] == "Specfile"]
    for name in specs:
        (crate / name).unlink()
        del data["files"][name]
        print(f"vendor: left out {crate.name}/{name} (a second spec file breaks rpmbuild -tb)", file=sys.stderr)
    if specs:
        checksums.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True))
PY
mkdir -p "$stage/.cargo"
cat >"$stage/.cargo/config.toml" <<'TOML'
# Written by `make dist`: build from the crates in vendor/, never from the network.
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "vendor"

[net]
offline = true
TOML

sed "s/@VERSION@/$version/g" "$here/rpm/jobcomp-kafka.spec.in" >"$stage/jobcomp-kafka.spec"

# Dates: the vendored crates carry the date of the last Cargo.lock commit
# (they change only with it), so a build directory kept between releases does
# not rebuild them (build scripts compare file dates); the project's own files
# carry the time of `make dist`, so such a build directory never takes an older
# build of this crate for current.
lock_date=$(git -C "$top" log -1 --format=%ct -- Cargo.lock)
find "$stage/vendor" -exec touch -h -d "@${lock_date:-0}" {} +
find "$stage" -path "$stage/vendor" -prune -o -exec touch -h {} +
tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner \
	--format=gnu -cf - "$name" | gzip -n -9 >"$work/$name.tar.gz"
# Atomic: a reader of an earlier tarball (a concurrent build) keeps reading it.
cp "$work/$name.tar.gz" "$out/.$name.tar.gz.$$"
mv "$out/.$name.tar.gz.$$" "$out/$name.tar.gz"
echo "$out/$name.tar.gz"
