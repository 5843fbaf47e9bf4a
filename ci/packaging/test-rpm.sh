#!/usr/bin/env bash
# The RPM, as far as it can be tested on Debian (RHEL cannot run here):
#  1. the spec inside the release tarball parses (rpmspec -P): the Slurm
#     release comes from slurm_version.h (here: libslurm-dev's 22.05.8; on RHEL
#     slurm-devel's) or --define slurm_version, and pins Requires/BuildRequires;
#  2. `rpmbuild -tb` builds it from the tarball, in a network namespace with
#     loopback only; --nodeps because its BuildRequires are RHEL packages that
#     no rpm database on Debian lists (the same libraries are installed as
#     Debian packages);
#  3. rpm -qpl / -qpR / modes: plugin in %{_libdir}/slurm, the jobcomp-kafka
#     tool in %{_sbindir} with its man page, docs, example 0600;
#  4. rpm's own resolver (rpm -i --test on a scratch database) accepts the
#     package next to slurm-slurmctld 22.05.8-3.el9 and refuses it next to
#     22.05.9-1.el9 and 22.05.7-1.el9.
# Not proven here: a build on RHEL with its toolchain and -devel packages, the
# RHEL library names in the automatic Requires (libsasl2.so.3 there, .so.2 on
# Debian), and slurmctld from SchedMD's RPMs loading it.
# Usage: ci/packaging/test-rpm.sh
set -euo pipefail
RIG_NAME=test-rpm
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
slurm=$("$PKG_TOP/ci/slurm-version.sh")
[[ -n $slurm ]] || die "no Slurm headers installed (libslurm-dev)"
topdir=$PKG_CACHE/rpm
t0=$(now_ms)
tarball=$("$PKG_TOP/ci/packaging/dist.sh" 2>"$PKG_CACHE/dist.log") || { cat "$PKG_CACHE/dist.log" >&2; die "make dist failed"; }
rm -rf "$topdir" && mkdir -p "$topdir"
tar -xzOf "$tarball" "jobcomp-kafka-$PKG_VERSION/jobcomp-kafka.spec" >"$topdir/jobcomp-kafka.spec"

# 1. The spec's macros.
parsed=$(rpmspec -P "$topdir/jobcomp-kafka.spec")
grep -qx "Version:        $PKG_VERSION" <<<"$parsed" || die "spec Version is not $PKG_VERSION"
grep -qx "Release:        1.slurm$slurm" <<<"$parsed" || die "spec Release: $(grep ^Release <<<"$parsed")"
grep -qx "Requires:       slurm-slurmctld = $slurm" <<<"$parsed" || die "spec Requires: $(grep ^Requires <<<"$parsed")"
grep -qx "BuildRequires:  slurm-devel = $slurm" <<<"$parsed" || die "spec lacks BuildRequires slurm-devel = $slurm"
other=$(rpmspec -P --define 'slurm_version 24.11.5' "$topdir/jobcomp-kafka.spec")
grep -qx "Requires:       slurm-slurmctld = 24.11.5" <<<"$other" || die "--define slurm_version not honoured"
none=$(rpmspec -P --define '_includedir /nonexistent' "$topdir/jobcomp-kafka.spec")
grep -qx "Release:        1.slurmunknown" <<<"$none" || die "without slurm_version.h the release must be 'unknown' (and %prep stops)"
log "spec parses: release $slurm from slurm_version.h, --define slurm_version honoured"

# 2. rpmbuild -tb, offline; the same build directory as test-dist.sh's
# offline build, but a kept CARGO_TARGET_DIR of its own: sharing test-dist's,
# the -sys crates (librdkafka, OpenSSL, Cyrus SASL, curl, zlib) were compiled
# again by each of the two in turn, rpmbuild's environment not being the
# plain build's (5-6 min each in make test; a warm build rebuilds this crate
# only). Debian's rpm leaves %_licensedir undefined; it is given RHEL's value.
cargo_bin=$(rustup which cargo 2>/dev/null || command -v cargo)
export CARGO_TARGET_DIR=$PKG_CACHE/target-rpm
mkdir -p "$PKG_CACHE/release" "$PKG_CACHE/cargo-home-empty"
CARGO_HOME=$PKG_CACHE/cargo-home-empty PATH=$(dirname "$cargo_bin"):$PATH unshare -n \
	rpmbuild -tb --nodeps --define "_topdir $topdir" --define "_builddir $PKG_CACHE/release" \
	--define "_licensedir /usr/share/licenses" "$tarball" \
	>"$topdir/rpmbuild.log" 2>&1 </dev/null ||
	{ tail -n 30 "$topdir/rpmbuild.log" >&2; die "rpmbuild -tb failed (log: $topdir/rpmbuild.log)"; }
rpm=$(compgen -G "$topdir/RPMS/*/jobcomp-kafka-$PKG_VERSION-1.slurm$slurm*.rpm" | head -n1)
[[ -n $rpm ]] || die "no jobcomp-kafka-$PKG_VERSION-1.slurm$slurm*.rpm in $topdir/RPMS"
log "rpmbuild -tb (offline, --nodeps) built $(basename "$rpm") in $(($(now_ms) - t0)) ms"

# 3. Contents and dependencies.
files=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$rpm" 2>/dev/null)
for want in "-rwxr-xr-x /usr/lib64/slurm/jobcomp_kafka.so" "-rw------- /usr/share/doc/jobcomp-kafka/jobcomp_kafka.conf.example" \
	"-rw-r--r-- /usr/share/doc/jobcomp-kafka/README.md" "-rwxr-xr-x /usr/sbin/jobcomp-kafka"; do
	grep -qxF -- "$want" <<<"$files" || die "rpm lacks '$want'; has:"$'\n'"$files"
