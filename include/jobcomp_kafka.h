/* SPDX-License-Identifier: GPL-2.0-or-later
 *
 * What jobcomp_kafka.so exports: the symbols slurmctld resolves when
 * slurm.conf says JobCompType=jobcomp/kafka. Which operations exist depends on
 * the Slurm release the plugin was built for (see plugin-abi in the README):
 *
 *   22.05          jobcomp_p_set_location(char *), jobcomp_p_log_record, jobcomp_p_get_jobs
 *   23.02 - 24.11  jobcomp_p_set_location(void), jobcomp_p_log_record, jobcomp_p_get_jobs
 *   25.05 - 26.05  jobcomp_p_set_location(void), jobcomp_p_record_job_end,
 *                  jobcomp_p_record_job_start, jobcomp_p_get_jobs
 *
 * Nothing else is exported (librdkafka is linked in statically and hidden).
 * Return values are SLURM_SUCCESS (0) or SLURM_ERROR (-1).
 */
#ifndef JOBCOMP_KAFKA_H
#define JOBCOMP_KAFKA_H

#include <stdint.h>

/* NUL-terminated char arrays: the loader uses the symbols' addresses. */
extern const char plugin_name[];
extern const char plugin_type[];          /* "jobcomp/kafka" */
/* SLURM_VERSION_NUMBER of the release the plugin was built for. */
extern const uint32_t plugin_version;

int init(void);
int fini(void);                           /* slurmctld calls it as void (*)(void) */

/* job is a job_record_t *, read under slurmctld's job lock. */
#if defined(JOBCOMP_KAFKA_API_22_05)
int jobcomp_p_set_location(char *location);
#else
int jobcomp_p_set_location(void);
#endif

#if defined(JOBCOMP_KAFKA_API_25_05)
int jobcomp_p_record_job_end(void *job, uint32_t event);    /* event 1: finish */
int jobcomp_p_record_job_start(void *job, uint32_t event);  /* event 2: start */
#else
int jobcomp_p_log_record(void *job);
#endif

/* Always NULL: records cannot be read back from Kafka (sacct --completion). */
void *jobcomp_p_get_jobs(void *condition);

#endif
