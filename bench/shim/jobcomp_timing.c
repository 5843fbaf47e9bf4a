/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * jobcomp_timing.so: an LD_PRELOAD shim that times every call slurmctld makes
 * into its jobcomp plugin's record operation.
 *
 * slurmctld (through libslurmfull's plugin loader) resolves plugin operations
 * with dlsym(). This shim defines dlsym, forwards every lookup to the real one
 * (found with dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34")), and when the name is
 * jobcomp_p_log_record, jobcomp_p_record_job_end or jobcomp_p_record_job_start
 * it returns a wrapper instead. The wrapper reads CLOCK_REALTIME (when the call
 * started, for end-to-end latency), CLOCK_THREAD_CPUTIME_ID and
 * CLOCK_MONOTONIC before and after the real call, and stores one entry in a
 * preallocated buffer (no allocation, no I/O, no lock on the timed path).
 * The CPU clock reads sit outside the monotonic window, so the wall time
 * includes only the two monotonic reads' own cost (measured at start-up and
 * reported as "calibration").
 *
 * `fini` of the plugin that exported those operations is wrapped too: the
 * buffer is written out after the plugin's fini returns (also at process exit
 * if fini never ran). Output: $JK_SHIM_OUT.<pid>, text:
 *   # jobcomp_timing v1 pid=<pid> entries=<n> dropped=<n> jobid_offset=<n>
 *   # calibration wall_ns_p50=<n> cpu_ns_p50=<n> (wrapper around an empty function)
 *   # fini wall_ns=<n>
 *   <op> <job_id> <rc> <start_realtime_ns> <wall_ns> <cpu_ns>
 * op: L (log_record), E (record_job_end), S (record_job_start).
 *
 * Environment:
 *   JK_SHIM_OUT           output path prefix (required; without it the shim only forwards)
 *   JK_SHIM_JOBID_OFFSET  byte offset of job_id in job_record_t for this Slurm
 *                         layout (e.g. 360 for 22.05, 392 for 24.11); the magic
 *                         at offset 0 is checked before reading it
 *   JK_SHIM_MAX           buffer entries (default 1048576)
 *
 * Build: cc -O2 -shared -fPIC -o jobcomp_timing.so jobcomp_timing.c -ldl
 * Only the process that looked the operations up writes the file (a fork such
 * as slurmscriptd inherits the buffer but not the duty).
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define JOB_MAGIC 0xf0b7392cu

struct entry {
	uint64_t start_real_ns;
	uint32_t wall_ns;
	uint32_t cpu_ns;
	uint32_t job_id;
	int32_t rc;
	char op;
};

typedef void *(*dlsym_fn)(void *, const char *);
typedef int (*rec1_fn)(void *);
typedef int (*rec2_fn)(void *, uint32_t);
typedef int (*fini_fn)(void);

static dlsym_fn real_dlsym;
static rec1_fn real_log_record;
static rec2_fn real_job_end, real_job_start;
static fini_fn real_fini;
static void *plugin_handle;
static pid_t owner_pid;
static struct entry *entries;
static size_t max_entries;
static atomic_size_t next_entry;
static atomic_size_t dropped;
static long jobid_offset = -1;
static uint32_t calib_wall_p50, calib_cpu_p50;
static uint64_t fini_wall_ns;
static atomic_int dumped;

static inline uint64_t ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static dlsym_fn get_real_dlsym(void)
{
	if (!real_dlsym) {
		/* glibc >= 2.34 (bookworm 2.36, trixie 2.41): dlsym@@GLIBC_2.34. */
		real_dlsym = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
		if (!real_dlsym)
			real_dlsym = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
	}
	return real_dlsym;
}

static uint32_t job_id_of(const void *job)
{
	uint32_t magic, id;

	if (!job || jobid_offset < 0)
		return 0;
	memcpy(&magic, job, sizeof(magic));
	if (magic != JOB_MAGIC)
		return 0;
	memcpy(&id, (const char *)job + jobid_offset, sizeof(id));
	return id;
}

static inline void store(char op, const void *job, int rc, uint64_t real0, uint64_t w0, uint64_t w1,
			 uint64_t c0, uint64_t c1)
{
	size_t i = atomic_fetch_add(&next_entry, 1);

	if (!entries || i >= max_entries) {
		atomic_fetch_add(&dropped, 1);
		return;
	}
	entries[i].start_real_ns = real0;
	entries[i].wall_ns = (uint32_t)((w1 - w0) > UINT32_MAX ? UINT32_MAX : (w1 - w0));
	entries[i].cpu_ns = (uint32_t)((c1 - c0) > UINT32_MAX ? UINT32_MAX : (c1 - c0));
	entries[i].job_id = job_id_of(job);
	entries[i].rc = rc;
	entries[i].op = op;
}

