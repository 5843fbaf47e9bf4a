#!/usr/bin/env bash
# Slurm 22.05.8 (the host's Debian bookworm packages) single-node cluster.
#
# Usage:
#   slurm-host.sh install              apt-get install the daemons, clients, munge and
#                                      libslurm-dev (no-op when installed)
#   slurm-host.sh start DIR [OPTIONS]  write DIR/slurm.conf, start slurmctld -D and
#                                      slurmd -D -N localhost, wait for UP + node idle
#   slurm-host.sh stop DIR             scontrol shutdown, wait, kill leftovers by PID
#   slurm-host.sh restart-ctld DIR     SIGTERM slurmctld (by PID), start it again
#   slurm-host.sh kill9-ctld DIR       SIGKILL slurmctld (crash test); then start-ctld
#   slurm-host.sh start-ctld DIR       start slurmctld again with the same slurm.conf
#   slurm-host.sh env DIR              print `export SLURM_CONF=...` and `export PATH=DIR/bin:...`
#                                      (eval it; the DIR/bin wrappers also default batch
#                                      output to DIR/out/slurm-%j.out)
#   slurm-host.sh run DIR CMD...       run CMD with this cluster's SLURM_CONF
#   slurm-host.sh wait-job DIR JOBID [TIMEOUT_S]
#                                      wait until the job (all array tasks) ended; print state
#   slurm-host.sh status DIR
#
# OPTIONS (later ones win):
#   --plugindir PATH        appended to PluginDir after the system directory
#   --jobcomp TYPE          JobCompType, e.g. jobcomp/kafka, jobcomp/filetxt
#   --jobcomp-loc PATH      JobCompLoc          --jobcomp-params STR  JobCompParams
#   --debugflags X          DebugFlags, e.g. JobComp
#   --ctld-port P           default 16817       --slurmd-port P       default 16818
#   --cluster NAME          ClusterName (default jk; SchedMD's plugin's default topic)
#   --auth none|munge|slurm default none (AuthType=auth/none, CredType=cred/none);
#                           munge runs a private munged in DIR/munge; slurm
#                           (auth/slurm + cred/slurm, 23.11+ only) uses DIR/slurm.key
#   --conf KEY=VALUE        extra slurm.conf line (replaces a generated KEY line)
#   --timeout S             start-up wait (default 30)
#   --fresh                 delete DIR/state and DIR/spool first
# Starting on a DIR that has state from an earlier run keeps it (a restart);
# the state then fixes the ClusterName (another one needs --fresh).
set -euo pipefail
RIG_NAME=slurm-host
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
. "$RIG_LIB_DIR/slurm.sh"

HOST_PACKAGES=(slurmctld slurmd slurm-client munge libslurm-dev)

cmd=${1:-}
(($#)) && shift
case $cmd in
install) apt_install "${HOST_PACKAGES[@]}" ;;
start)
	(($#)) || die "usage: $0 start DIR [OPTIONS]"
	deb_installed "${HOST_PACKAGES[@]}" || apt_install "${HOST_PACKAGES[@]}"
	slurm_start "$@"
	;;
stop | restart-ctld | kill9-ctld | start-ctld | env | run | wait-job | status)
	slurm_command "$cmd" "$@" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
