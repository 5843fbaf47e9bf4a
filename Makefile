# jobcomp/kafka in Rust. `make help` lists the targets.
#
# The plugin is built for ONE exact Slurm release (slurmctld compares the
# plugin's version with its own, micro included):
#   make build                         # the release whose headers are installed (libslurm-dev)
#   make build SLURM_VERSION=24.11.5   # any release from 22.05.0 to 26.05.x
#   make build SLURM_SRC_DIR=/src/slurm-24.11.5   # a configured (maybe patched) source tree

SHELL := /bin/bash
# Empty or unset: the installed release (evaluated again in each sub-make, so
# `make test` on a fresh machine sees the headers `deps` just installed).
ifeq ($(strip $(SLURM_VERSION)),)
SLURM_VERSION := $(shell ci/slurm-version.sh)
endif
PLUGINDIR ?= /usr/lib/x86_64-linux-gnu/slurm-wlm
# The administrator's tool goes where Debian installs slurmctld: a system
# administration command, run by root or SlurmUser.
BINDIR ?= /usr/sbin
CARGO ?= cargo
PROFILE_DIR := $(or $(CARGO_TARGET_DIR),target)/release
OUT := build/slurm-$(SLURM_VERSION)

export SLURM_VERSION
ifdef SLURM_SRC_DIR
export SLURM_SRC_DIR
endif

.PHONY: help build install deps test test-lane-slurm test-lane-site test-lane-kafka test-lane-secured test-lane-families unit unit-release host-families wakeups e2e e2e26 e2e-cluster e2e-cluster-all e2e-secured e2e-kafka idempotence-kafka layout-guard26 kafka-selftest test-consumers check-headers matrix demo bench fuzz fuzz-check memcheck host-tests rig-selftest test-alerts clean

help:
	@echo "make build [SLURM_VERSION=X.Y.Z]  build $(OUT)/jobcomp_kafka.so"
	@echo "make install [PLUGINDIR=...] [BINDIR=...]  the plugin into PluginDir ($(PLUGINDIR)), jobcomp-kafka into $(BINDIR)"
	@echo "make demo                        throwaway Slurm + Kafka broker, a few jobs, records shown as they arrive"
	@echo "make test                        the whole suite: unit, plugin-in-a-host, header checks, real slurmctld end to end"
	@echo "make e2e-secured                 TLS, SASL, Kerberos, OIDC end to end (docs/securing-kafka.md's examples)"
	@echo "make e2e-kafka                   Apache Kafka's rules (missing topic, oversized record), ours and SchedMD's; the mix into Kafka 3.9"
	@echo "make idempotence-kafka           a lost produce acknowledgement against Apache Kafka: duplicates counted"
	@echo "make e2e-cluster                 a 3-broker Kafka cluster in network namespaces, the fault scenarios that pass today"
	@echo "make e2e-cluster-all             all 9 fault scenarios and SchedMD's on 3 (docs/kafka-cluster.md); 6, 8, 9 fail today"
	@echo "make test-consumers              record schemas, jobcomp-wait, jobcomp-sink (Kafka, PostgreSQL, slurmctld)"
	@echo "make bench                       benchmarks (results in bench/results/)"
	@echo "make fuzz [FUZZ_SECONDS=60]      every parser of outside input fuzzed, FUZZ_SECONDS each (tests/fuzz)"
	@echo "make fuzz-check                  the fuzz targets over their committed corpus, then 10 s each"
	@echo "make memcheck                    the plugin-host and spool tests under valgrind memcheck"
	@echo "make test-alerts                 the Prometheus alerting rules (promtool test rules), a few seconds"

build:
	@if [ -z "$(SLURM_VERSION)" ]; then \
	  echo "error: no Slurm headers installed; give the release: make build SLURM_VERSION=24.11.5" >&2; exit 2; fi
	ci/check-build-deps.sh
	CARGO="$(CARGO)" ci/build-plugin.sh $(OUT) $(PROFILE_DIR)
	@echo "built $(OUT)/jobcomp_kafka.so and $(OUT)/jobcomp-kafka for Slurm $(SLURM_VERSION)"

install: build
	install -d $(PLUGINDIR)
	install -m 0755 $(OUT)/jobcomp_kafka.so $(PLUGINDIR)/jobcomp_kafka.so
	install -d $(BINDIR)
	install -m 0755 $(OUT)/jobcomp-kafka $(BINDIR)/jobcomp-kafka
	@echo "installed $(PLUGINDIR)/jobcomp_kafka.so and $(BINDIR)/jobcomp-kafka (Slurm $(SLURM_VERSION))"

# Build and test prerequisites (Debian packages); idempotent.
deps:
	ci/install-deps.sh
	ci/install-promtool.sh