#define TIMED(op, job, call)                                            \
	do {                                                            \
		uint64_t real0 = ns(CLOCK_REALTIME);                    \
		uint64_t c0 = ns(CLOCK_THREAD_CPUTIME_ID);              \
		uint64_t w0 = ns(CLOCK_MONOTONIC);                      \
		int rc_ = (call);                                       \
		uint64_t w1 = ns(CLOCK_MONOTONIC);                      \
		uint64_t c1 = ns(CLOCK_THREAD_CPUTIME_ID);              \
		store((op), (job), rc_, real0, w0, w1, c0, c1);         \
		return rc_;                                             \
	} while (0)

static int wrap_log_record(void *job)
{
	TIMED('L', job, real_log_record(job));
}

static int wrap_job_end(void *job, uint32_t event)
{
	TIMED('E', job, real_job_end(job, event));
}

static int wrap_job_start(void *job, uint32_t event)
{
	TIMED('S', job, real_job_start(job, event));
}

static void dump(void)
{
	const char *prefix = getenv("JK_SHIM_OUT");
	char path[4096], tmp[4200];
	size_t n = atomic_load(&next_entry);
	FILE *f;

	if (!prefix || !entries || getpid() != owner_pid || atomic_exchange(&dumped, 1))
		return;
	if (n > max_entries)
		n = max_entries;
	snprintf(path, sizeof(path), "%s.%d", prefix, (int)owner_pid);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "# jobcomp_timing v1 pid=%d entries=%zu dropped=%zu jobid_offset=%ld\n", (int)owner_pid, n,
		atomic_load(&dropped), jobid_offset);
	fprintf(f, "# calibration wall_ns_p50=%u cpu_ns_p50=%u\n", calib_wall_p50, calib_cpu_p50);
	fprintf(f, "# fini wall_ns=%llu\n", (unsigned long long)fini_wall_ns);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%c %u %d %llu %u %u\n", entries[i].op, entries[i].job_id, entries[i].rc,
			(unsigned long long)entries[i].start_real_ns, entries[i].wall_ns, entries[i].cpu_ns);
	if (fclose(f) == 0)
		rename(tmp, path);
}

static int wrap_fini(void)
{
	uint64_t w0 = ns(CLOCK_MONOTONIC);
	int rc = real_fini();

	fini_wall_ns = ns(CLOCK_MONOTONIC) - w0;
	dump();
	return rc;
}

/* Calibration: the same timed sequence around a function that does nothing. */
static int __attribute__((noinline)) empty_call(void *job)
{
	__asm__ volatile("" ::"r"(job) : "memory");
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static void calibrate(void)
{
	enum { N = 2001 };
	static uint32_t wall[N], cpu[N];

	for (int i = 0; i < N; i++) {
		uint64_t c0 = ns(CLOCK_THREAD_CPUTIME_ID);
		uint64_t w0 = ns(CLOCK_MONOTONIC);
		int rc = empty_call(NULL);
		uint64_t w1 = ns(CLOCK_MONOTONIC);
		uint64_t c1 = ns(CLOCK_THREAD_CPUTIME_ID);

		(void)rc;
		wall[i] = (uint32_t)(w1 - w0);
		cpu[i] = (uint32_t)(c1 - c0);
	}
	qsort(wall, N, sizeof(wall[0]), cmp_u32);
	qsort(cpu, N, sizeof(cpu[0]), cmp_u32);
	calib_wall_p50 = wall[N / 2];
	calib_cpu_p50 = cpu[N / 2];
}

/* Sets up the buffer on the first wrapped lookup (in slurmctld, long before any job ends). */
static void arm(void *handle)
{
	const char *s;

	if (entries)
		return;
	plugin_handle = handle;
	owner_pid = getpid();
	s = getenv("JK_SHIM_JOBID_OFFSET");
	jobid_offset = s ? strtol(s, NULL, 0) : -1;
	s = getenv("JK_SHIM_MAX");
	max_entries = s ? strtoul(s, NULL, 0) : (1u << 20);
	entries = mmap(NULL, max_entries * sizeof(*entries), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (entries == MAP_FAILED) {
		entries = NULL;
		return;
	}
	/* Touch every page now: no page fault inside a timed call. */
	memset(entries, 0, max_entries * sizeof(*entries));
	calibrate();
}

void *dlsym(void *handle, const char *name)
{
	dlsym_fn real = get_real_dlsym();
	void *sym;

	if (!real)
		return NULL;
	sym = real(handle, name);
	if (!sym || !getenv("JK_SHIM_OUT"))
		return sym;
	if (!strcmp(name, "jobcomp_p_log_record")) {
		arm(handle);
		real_log_record = (rec1_fn)sym;
		return (void *)wrap_log_record;
	}
	if (!strcmp(name, "jobcomp_p_record_job_end")) {
		arm(handle);
		real_job_end = (rec2_fn)sym;
		return (void *)wrap_job_end;
	}
	if (!strcmp(name, "jobcomp_p_record_job_start")) {
		arm(handle);
		real_job_start = (rec2_fn)sym;
		return (void *)wrap_job_start;
	}
	if (!strcmp(name, "fini") && plugin_handle && handle == plugin_handle) {
		real_fini = (fini_fn)sym;
		return (void *)wrap_fini;
	}
	return sym;
}

__attribute__((destructor)) static void at_exit_dump(void)
{
	dump();
}
