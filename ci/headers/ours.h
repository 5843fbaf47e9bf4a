/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ci/check-headers.sh: prelude of the probe compiled against the project's
 * own declarations. Compile with -DLAYOUT_HEADER='"<path>/layout_<tag>.h"'.
 */
#include LAYOUT_HEADER

#define T_job_record struct job_record
#define T_job_details struct job_details
#define T_part_record struct part_record
#define T_slurmdb_assoc_rec struct slurmdb_assoc_rec
#define T_slurmdb_assoc_usage struct slurmdb_assoc_usage
#define T_slurmdb_qos_rec struct slurmdb_qos_rec
#define T_identity struct identity
#define T_slurm_step_id struct slurm_step_id
#define T_slurm_conf_t slurm_conf_t