# The whole suite, as CI runs it. The builds and host tests first, then the
# real-rig suites in four lanes side by side: they spend most of their time
# waiting on daemons (slurmctld, Kafka's JVMs); their ports and directories
# are their own (e2e-secured 21100-21199, e2e-cluster 21200-21299 and its
# network namespaces, test-consumers 21600-21699, e2e-kafka 20800-20831,
# packages 20410-20432, the others elsewhere), and builds into the shared
# target/ hold a lock (ci/build-plugin.sh). -Oline keeps lines whole.
# The docs name the targets this runs (README.md's "Two commands",
# docs/apache-kafka.md's "Running it"); tests/docs_blocks.rs fails when one
# of them is no longer reached from here.
test: deps
	$(MAKE) unit-release
	$(MAKE) idempotence-kafka
	$(MAKE) test-alerts
	$(MAKE) check-headers
	$(MAKE) -j5 -Oline test-lane-slurm test-lane-site test-lane-kafka test-lane-secured test-lane-families
	$(MAKE) memcheck

# The lanes are balanced on full rehearsals (quiet machine, 2 cores). With
# four lanes started 15.6 min into the run (ca95fca, 44.4 min in all), each
# target's time: test-packages 19.7 min (its offline builds 5.8 and 5.2),
# e2e-cluster 17.4 (nine scenarios), e2e-secured 12.3, fuzz-check about 8
# (6.5 of them its instrumented build), e2e 7, e2e-kafka 6, rig-selftest
# about 4.5, consumers 4.2, matrix about 4, layout-guard26 3, e2e26 3.2,
# demo 1; the lanes ended within a minute of each other, 23 min in. Since
# then the host tests of the other families (6 min before the lanes) run in
# a fifth lane, and the fuzz build and the families' build are kept in the
# machine's cache. The rehearsal of that (1dbf6d5, those caches cold): 41.2
# min in all, 5.8 before the lanes, 29.6 in them (test-packages 26.4 with
# its rpm build's cold 15.4, the families' first build 16), memcheck 5.8.
# The lanes mostly wait on daemons, so the 2 cores are not five times as
# busy; what they do compute (builds, JVMs) is what makes them slower side by
# side than alone. memcheck runs after the lanes: under
# valgrind the host tests are some 20 times slower, and they are not made to
# share the machine on top of that. idempotence-kafka runs before them: it is
# a cargo test of the installed release, and the lanes' builds for other
# releases would rebuild target/release under it.

# Real slurmctld 22.05.8/24.11.5/26.05.5 end to end on Apache Kafka 4.x, the
# layout guard, the fuzz targets over their corpus, and `make demo` as
# README.md's "Two commands" gives it (it fails when a record does not
# arrive).
test-lane-slurm:
	$(MAKE) e2e
	$(MAKE) e2e26
	$(MAKE) layout-guard26
	$(MAKE) fuzz-check
	$(MAKE) demo

# What a site installs (the packages), and the rigs' own self-check.
test-lane-site:
	$(MAKE) test-packages
	$(MAKE) rig-selftest

# A replicated Apache Kafka cluster under faults (all nine scenarios), and the
# build matrix: the matrix builds into the shared target/ (its dependencies
# are built there already), each build under the lock the lanes' builds hold.
test-lane-kafka:
	$(MAKE) e2e-cluster
	CARGO_TARGET_DIR_MATRIX=target $(MAKE) matrix

# The host tests of the other API families (host-families; 6 min when they
# ran before the lanes), in a target directory of their own since the lanes'
# builds flip target/release between releases: kept in the machine's cache,
# one per checkout, so that only a cold machine compiles the dependencies
# there once more.
FAMILIES_TARGET_DIR ?= /var/tmp/jobcomp-kafka/target-families-$(shell printf %s "$(CURDIR)" | sha256sum | cut -c1-12)
test-lane-families:
	CARGO_TARGET_DIR=$(FAMILIES_TARGET_DIR) $(MAKE) host-families

# Secured Kafka (TLS, SASL, Kerberos, OIDC, ACLs), Apache Kafka's own rules on
# both lines (4.x, 3.9) with the rig's offline start, and what consumers use
# (schemas, jobcomp-wait, jobcomp-sink).
test-lane-secured:
	$(MAKE) e2e-secured
	$(MAKE) e2e-kafka
	$(MAKE) test-consumers

# One release of each jobcomp API family: 22.05 (set_location(loc)),
# 23.02-24.11 without and with the job's identity (23.11+), 25.05+
# (record_job_start/end, state file with an event per record). The C host and
# the state-file format follow the release the crate is built for.
HOST_FAMILIES := 22.05.8 23.02.7 24.11.5 26.05.5