done
# rpm compresses man pages or not depending on the build host's macros.
grep -qE -- '^-rw-r--r-- /usr/share/man/man8/jobcomp-kafka\.8(\.gz|\.bz2|\.xz|\.zst)?$' <<<"$files" ||
	die "rpm lacks the jobcomp-kafka(8) man page; has:"$'\n'"$files"
grep -qE -- '^-rw-r--r-- /usr/share/man/man5/jobcomp_kafka\.5(\.gz|\.bz2|\.xz|\.zst)?$' <<<"$files" ||
	die "rpm lacks the jobcomp_kafka(5) man page; has:"$'\n'"$files"
for want in "-rw-r--r-- /usr/share/jobcomp-kafka/jobcomp-kafka.rules.yml" "-rw-r--r-- /usr/share/doc/jobcomp-kafka/docs/operating.md" \
	"-rw-r--r-- /usr/share/jobcomp-kafka/schema/common.schema.json"; do
	grep -qxF -- "$want" <<<"$files" || die "rpm lacks '$want'; has:"$'\n'"$files"
done
# The record schemas (docs/record.md): one finish schema per series in schema/, each packaged.
for schema in "$PKG_TOP"/schema/*/finish.schema.json "$PKG_TOP"/schema/*/start.schema.json; do
	schema=${schema#"$PKG_TOP"/}
	grep -qxF -- "-rw-r--r-- /usr/share/jobcomp-kafka/$schema" <<<"$files" || die "rpm lacks the record schema /usr/share/jobcomp-kafka/$schema"
done
[[ $(rpm -qp --qf '%{URL}' "$rpm" 2>/dev/null) == "(none)" ]] || die "rpm URL names an address the project has not published"
# The man pages as packaged, rendered with warnings on.
rm -rf "$topdir/payload" && mkdir -p "$topdir/payload"
(cd "$topdir/payload" && rpm2cpio "$rpm" | cpio -idm --quiet ./usr/share/man/\*)
check_man_page "$topdir"/payload/usr/share/man/man8/jobcomp-kafka.8* "$topdir"/payload/usr/share/man/man5/jobcomp_kafka.5*
# RHEL: /usr/share/licenses/jobcomp-kafka; Debian's rpm 4.18 adds -<version>.
grep -qE -- "^-rw-r--r-- /usr/share/licenses/jobcomp-kafka(-$PKG_VERSION)?/COPYING$" <<<"$files" || die "rpm lacks the license"
requires=$(rpm -qpR "$rpm" 2>/dev/null)
grep -qx "slurm-slurmctld = $slurm" <<<"$requires" || die "rpm Requires lacks slurm-slurmctld = $slurm"
for lib in libssl.so.3 libcrypto.so.3 libcurl.so.4 libsasl2.so libz.so.1; do
	grep -q "^$lib" <<<"$requires" || die "rpm Requires lacks $lib (automatic library dependencies)"
done
log "rpm -qpl/-qpR: plugin in /usr/lib64/slurm, jobcomp-kafka in /usr/sbin with its man page, docs, example 0600; Requires slurm-slurmctld = $slurm and the libraries"

# 4. rpm's resolver with stand-in packages in a scratch database: one
# slurm-slurmctld of a given version-release, one providing everything else.
stand_in() { # NAME VERSION RELEASE [PROVIDES...] -> path of the built rpm
	local name=$1 version=$2 release=$3 spec
	shift 3
	spec=$topdir/stand-in-$name-$version-$release.spec
	{
		echo "Name: $name"; echo "Version: $version"; echo "Release: $release"
		echo "Summary: stand-in for the package test"; echo "License: GPL-2.0-or-later"; echo "BuildArch: noarch"
		local p; for p in "$@"; do echo "Provides: $p"; done
		echo "%description"; echo "Stand-in (package test only)."; echo "%files"
	} >"$spec"
	rpmbuild -bb --quiet --define "_topdir $topdir/stand-in" "$spec" >/dev/null 2>&1 || die "building stand-in $name failed"
	echo "$topdir/stand-in/RPMS/noarch/$name-$version-$release.noarch.rpm"
}
mapfile -t others < <(grep -v '^slurm-slurmctld' <<<"$requires" | grep -v '^rpmlib(')
provider=$(stand_in jk-test-libraries 1 1 "${others[@]}")
resolves_with() { # VERSION-RELEASE of slurm-slurmctld -> rpm -i --test result
	local db=$topdir/db-$1 ctld
	ctld=$(stand_in slurm-slurmctld "${1%-*}" "${1##*-}")
	rm -rf "$db" && mkdir -p "$db"
	rpm --dbpath "$db" --initdb
	rpm --dbpath "$db" -i --justdb --nodeps --ignoreos "$provider" "$ctld" >/dev/null 2>&1 || die "stand-ins not installable"
	rpm --dbpath "$db" -i --test --ignoreos "$rpm" >"$topdir/resolve-$1.log" 2>&1
}
resolves_with "$slurm-3.el9" || { cat "$topdir/resolve-$slurm-3.el9.log" >&2; die "refused next to slurm-slurmctld $slurm-3.el9"; }
major_minor=${slurm%.*} micro=${slurm##*.}
for v in "$major_minor.$((micro + 1))-1.el9" "$major_minor.$((micro - 1))-1.el9"; do
	resolves_with "$v" && die "accepted next to slurm-slurmctld $v"
	grep -q "slurm-slurmctld = $slurm is needed" "$topdir/resolve-$v.log" || die "refused next to $v, but not for the pin: $(cat "$topdir/resolve-$v.log")"
done
log "PASS: rpm (Slurm $slurm) installs next to slurm-slurmctld $slurm-3.el9 only, in $(($(now_ms) - t0)) ms"
