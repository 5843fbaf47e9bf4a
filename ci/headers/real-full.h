/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ci/check-headers.sh: prelude of the probe compiled against a configured
 * Slurm source tree (Debian's source package). Compile with -I<tree> -I<tree>/src.
 * The script finds how each struct is spelled in that tree (several are
 * anonymous structs behind a typedef in some releases, e.g. part_record_t in
 * 22.05, job_details_t in 24.11) and passes -DT_<struct>=<spelling>.
 */
#include "config.h"
#include "slurm/slurm.h"
#include "slurm/slurmdb.h"
#include "src/slurmctld/slurmctld.h"
#include "src/common/assoc_mgr.h"
/* Moved out of slurmctld.h in later releases. */
#if __has_include("src/common/job_record.h")
#include "src/common/job_record.h"
#endif
#if __has_include("src/common/part_record.h")
#include "src/common/part_record.h"
#endif
#if __has_include("src/common/identity.h")
#include "src/common/identity.h"
#endif