# Unit tests for the installed release (with the host scenarios once more
# with a payload budget of 0), then the tests that load the plugin in the C
# host against librdkafka's mock cluster (FAMILY_TESTS) for every other
# family (host-families). One target directory: only this crate is rebuilt
# per family. `make test` runs the two apart: host-families in a lane of its
# own, with its own target directory.
HOST_TESTS := plugin_host spool_faults startup_without_kafka metrics_host jobcomploc_secrets layout_guard
FAMILY_TESTS := $(HOST_TESTS) wakeups
# One after the other, never as prerequisites (make -j would build the
# families into target/release while unit-release's host tests load the
# plugin from it).
unit:
	$(MAKE) unit-release
	$(MAKE) host-families

unit-release:
	ci/check-build-deps.sh
	$(CARGO) test --release
	@echo "== the host scenarios again, every spooled record waiting as a 32-byte entry (payload budget 0)"
	JOBCOMP_KAFKA_TEST_PAYLOAD_BUDGET=0 $(CARGO) test --release --test plugin_host --test spool_faults --test metrics_host --test startup_without_kafka

host-families:
	ci/check-build-deps.sh
	@set -e; for release in $(filter-out $(SLURM_VERSION),$(HOST_FAMILIES)); do \
	  echo "== $(FAMILY_TESTS) on a Slurm $$release build"; \
	  SLURM_VERSION=$$release $(CARGO) test --release $(addprefix --test ,$(FAMILY_TESTS)); \
	done

# Issue #25: the delivery thread's park and wake (also part of `unit`, which
# runs every test): the bell's unit tests, then the plugin in the C host.
wakeups:
	ci/check-build-deps.sh
	$(CARGO) test --release --lib plugin::bell
	$(CARGO) test --release --test wakeups

# Our struct declarations against Debian's real Slurm sources (22.05.8, 24.11.5)
# and, for 26.05.5 whose source is not published, against three measurements.
# --strict: a member no evidence verifies, or a probe that cannot run, fails.
check-headers:
	ci/check-headers.sh --strict 22.05.8 24.11.5 26.05.5

# One build per struct layout (22.05 to 26.05): exports and plugin_version checked.
matrix:
	ci/build-matrix.sh

# Real slurmctld + real broker: 22.05.8 (host) and 24.11.5 (Debian trixie chroot).
e2e: build
	ci/e2e.sh

# The same on 26.05.5 (Debian forky chroot), start events on and off.
e2e26:
	ci/e2e26.sh

# Issue 23: a replicated Apache Kafka cluster (3 brokers + 3 controllers in
# network namespaces jk23-k1..3, 10.213.23.0/24) and a real slurmctld 24.11.5
# (26.05.5 for the partition scenario). Ports 21200-21299. Builds what it
# needs (ci/e2e-cluster.sh).
# e2e-cluster (in `make test`): each scenario required to lose, double and
# reorder nothing: 1 leader killed, 2 rolling restart, 3 two brokers down,
# 4 controller killed, 5 a broker cut off, 6 all three down, 7 the first
# bootstrap broker down at start, 8 partitions added while jobs run, 9
# slurmctld SIGKILLed during 1. Scenario 9 used to stall in 1 run of 4 on
# Slurm's own states after the crash (the node drained for a duplicate job
# id; a job left RUNNING that slurmd no longer had); the rig now undoes them
# as an administrator would (docs/kafka-cluster.md, "Slurm after the
# crash"): 4 of 4 runs passed, 179-382 s each, which scenario 9 adds here.
# e2e-cluster-all: all 9 and SchedMD's plugin on 1, 3 and 6 (docs/kafka-
# cluster.md's table).
E2E_CLUSTER_PASSING := 1,2,3,4,5,6,7,8,9
e2e-cluster:
	ci/e2e-cluster.sh --scenarios $(E2E_CLUSTER_PASSING)

e2e-cluster-all:
	ci/e2e-cluster.sh

# The run-time layout guard in the real slurmctld 26.05.5: plugins built with
# a wrong layout (JK_TEST_FORCE_LAYOUT, test-only) are refused, slurmctld
# carries on. Ports 127.0.0.1:20100-20199 only. ~1.5 min warm.
layout-guard26:
	ci/layout-guard26.sh

# TLS, SASL, Kerberos, OIDC and ACLs with real peers (Apache Kafka 4.x, KDC, OpenID provider);
# docs/securing-kafka.md's examples. Own ports (21100-21199): may run next
# to e2e and e2e26.
e2e-secured: build
	ci/e2e-secured.sh

