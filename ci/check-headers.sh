#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Check the project's own struct declarations (slurm-headers/layout_<tag>.h)
# against the real headers of Debian's slurm-wlm source packages.
#
# Usage: ci/check-headers.sh [--refresh] [--strict] [--runtime|--no-runtime]
#                            [22.05.8|24.11.5|26.05.5|all]...
#   default: all.  --refresh: fetch and configure again even if cached.
#   --strict: also fail when a release could only be partly checked (no source).
#   --runtime: also gather runtime evidence where the real headers are there
#   (24.11.5: a self-test of that method); --no-runtime: never.
#
# For each release: fetch the exact Debian source package of that suite through a
# private apt directory (the host's apt sources stay untouched), unpack it (Debian
# patches applied), ./configure it, then compile two small probes that print
# offsetof/sizeof/member size/member type for every member our header declares:
# one against the real headers, one against ours. Any difference fails (exit 1).
#
# Everything is cached under $JK_CACHE (default /var/tmp/jobcomp-kafka): a warm run
# takes a second or two. Releases are checked in parallel.
#
# If a suite's mirror lacks part of the source package, the script degrades in
# this order, and says so on the summary line:
#   1. a complete source package (.dsc): dpkg-source -x;
#   2. the upstream orig tarball plus the newest available debian.tar.* of the
#      same upstream version (hash-verified against the signed Sources index),
#      patches applied in debian/patches/series order (what dpkg-source does);
#   3. only the public headers of that suite's libslurm-dev binary package:
#      slurm_conf_t, slurm_step_id, slurmdb_assoc_rec(+usage), slurmdb_qos_rec
#      are checked that way. The internal structs are then checked against
#      binary evidence: the member loads in SchedMD's compiled jobcomp/kafka
#      plugin of that suite (slurm-wlm-kafka-plugin-dev, jobcomp_common.o; see
#      ci/headers/binary-offsets.py). A member that differs there fails; members
#      nothing shows are listed as UNVERIFIED (exit 0, or 1 with --strict).
#      And runtime evidence (Debian forky 26.05.5 has no source on the mirror):
#      ci/headers/runtime-probe.sh runs a known job mix under that suite's real
#      slurmctld (the cached chroot of ci/rig/slurm-chroot.sh) with a probe
#      jobcomp plugin that dumps every job record; ci/headers/runtime-layout.py
#      finds each member where its known value is (and each sizeof in xmalloc's
#      size word). A member found elsewhere fails. Needs root; ~12 s, then
#      cached under $JK_CACHE/src/RELEASE/runtime until the probe or the
#      chroot's Slurm changes.
# Where the real headers are available the binary evidence is still read, as a
# self-test of that heuristic (a disagreement with the real headers warns).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
CACHE=${JK_CACHE:-/var/tmp/jobcomp-kafka}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
CC=${CC:-gcc}
HEADERS=${JK_HEADERS_DIR:-$ROOT/slurm-headers}   # override: for testing the check itself

# release -> suite, security suite ("" if none), layout tag
declare -A SUITE=([22.05.8]=bookworm [24.11.5]=trixie [26.05.5]=forky)
declare -A SECURITY=([22.05.8]=bookworm-security [24.11.5]=trixie-security [26.05.5]=)
declare -A LAYOUT=([22.05.8]=22_05_8 [24.11.5]=24_11_7 [26.05.5]=26_05_5)
# Releases with a Debian chroot for runtime evidence (ci/headers/runtime-probe.sh).
declare -A RUNTIME_SUITE=([24.11.5]=trixie [26.05.5]=forky)
ALL=(22.05.8 24.11.5 26.05.5)

