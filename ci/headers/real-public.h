/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ci/check-headers.sh: prelude of the probe compiled against the public
 * headers of Debian's libslurm-dev binary package only (used when the source
 * package cannot be fetched). Internal structs (job_record, ...) are not there.
 * The script passes -DT_<struct>=<spelling> for the structs it finds complete.
 */
#include <slurm/slurm.h>
#include <slurm/slurmdb.h>