# What only Apache Kafka shows: the broker's rules on Kafka 4.x and 3.9.x
# (auto.create.topics.enable=false, max.message.bytes) with our plugin in
# slurmctld 22.05.8 and SchedMD's in 24.11.5 (tests/e2e/test_kafka_rules.py),
# the job mix into Kafka 3.9.x, and the Kafka rig with no network (cache
# warm). Own ports 127.0.0.1:20800-20831 (JK_KAFKA_E2E_PORT_BASE): may run
# next to e2e and e2e26. Needs root (a network namespace).
e2e-kafka:
	ci/e2e-kafka.sh

# A produce acknowledgement lost between send and ack, against Apache Kafka
# 4.x and 3.9.x (one test each, side by side): no duplicate with the plugin's
# defaults, the count with idempotence off printed (tests/retry_duplicates.rs).
# Ports 20240-20245 (JK_KAFKA_TEST_PORT).
idempotence-kafka:
	ci/check-build-deps.sh
	$(CARGO) test --release --test retry_duplicates -- --ignored --exact \
	  lost_acknowledgement_on_apache_kafka_4 lost_acknowledgement_on_apache_kafka_3_9 --nocapture

demo: deps build
	ci/demo.sh

# Apache Kafka's rig (ci/rig/kafka.sh) against itself: both pinned lines
# installed from Maven Central (cached), single nodes, a 3-node cluster, a node
# in a network namespace, and both lines installed and started with no network
# (the warm cache alone; `make e2e-kafka` runs that part). Ports 21000-21049.
# Needs Java 17+ and Maven.
kafka-selftest:
	ci/rig/kafka-selftest.sh --netns

# The consumers' side (issue #24, docs/consumers.md): the record schemas
# (schema/), jobcomp-wait and jobcomp-sink (python/) on Apache Kafka 4,
# PostgreSQL and a real slurmctld 22.05.8. Installs what it needs. Ports
# 21600-21699 only: may run next to the other suites.
test-consumers:
	ci/consumers.sh

bench: deps build
	ci/bench.sh

# Fuzzing (tests/fuzz/README.md): seeds rewritten by the plugin's writers, then
# each target FUZZ_SECONDS. fuzz-check: the committed corpus replayed and a
# short fresh run per target (a few minutes on 2 cores).
FUZZ_SECONDS ?= 60
fuzz:
	ci/fuzz.sh seeds
	ci/fuzz.sh run $(FUZZ_SECONDS)

fuzz-check:
	ci/fuzz.sh check

# The rigs themselves, no project code (ci/rig/selftest.sh): the consumer
# every e2e test reads with (byte-exact, --exact, exit codes), tansu, the host
# and chroot Slurm rigs with their restart and kill -9, each auth type. Ports
# 19092, 16817/16818, 26817/26818 (not used by the other suites). ~5 min.
rig-selftest:
	ci/install-deps.sh
	ci/rig/selftest.sh kafka host chroot auth

# The unsafe code under valgrind memcheck: the plugin in the C host, the spool.
memcheck:
	HOST_TESTS="$(HOST_TESTS)" ci/memcheck.sh

# The list above, for ci/memcheck.sh run by hand.
host-tests:
	@echo $(HOST_TESTS)

# The Prometheus alerting rules shipped in the packages, on series shaped like
# the plugin's during an outage (promtool; installs it when missing). Seconds.
test-alerts:
	ci/test-alerts.sh

clean:
	$(CARGO) clean
	rm -rf build

# --- Packages: release tarball, Debian package, RPM (ci/packaging/) ---------
# make dist                        build/packages/jobcomp-kafka-<version>.tar.gz: every crate
#                                  vendored, builds with no network
# make deb [SLURM_VERSION=X.Y.Z]   build/packages/jobcomp-kafka_<version>+slurm<X.Y.Z>-1_<arch>.deb
# make rpm [SLURM_VERSION=X.Y.Z]   rpmbuild -tb on the tarball (RHEL-family; RPMs in build/rpm/RPMS)
# make test-packages               all package tests: offline build + slurmctld 22.05.8, RPM,
#                                  .deb in the trixie (24.11.5) and forky (26.05.5) chroots
.PHONY: dist deb rpm test-packages
dist:
	ci/packaging/dist.sh

# HOMEPAGE=URL: the Homepage (.deb) / URL (RPM) field; none by default (the
# project has no public home yet).
deb:
	HOMEPAGE="$(HOMEPAGE)" ci/packaging/deb.sh $(SLURM_VERSION)

rpm:
	rpmbuild -tb --define "_topdir $(CURDIR)/build/rpm" $(if $(SLURM_VERSION),--define "slurm_version $(SLURM_VERSION)") $(if $(HOMEPAGE),--define "homepage $(HOMEPAGE)") "$$(ci/packaging/dist.sh)"

test-packages:
	ci/packaging/test.sh