REFRESH=0
STRICT=0
RUNTIME=auto
RELEASES=()
for arg in "$@"; do
	case "$arg" in
	--refresh) REFRESH=1 ;;
	--strict) STRICT=1 ;;
	--runtime) RUNTIME=always ;;
	--no-runtime) RUNTIME=never ;;
	all) RELEASES+=("${ALL[@]}") ;;
	-h|--help) sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*)
		if [[ -z "${SUITE[$arg]:-}" ]]; then
			echo "check-headers: unknown release '$arg' (known: ${ALL[*]} all)" >&2
			exit 2
		fi
		RELEASES+=("$arg") ;;
	esac
done
[[ ${#RELEASES[@]} -gt 0 ]] || RELEASES=("${ALL[@]}")

log() { printf '%s\n' "$*" >&2; }
die() { log "check-headers: $*"; exit 1; }

# ---- tools ------------------------------------------------------------------
ensure_tools() {
	local missing=() t pkg
	for t in gcc:gcc make:make dpkg-source:dpkg-dev patch:patch xz:xz-utils \
		flock:util-linux /usr/lib/apt/apt-helper:apt python3:python3-minimal \
		objdump:binutils readelf:binutils ar:binutils; do
		pkg=${t##*:}
		command -v "${t%%:*}" >/dev/null 2>&1 || [[ -x "${t%%:*}" ]] || missing+=("$pkg")
	done
	[[ -r $KEYRING ]] || missing+=(debian-archive-keyring)
	if [[ ${#missing[@]} -gt 0 ]]; then
		log "check-headers: installing ${missing[*]}"
		apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
			{ apt-get update -qq && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
	fi
}

# ---- private apt -------------------------------------------------------------
# apt_opts NAME: options that make apt-get/apt-cache use only $CACHE/apt/NAME.
apt_opts() {
	local d=$CACHE/apt/$1
	printf '%s\n' -o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null \
		-o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" \
		-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null \
		-o APT::Sandbox::User=root
}

# apt_setup NAME TYPE SUITE [SECURITY_SUITE]: write sources.list, apt-get update.
apt_setup() {
	local name=$1 type=$2 suite=$3 sec=${4:-} d=$CACHE/apt/$1
	mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
	{
		echo "$type [signed-by=$KEYRING] $MIRROR $suite main"
		[[ -z "$sec" ]] || echo "$type [signed-by=$KEYRING] $SECURITY_MIRROR $sec main"
	} >"$d/sources.list"
	local -a opts
	mapfile -t opts < <(apt_opts "$name")
	apt-get -qq "${opts[@]}" update >"$d/update.log" 2>&1 ||
		{ cat "$d/update.log" >&2; return 1; }
}

# fetch URI FILE SHA256 DESTDIR: hash-verified download; 0 if present afterwards.
fetch() {
	local uri=$1 file=$2 sum=$3 dest=$4
	if [[ -f "$dest/$file" ]] && echo "$sum  $dest/$file" | sha256sum -c --status; then
		return 0
	fi
	/usr/lib/apt/apt-helper -o APT::Sandbox::User=root download-file "$uri" "$dest/$file.part" \
		"SHA256:$sum" >/dev/null 2>&1 || { rm -f "$dest/$file.part"*; return 1; }
	mv "$dest/$file.part" "$dest/$file"
}

# ---- getting a tree ------------------------------------------------------------
# prepare_source RELEASE: leaves $CACHE/src/RELEASE/{tree,PROVENANCE,MODE}.
# MODE is "source" (full tree, configured) or "public" (libslurm-dev headers only).
prepare_source() {
	local rel=$1 base=$CACHE/src/$1
	local suite=${SUITE[$rel]} sec=${SECURITY[$rel]}
	local dl=$base/downloads
	mkdir -p "$dl"
	if [[ $REFRESH = 0 && -f "$base/MODE" ]]; then
		return 0
	fi
	rm -rf "$base/tree" "$base/tree.tmp" "$base/MODE" "$base/PROVENANCE"

	apt_setup "src-$suite" deb-src "$suite" "$sec"
	local -a opts
	mapfile -t opts < <(apt_opts "src-$suite")

	# Debian versions of slurm-wlm with this upstream version, newest first.
	local -a versions=()
	local v
	while read -r v; do
		[[ "${v%-*}" == "$rel" ]] && versions+=("$v")
	done < <(apt-cache "${opts[@]}" showsrc slurm-wlm 2>/dev/null | sed -n 's/^Version: //p' |
		sort -u | sort -r -V)
	[[ ${#versions[@]} -gt 0 ]] ||
		log "check-headers: $rel: no slurm-wlm $rel source in $suite${sec:+/$sec}"

	# Download what the mirror has of each version: uri file size SHA256:sum.
	local complete="" orig="" debtar="" debver="" line uri file size sum
	for v in "${versions[@]}"; do
		local have_dsc=0 have_orig=0 have_deb=0
		while read -r uri file size sum; do
			uri=${uri//\'/}
			sum=${sum#SHA256:}
			if fetch "$uri" "$file" "$sum" "$dl"; then
				case "$file" in
				*.dsc) have_dsc=1 ;;
				*.orig.tar.*) have_orig=1; orig=$file ;;
				*.debian.tar.*) have_deb=1
					[[ -n "$debtar" ]] || { debtar=$file; debver=$v; } ;;
				esac
			else
				log "check-headers: $rel: cannot fetch $file (Debian $v): not on the mirror or hash mismatch"
			fi
		done < <(apt-get -qq "${opts[@]}" source --print-uris "slurm-wlm=$v" 2>/dev/null |
			grep "^'")
		if [[ $have_dsc$have_orig$have_deb == 111 && -z "$complete" ]]; then
			complete=$v
		fi
	done

	local tmp=$base/tree.tmp
	if [[ -n "$complete" ]]; then
		log "check-headers: $rel: unpacking Debian source slurm-wlm $complete"
		dpkg-source -q -x "$dl/slurm-wlm_${complete#*:}.dsc" "$tmp" >"$base/unpack.log" 2>&1 ||
			{ cat "$base/unpack.log" >&2; return 1; }
		echo "Debian source package slurm-wlm $complete ($suite)" >"$base/PROVENANCE"
	elif [[ -n "$orig" ]]; then
		log "check-headers: $rel: no complete source package; orig tarball${debtar:+ + $debtar}"
		mkdir -p "$tmp"
		tar -xf "$dl/$orig" -C "$tmp" --strip-components=1
		if [[ -n "$debtar" ]]; then
			tar -xf "$dl/$debtar" -C "$tmp"
			local p
			if [[ -f "$tmp/debian/patches/series" ]]; then
				while read -r p _; do
					[[ -n "$p" && "$p" != \#* ]] || continue
					patch -d "$tmp" -p1 --batch --quiet -i "debian/patches/$p" >>"$base/unpack.log" 2>&1 ||
						{ cat "$base/unpack.log" >&2; die "$rel: patch $p does not apply"; }
				done <"$tmp/debian/patches/series"
			fi
			echo "upstream $orig + Debian patches of slurm-wlm $debver (no complete .dsc on the mirror; files hash-verified against the signed Sources index)" >"$base/PROVENANCE"
		else
			echo "upstream $orig WITHOUT Debian patches (no debian.tar on the mirror)" >"$base/PROVENANCE"
		fi
	else
		prepare_public "$rel"
		return
	fi

	configure_tree "$rel" "$tmp"
	mv "$tmp" "$base/tree"
	echo source >"$base/MODE"
}

# Hard configure requirements seen so far: "error message part" -> package.
# (22.05 configures with none; 24.11+ refuse to configure without munge.)
CONFIGURE_NEEDS=(
	"unable to locate munge installation|libmunge-dev"
)

# configure_tree RELEASE TREE: ./configure, installing a missing hard requirement.
configure_tree() {
	local rel=$1 tree=$2 base=$CACHE/src/$1 try need pkg installed=""
	for try in 1 2 3; do
		log "check-headers: $rel: ./configure (about 30 s)"
		if (cd "$tree" && ./configure -q >"$base/configure.log" 2>&1); then
			[[ -z "$installed" ]] || log "check-headers: $rel: configure needed: $installed"
			return 0
		fi
		pkg=""
		for need in "${CONFIGURE_NEEDS[@]}"; do
			if grep -q "configure: error: .*${need%%|*}" "$base/configure.log"; then
				pkg=${need#*|}
			fi
		done
		[[ -n "$pkg" && " $installed " != *" $pkg "* ]] || break
		log "check-headers: $rel: configure needs $pkg: installing it"
		# Serialized: the releases run in parallel and dpkg has one lock.
		flock "$CACHE/.apt-install.lock" apt-get install -y --no-install-recommends "$pkg" >/dev/null 2>&1 ||
			flock "$CACHE/.apt-install.lock" sh -c "apt-get update -qq && apt-get install -y --no-install-recommends $pkg" >/dev/null
		installed+="$pkg "
	done
	tail -20 "$base/configure.log" >&2
	die "$rel: ./configure failed (log: $base/configure.log)"
}

# fetch_deb RELEASE PACKAGE: download that suite's binary PACKAGE of upstream
# version RELEASE (newest Debian revision the mirror really has) into
# $CACHE/src/RELEASE/downloads; prints the file name, or nothing.
fetch_deb() {
	local rel=$1 pkg=$2 base=$CACHE/src/$1 suite=${SUITE[$1]} sec=${SECURITY[$1]}
	local d=$CACHE/apt/bin-$suite
	# One index update per run and suite is enough.
	if [[ ! -f "$d/updated.$$" ]]; then
		apt_setup "bin-$suite" deb "$suite" "$sec" || return 0
		rm -f "$d"/updated.*
		touch "$d/updated.$$"
	fi
	local -a opts
	mapfile -t opts < <(apt_opts "bin-$suite")
	local v uri file size sum
	while read -r v; do
		[[ "${v%-*}" == "$rel" ]] || continue
		read -r uri file size sum < <(apt-get -qq "${opts[@]}" download --print-uris "$pkg=$v" 2>/dev/null | grep "^'") || continue
		uri=${uri//\'/}
		if fetch "$uri" "$file" "${sum#SHA256:}" "$base/downloads"; then
			echo "$file"
			return 0
		fi
	done < <(apt-cache "${opts[@]}" madison "$pkg" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' | sort -u | sort -r -V)
}

# prepare_public RELEASE: the suite's libslurm-dev binary package (public headers).
prepare_public() {
	local rel=$1 base=$CACHE/src/$1 got
	log "check-headers: $rel: no source on the mirror; falling back to libslurm-dev's public headers"
	got=$(fetch_deb "$rel" libslurm-dev)
	[[ -n "$got" ]] || die "$rel: neither the source package nor libslurm-dev $rel is available from $MIRROR"
	local tmp=$base/tree.tmp
	rm -rf "$tmp"
	mkdir -p "$tmp"
	dpkg-deb -x "$base/downloads/$got" "$tmp"
	echo "public headers of ${got%.deb} only: the slurm-wlm $rel source package is not on the mirror" >"$base/PROVENANCE"
	mv "$tmp" "$base/tree"
	echo public >"$base/MODE"
}

# prepare_binary RELEASE: SchedMD's compiled jobcomp/kafka plugin of that suite
# (slurm-wlm-kafka-plugin-dev, 23.02+), for ci/headers/binary-offsets.py. Leaves
# $CACHE/src/RELEASE/binary/{jobcomp_common.o,PROVENANCE} or binary/NONE.
prepare_binary() {
	local rel=$1 base=$CACHE/src/$1/binary got
	if [[ $REFRESH = 0 && ( -f "$base/PROVENANCE" || -f "$base/NONE" ) ]]; then
		return 0
	fi
	rm -rf "$base"
	mkdir -p "$base"
	got=$(fetch_deb "$rel" slurm-wlm-kafka-plugin-dev)
	if [[ -z "$got" ]]; then
		echo "no slurm-wlm-kafka-plugin-dev $rel in ${SUITE[$rel]}" >"$base/NONE"
		return 0
	fi
	dpkg-deb --fsys-tarfile "$CACHE/src/$rel/downloads/$got" |
		tar -xO --wildcards '*/jobcomp_kafka.a' >"$base/jobcomp_kafka.a"
	(cd "$base" && ar x jobcomp_kafka.a jobcomp_common.o) ||
		{ echo "${got%.deb} has no jobcomp_common.o" >"$base/NONE"; return 0; }
	echo "${got%.deb}" >"$base/PROVENANCE"
}

# prepare_runtime RELEASE: runtime evidence (ci/headers/runtime-probe.sh) in
# $CACHE/src/RELEASE/runtime, reused while the probe's sources and the
# chroot's Slurm are unchanged. Returns 1 (with a reason in
# $CACHE/src/RELEASE/runtime.why) when it cannot be had.
prepare_runtime() {
	local rel=$1 base=$CACHE/src/$1 key have=""
	rm -f "$base/runtime.why"
	if [[ $(id -u) != 0 ]]; then
		echo "needs root (chroot)" >"$base/runtime.why"
		return 1
	fi
	local root=$CACHE/chroot-${RUNTIME_SUITE[$rel]}
	[[ -f $root/.jk-rig-slurm-version ]] && have=$(cat "$root/.jk-rig-slurm-version")
	key="$(cat "$HERE/headers/runtime-probe.c" "$HERE/headers/runtime-probe.sh" | sha256sum | cut -c1-16) $have"
	if [[ $REFRESH = 0 && -n $have && -f $base/runtime/KEY && $(cat "$base/runtime/KEY") == "$key" ]]; then
		return 0
	fi
	log "check-headers: $rel: gathering runtime evidence in the ${RUNTIME_SUITE[$rel]} chroot (log: $base/runtime.log)"
	if ! "$HERE/headers/runtime-probe.sh" "$rel" "$base/runtime" >"$base/runtime.log" 2>&1; then
		tail -n 15 "$base/runtime.log" >&2
		echo "ci/headers/runtime-probe.sh failed (see $base/runtime.log)" >"$base/runtime.why"
		return 1
	fi
	have=$(cat "$root/.jk-rig-slurm-version")
	key="${key% *} $have"
	echo "$key" >"$base/runtime/KEY"
}

# ---- the probes --------------------------------------------------------------------
# members HEADER: "OFF struct member" and "SIZE struct" lines for every member
# (other than _pad*) and every struct our header defines, read from the struct
# bodies themselves. slurm_conf_t has no SIZE: its sizeof is not ours to know.
members() {
	awk '
	/^(struct [a-z_0-9]+|typedef struct) *\{/ { open = 1; n = 0; tag = ($1 == "struct") ? $2 : ""; next }
	open && /^\}/ {
		name = tag
		if (name == "") { name = $2; sub(/;.*/, "", name) }
		for (i = 1; i <= n; i++) print "OFF " name " " m[i]
		if (tag != "") print "SIZE " name
		open = 0; next
	}
	open && /;/ {
		decl = $0; sub(/;.*/, "", decl); sub(/\[.*/, "", decl)
		k = split(decl, w, /[ \t*]+/); f = w[k]
		if (f !~ /^_pad/) m[++n] = f
	}' "$1"
}

# write_probe FILE PRELUDE STRUCTS MEMBERLIST: a C program printing the list.
write_probe() {
	local out=$1 prelude=$2 structs=$3 list=$4 s kind a b
	{
		echo "#include \"$prelude\""
		for s in $structs; do echo "#define HAVE_$s 1"; done
		echo "#include \"$HERE/headers/probe-body.h\""
		echo "int main(void)"
		echo "{"
		while read -r kind a b; do
			case " $structs " in *" $a "*) ;; *) continue ;; esac
			if [[ $kind == OFF ]]; then echo "	OFF($a, $b);"; else echo "	SIZE($a);"; fi
		done <"$list"
		echo "	return 0;"
		echo "}"
	} >"$out"
}

check_release() {
	local rel=$1 tag=${LAYOUT[$1]}
	local header=$HEADERS/layout_$tag.h
	local base=$CACHE/src/$rel
	[[ -f "$header" ]] || die "missing $header"
	mkdir -p "$CACHE/src"
	exec 9>"$CACHE/src/.lock-$rel"
	flock 9
	prepare_source "$rel"
	prepare_binary "$rel"
	local mode tree=$base/tree
	mode=$(cat "$base/MODE")
	local work
	work=$(mktemp -d "${TMPDIR:-/tmp}/check-headers.$rel.XXXXXX")
	trap 'rm -rf "$work"' RETURN

	members "$header" >"$work/members"
	local all_structs
	all_structs=$(awk '{print $2}' "$work/members" | sort -u | tr '\n' ' ')

	local -a real_flags
	local structs="" prelude s spelling missing_src=""
	if [[ $mode == source ]]; then
		prelude=$HERE/headers/real-full.h
		real_flags=(-I"$tree" -I"$tree/src")
	else
		prelude=$HERE/headers/real-public.h
		real_flags=(-I"$tree/usr/include")
	fi
	# How the real headers spell each struct (a typedef of an anonymous struct in
	# some releases, a tag in others); only complete types count. Cached per tree.
	mkdir -p "$tree/.jk-spelling"
	for s in $all_structs; do
		if [[ ! -f "$tree/.jk-spelling/$s" ]]; then
			spelling=""
			local cand
			for cand in "${s%_t}_t" "struct $s"; do
				printf '#include "%s"\nint probe = sizeof(%s);\n' "$prelude" "$cand" >"$work/has.c"
				if "$CC" -w -std=gnu11 -fsyntax-only "${real_flags[@]}" "$work/has.c" 2>/dev/null; then
					spelling=$cand
					break
				fi
			done
			echo "$spelling" >"$tree/.jk-spelling/$s"
		fi
		spelling=$(cat "$tree/.jk-spelling/$s")
		if [[ -n "$spelling" ]]; then
			structs+="$s "
			real_flags+=("-DT_$s=$spelling")
		else
			missing_src+="$s "
		fi
	done
	if [[ $mode == source && -n "$missing_src" ]]; then
		die "$rel: no complete definition of ${missing_src% } in the real headers (tried S_t and struct S)"
	fi

	write_probe "$work/real.c" "$prelude" "$structs" "$work/members"
	write_probe "$work/ours.c" "$HERE/headers/ours.h" "$structs" "$work/members"
	"$CC" -w -std=gnu11 "${real_flags[@]}" "$work/real.c" -o "$work/real" 2>"$work/real.err" ||
		{ head -40 "$work/real.err" >&2; die "$rel: the probe does not compile against the real headers"; }
	"$CC" -Wall -Werror -std=c11 -DLAYOUT_HEADER="\"$header\"" "$work/ours.c" -o "$work/ours" 2>"$work/ours.err" ||
		{ head -40 "$work/ours.err" >&2; die "$rel: the probe does not compile against $header"; }
	"$work/real" >"$work/real.out"
	"$work/ours" >"$work/ours.out"

	local offsets sizes provenance
	offsets=$(grep -c ' offset ' "$work/ours.out" || true)
	sizes=$(grep -c ' sizeof ' "$work/ours.out" || true)
	provenance=$(cat "$base/PROVENANCE")
	local failed=0
	if ! diff -u --label "ours: slurm-headers/layout_$tag.h" --label "Debian $rel: real headers" \
		"$work/ours.out" "$work/real.out" >"$work/diff"; then
		echo "headers $rel (layout_$tag): MISMATCH with the real headers ($provenance)"
		cat "$work/diff"
		echo "differing members:"
		comm -3 <(sort "$work/ours.out") <(sort "$work/real.out") |
			awk '{print "  " $1 ($2 == "sizeof" ? " (sizeof)" : "")}' | sort -u
		failed=1
	else
		echo "headers $rel (layout_$tag): $offsets offsets match, $sizes sizeofs match [$provenance]"
	fi

	# Binary evidence: where the real internal headers are missing it is the only
	# check of job_record & co (a mismatch fails); elsewhere it is a self-test of
	# the heuristic against the real headers (a disagreement only warns).
	local unverified="" missing=""
	for s in $all_structs; do
		case " $structs " in *" $s "*) ;; *) missing+="$s " ;; esac
	done
	if [[ -f "$base/binary/jobcomp_common.o" ]]; then
		local bprov against
		bprov=$(cat "$base/binary/PROVENANCE")
		python3 "$HERE/headers/binary-offsets.py" "$base/binary/jobcomp_common.o" >"$work/binary.out" ||
			die "$rel: binary-offsets.py failed on $bprov"
		against=$work/real.out
		if [[ $mode == public ]]; then
			# Our offsets of every declared struct, not only the public ones.
			write_probe "$work/all.c" "$HERE/headers/ours.h" "$all_structs" "$work/members"
			"$CC" -std=c11 -DLAYOUT_HEADER="\"$header\"" "$work/all.c" -o "$work/all" &&
				"$work/all" >"$work/all.out" || die "$rel: probe of $header failed"
			against=$work/all.out
		fi
		# "struct.member offset N" lines of the binary that the probe disagrees with.
		awk 'NR == FNR { if ($2 == "offset") off[$1] = $3; next }
			!($1 in off) { print $1 " offset " $3 " (binary) not declared here"; next }
			off[$1] != $3 { printf "%s offset %d (binary), %d (%s)\n", $1, $3, off[$1], which }' \
			which="$([[ $mode == source ]] && echo 'real headers' || echo "layout_$tag")" \
			"$against" "$work/binary.out" >"$work/binary.diff"
		local nbin nbad
		nbin=$(grep -c . "$work/binary.out" || true)
		nbad=$(grep -c . "$work/binary.diff" || true)
		if [[ $mode == source ]]; then
			if [[ $nbad == 0 ]]; then
				echo "headers $rel (layout_$tag): binary cross-check: the $nbin member offsets used by $bprov agree with the real headers"
			else
				echo "headers $rel (layout_$tag): WARNING: binary-offsets.py misreads $bprov ($nbad of $nbin disagree with the real headers; the heuristic needs fixing):"
				sed 's/^/  /' "$work/binary.diff"
			fi
		elif [[ $nbad == 0 ]]; then
			echo "headers $rel (layout_$tag): binary cross-check: $nbin member offsets used by $bprov match layout_$tag"
		else
			echo "headers $rel (layout_$tag): MISMATCH with the compiled plugin $bprov: $nbad of $nbin member offsets differ:"
			sed 's/^/  /' "$work/binary.diff"
			failed=1
		fi
	fi

	# Runtime evidence: where the real internal headers are missing (a
	# mismatch fails), or with --runtime as a self-test of the method.
	: >"$work/verified"
	[[ -f $work/binary.out ]] && awk '{ print $1 }' "$work/binary.out" >>"$work/verified"
	if [[ -n ${RUNTIME_SUITE[$rel]:-} && $RUNTIME != never && ($mode == public || $RUNTIME == always) ]]; then
		if [[ ! -f $work/all.out ]]; then
			write_probe "$work/all.c" "$HERE/headers/ours.h" "$all_structs" "$work/members"
			"$CC" -std=c11 -DLAYOUT_HEADER="\"$header\"" "$work/all.c" -o "$work/all" &&
				"$work/all" >"$work/all.out" || die "$rel: probe of $header failed"
		fi
		if prepare_runtime "$rel"; then
			local rprov summary
			rprov=$(cat "$base/runtime/PROVENANCE")
			local rrc=0
			python3 "$HERE/headers/runtime-layout.py" "$base/runtime" "$work/all.out" >"$work/runtime.out" 2>"$work/runtime.err" || rrc=$?
			summary=$(grep '^runtime:' "$work/runtime.out" || true)
			if ! grep -q ': MISMATCH' "$work/runtime.out" && [[ $rrc != 0 || -z $summary ]]; then
				# The analysis itself could not run: no evidence, so a failure
				# (never a pass with the internal structs unverified).
				echo "headers $rel (layout_$tag): FAILED: runtime-layout.py could not analyse the runtime evidence (exit $rrc): $(tail -n 3 "$work/runtime.err" | tr '\n' ' ')"
				failed=1
			elif grep -q ': MISMATCH' "$work/runtime.out"; then
				if [[ $mode == public ]]; then
					echo "headers $rel (layout_$tag): MISMATCH with the runtime evidence ($rprov):"
					failed=1
				else
					echo "headers $rel (layout_$tag): WARNING: the runtime evidence disagrees with the real headers (runtime-layout.py needs fixing):"
				fi
				grep ': MISMATCH' "$work/runtime.out" | sed 's/^/  /'
			else
				echo "headers $rel (layout_$tag): runtime cross-check: ${summary#runtime: } [$rprov]"
			fi
			sed -n 's/^\([a-z_]*\.[a-z_]*\) offset [0-9]*: confirmed.*/\1/p; s/^sizeof(\([a-z_]*\)) [0-9]*: confirmed.*/sizeof(\1)/p' \
				"$work/runtime.out" >>"$work/verified"
		else
			# The runtime probe could not run: a failure with its reason.
			echo "headers $rel (layout_$tag): FAILED: no runtime evidence: $(cat "$base/runtime.why")"
			failed=1
		fi
	fi
	# Members of the structs missing from the real headers that no evidence
	# showed (the binary's or the runtime's).
	if [[ $mode == public ]]; then
		unverified=$(awk -v m=" $missing" 'NR == FNR { seen[$1] = 1; next }
			$1 == "OFF" && index(m, " " $2 " ") && !(($2 "." $3) in seen) { print $2 "." $3 }
			$1 == "SIZE" && index(m, " " $2 " ") && !(("sizeof(" $2 ")") in seen) { print "sizeof(" $2 ")" }' \
			"$work/verified" "$work/members")
	fi
	if [[ -n "$unverified" ]]; then
		echo "headers $rel (layout_$tag): PARTIAL: $(grep -c . <<<"$unverified") members/sizes UNVERIFIED (no source, not in public headers, not used by the compiled plugin, not confirmed at runtime):"
		{ tr '\n' ' ' <<<"$unverified"; echo; } | fold -s -w 100 | sed 's/^/  /; s/ *$//'
		[[ $STRICT = 0 ]] || failed=1
	fi
	return $failed
}

ensure_tools
mkdir -p "$CACHE"
start=$EPOCHREALTIME
out=$(mktemp -d "${TMPDIR:-/tmp}/check-headers.XXXXXX")
trap 'rm -rf "$out"' EXIT
declare -A PID
for rel in "${RELEASES[@]}"; do
	( check_release "$rel" ) >"$out/$rel.out" 2>"$out/$rel.err" &
	PID[$rel]=$!
done
status=0
for rel in "${RELEASES[@]}"; do
	rc=0
	wait "${PID[$rel]}" || rc=$?
	cat "$out/$rel.err" >&2
	cat "$out/$rel.out"
	if [[ $rc != 0 ]]; then
		status=1
		grep -q "^headers $rel" "$out/$rel.out" || echo "headers $rel (layout_${LAYOUT[$rel]}): ERROR (exit $rc)"
	fi
done
awk -v s="$start" -v e="$EPOCHREALTIME" -v r="$([[ $status = 0 ]] && echo ok || echo FAILED)" \
	'BEGIN { printf "check-headers: %s in %.1f s\n", r, e - s }' 
exit $status
