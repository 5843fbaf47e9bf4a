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
PROFILE_DIR := target/release
OUT := build/slurm-$(SLURM_VERSION)

export SLURM_VERSION
ifdef SLURM_SRC_DIR
export SLURM_SRC_DIR
endif

.PHONY: help build install deps test unit e2e e2e26 check-headers matrix demo bench clean

help:
	@echo "make build [SLURM_VERSION=X.Y.Z]  build $(OUT)/jobcomp_kafka.so"
	@echo "make install [PLUGINDIR=...] [BINDIR=...]  the plugin into PluginDir ($(PLUGINDIR)), jobcomp-kafka into $(BINDIR)"
	@echo "make demo                        throwaway Slurm + Kafka broker, a few jobs, records shown as they arrive"
	@echo "make test                        the whole suite: unit, plugin-in-a-host, header checks, real slurmctld end to end"
	@echo "make bench                       benchmarks (results in bench/results/)"

build:
	@if [ -z "$(SLURM_VERSION)" ]; then \
	  echo "error: no Slurm headers installed; give the release: make build SLURM_VERSION=24.11.5" >&2; exit 2; fi
	$(CARGO) build --release --lib --bin jobcomp-kafka
	@mkdir -p $(OUT)
	install -m 0755 $(PROFILE_DIR)/libjobcomp_kafka.so $(OUT)/jobcomp_kafka.so
	install -m 0755 $(PROFILE_DIR)/jobcomp-kafka $(OUT)/jobcomp-kafka
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

# The whole suite, as CI runs it.
test: deps
	$(MAKE) unit
	$(MAKE) check-headers
	CARGO_TARGET_DIR_MATRIX=target $(MAKE) matrix
	$(MAKE) e2e
	$(MAKE) e2e26

# Unit tests and the plugin loaded by a C host against librdkafka's mock cluster.
unit:
	$(CARGO) test --release

# Our struct declarations against Debian's real Slurm sources (22.05.8, 24.11.5)
# and, for 26.05.5 whose source is not published, against three measurements.
check-headers:
	ci/check-headers.sh 22.05.8 24.11.5 26.05.5

# One build per struct layout (22.05 to 26.05): exports and plugin_version checked.
matrix:
	ci/build-matrix.sh

# Real slurmctld + real broker: 22.05.8 (host) and 24.11.5 (Debian trixie chroot).
e2e: build
	ci/e2e.sh

# The same on 26.05.5 (Debian forky chroot), start events on and off.
e2e26:
	ci/e2e26.sh

demo: deps build
	ci/demo.sh

bench: deps build
	ci/bench.sh

clean:
	$(CARGO) clean
	rm -rf build
