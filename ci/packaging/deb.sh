#!/usr/bin/env bash
# make deb: a Debian package of the plugin for one exact Slurm release, built by
# dpkg-buildpackage (debhelper) from the `make dist` release tree, then checked
# with lintian (every tag fails the build unless debian/*.lintian-overrides
# explains it).
#
# Usage: ci/packaging/deb.sh SLURM_VERSION [OUTDIR]   (default OUTDIR build/packages)
#   Package: jobcomp-kafka, version <Cargo.toml version>+slurm<X.Y.Z>-1, e.g.
#   build/packages/jobcomp-kafka_0.1.0+slurm24.11.5-1_amd64.deb
#   Environment: CARGO_TARGET_DIR (kept between builds: only this crate is
#   rebuilt), JK_DEB_STAGE (the staging directory; default build/deb),
#   JK_INSTALL_BUILD_DEPS=1 (apt-get install unmet Build-Depends first),
#   HOMEPAGE (the project's public address for the Homepage field; none by
#   default: the project has no public home yet).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
slurm=${1:?usage: deb.sh SLURM_VERSION [OUTDIR]}
[[ $slurm =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "error: SLURM_VERSION=$slurm is not a release like 24.11.5" >&2; exit 2; }
out=$(mkdir -p "${2:-$top/build/packages}" && cd "${2:-$top/build/packages}" && pwd)
version=$("$here/version.sh" "$top/Cargo.toml")
debversion=$version+slurm$slurm-1
stage_parent=$(mkdir -p "${JK_DEB_STAGE:-$top/build/deb}" && cd "${JK_DEB_STAGE:-$top/build/deb}" && pwd)
stage=$stage_parent/jobcomp-kafka-$version

# The staging tree is the release tree (vendored crates, offline cargo
# configuration): from `make dist` in a git checkout, else this tree itself.
rm -rf "$stage"
mkdir -p "$stage"
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
	tarball=$("$here/dist.sh" "$out")
	# Dates kept (see dist.sh): a kept CARGO_TARGET_DIR rebuilds this crate only.
	tar -C "$stage" --strip-components=1 -xzf "$tarball"
else
	[[ -d $top/vendor ]] || { echo "error: neither a git checkout nor a release tree (no vendor/)" >&2; exit 2; }
	(cd "$top" && tar --exclude=./build --exclude=./target --exclude=./debian -cf - .) | tar -C "$stage" -xf -
fi

# debian/ from its template, with the project's version and the Slurm release.
mkdir -p "$stage/debian"
cp -a "$here/debian/." "$stage/debian/"
# The changelog's date becomes SOURCE_DATE_EPOCH, which the C builds of the
# -sys crates watch: the vendored crates' date (the last Cargo.lock change, see
# dist.sh) keeps it, and so a kept CARGO_TARGET_DIR, stable from build to build.
date=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(stat -c %Y "$stage/vendor")}")
for f in control changelog; do
	sed -e "s/@VERSION@/$version/g" -e "s/@SLURM@/$slurm/g" -e "s/@DEBVERSION@/$debversion/g" \
		-e "s/@DATE@/$date/g" "$stage/debian/$f.in" >"$stage/debian/$f"
	rm "$stage/debian/$f.in"
done
echo "$slurm" >"$stage/debian/slurm-version"
if [[ -n ${HOMEPAGE:-} ]]; then
	sed -i "s|^Standards-Version: .*|&\nHomepage: $HOMEPAGE|" "$stage/debian/control"
	sed -i '/no-homepage-field/d' "$stage/debian/jobcomp-kafka.lintian-overrides"
fi

# No Debian cargo (bookworm's is too old anyway): the toolchain is rustup's,
# named by the build profile instead of Build-Depends.
profiles=()
dpkg-query -W -f='${Status}' cargo 2>/dev/null | grep -q 'install ok installed' || profiles=(--build-profiles=pkg.jobcomp-kafka.rustup)
if [[ ${JK_INSTALL_BUILD_DEPS:-0} == 1 ]]; then
	unmet=$(cd "$stage" && dpkg-checkbuilddeps ${profiles:+-Ppkg.jobcomp-kafka.rustup} 2>&1 | sed -n 's/.*Unmet build dependencies: //p' |
		sed 's/([^)]*)//g; s/<[^>]*>//g; s/|[^ ]*//g') || true
	if [[ -n $unmet ]]; then
		echo "installing Build-Depends: $unmet" >&2
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $unmet >/dev/null
	fi
fi

rm -f "$stage_parent"/jobcomp-kafka*_"$debversion"_* "$stage_parent"/jobcomp-kafka_"$debversion".*
(cd "$stage" && dpkg-buildpackage -b -us -uc "${profiles[@]}" >"$stage_parent/build.log" 2>&1) ||
	{ tail -n 40 "$stage_parent/build.log" >&2; echo "error: dpkg-buildpackage failed; full log: $stage_parent/build.log" >&2; exit 1; }

changes=$stage_parent/jobcomp-kafka_${debversion}_$(dpkg-architecture -qDEB_HOST_ARCH).changes
# lintian: any tag not overridden (with its reason) in debian/ fails the build.
lintian --fail-on error,warning,info,pedantic --pedantic --info "$changes" >"$stage_parent/lintian.log" 2>&1 ||
	{ cat "$stage_parent/lintian.log" >&2; echo "error: lintian found problems (above)" >&2; exit 1; }
for f in $(awk '/^Files:/ { on = 1; next } /^[^ ]/ { on = 0 } on { print $5 }' "$changes"); do
	cp "$stage_parent/$f" "$out/"
done
cp "$changes" "$out/"
echo "$out/jobcomp-kafka_${debversion}_$(dpkg-architecture -qDEB_HOST_ARCH).deb"
