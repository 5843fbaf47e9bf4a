/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ci/check-headers.sh: the part of the probe shared by both sides. Before it,
 * a prelude defines T_<struct> for every struct, and the generated probe
 * defines HAVE_<struct> for the structs it may name, then includes this file
 * and lists OFF(struct, member) and SIZE(struct) lines inside main().
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#ifdef HAVE_job_record
#define K_job_record T_job_record *: "struct job_record *",
#else
#define K_job_record
#endif
#ifdef HAVE_job_details
#define K_job_details T_job_details *: "struct job_details *",
#else
#define K_job_details
#endif
#ifdef HAVE_part_record
#define K_part_record T_part_record *: "struct part_record *",
#else
#define K_part_record
#endif
#ifdef HAVE_slurmdb_assoc_rec
#define K_slurmdb_assoc_rec T_slurmdb_assoc_rec *: "struct slurmdb_assoc_rec *",
#else
#define K_slurmdb_assoc_rec
#endif
#ifdef HAVE_slurmdb_assoc_usage
#define K_slurmdb_assoc_usage T_slurmdb_assoc_usage *: "struct slurmdb_assoc_usage *",
#else
#define K_slurmdb_assoc_usage
#endif
#ifdef HAVE_slurmdb_qos_rec
#define K_slurmdb_qos_rec T_slurmdb_qos_rec *: "struct slurmdb_qos_rec *",
#else
#define K_slurmdb_qos_rec
#endif
#ifdef HAVE_identity
#define K_identity T_identity *: "struct identity *",
#else
#define K_identity
#endif
#ifdef HAVE_slurm_step_id
#define K_slurm_step_id T_slurm_step_id: "struct slurm_step_id",
#else
#define K_slurm_step_id
#endif

/* A name for the member's type, the same on both sides when the types agree. */
#define KIND(e) _Generic((e), \
	char *: "char *", char **: "char **", int: "int", \
	uint16_t: "uint16_t", uint32_t: "uint32_t", uint64_t: "uint64_t", \
	time_t: "time_t", gid_t *: "gid_t *", \
	K_job_record K_job_details K_part_record K_slurmdb_assoc_rec \
	K_slurmdb_assoc_usage K_slurmdb_qos_rec K_identity K_slurm_step_id \
	default: "other")

#define MEMBER(S, F) (((T_##S *)0)->F)
#define OFF(S, F) printf("%s.%s offset %zu size %zu type %s\n", #S, #F, \
	offsetof(T_##S, F), sizeof(MEMBER(S, F)), KIND(MEMBER(S, F)))
#define SIZE(S) printf("%s sizeof %zu\n", #S, sizeof(T_##S))
