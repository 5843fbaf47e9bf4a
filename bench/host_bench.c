/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * host_bench: an in-process benchmark host for jobcomp/kafka.
 *
 * It loads a jobcomp plugin the way slurmctld does (dlopen RTLD_LAZY, the
 * three data symbols, init, the operations of the jobcomp API), provides what
 * the plugin takes from its host (slurm_conf, the slurm_* log functions,
 * assoc_mgr_lock/unlock as a real read-write lock), and calls the record
 * operation back to back (or paced) with synthetic job records, timing every
 * call with clock_gettime(CLOCK_MONOTONIC).
 *
 * The binary must be named slurmctld or slurmctld-* (the plugin is inert in
 * any other process); the build names it slurmctld-bench.
 *
 * Build (bench/run_inproc.py does it):
 *   cc -O2 -g -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -include slurm-headers/layout_<tag>.h \
 *      -DJK_API_22_05|-DJK_API_23_02|-DJK_API_25_05 -DEXPECTED_VERSION=0x160508 \
 *      bench/host_bench.c -o DIR/slurmctld-bench -rdynamic -ldl -lpthread
 *
 * Usage: slurmctld-bench PLUGIN.so --state DIR --loc FILE [options]
 *   --params STR        JobCompParams            --cluster NAME   ClusterName
 *   --records N         calls to make (default 100000)
 *   --workload W        mix | short | array | longnodes | script100k | nobatch
 *   --pool P            distinct job templates, cycled (default 10000)
 *   --rate R            pace calls at R per second (default 0: back to back)
 *   --lat FILE          raw per-call wall times: one uint32 (ns) per call, in call order
 *   --kinds FILE        one byte per call: the template kind (see KIND_*)
 *   --interactive       after the calls, print "hot-done {...}" and read commands:
 *                       "measure" (CPU and memory since the first call), "fini"
 *                       (time fini()), "quit"
 *   --fini              without --interactive: call fini() at the end and time it
 *   --settle MS         wait MS milliseconds after init before the first call
 *                       (the producer connects; the plugin's threads go idle)
 *
 * The first result also carries "threads_at_start"/"threads_at_end": every
 * thread's name and CPU time (ns, /proc/self/task/TID/schedstat) just before
 * the first call and just after the last one, for per-thread CPU over the loop.
 *
 * Every result is one line of JSON on stdout, prefixed by its name. The
 * plugin's log lines go to stderr with a monotonic timestamp.
 *
 * Job records are built once per template before the timed phase (the time
 * slurmctld spends building its own job records is not the plugin's); every
 * call passes a complete, valid record. Batch scripts are written where
 * slurmctld keeps them: <state>/hash.<id % 10>/job.<id>/script (for array
 * tasks <id> is the array master's id), NUL-terminated.
 */

#ifndef _GNU_SOURCE
#error "build with -D_GNU_SOURCE (the forced-in layout header includes system headers first)"
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef EXPECTED_VERSION
#error "build with -DEXPECTED_VERSION=0xMMmmuu"
#endif
#if defined(JK_API_22_05) + defined(JK_API_23_02) + defined(JK_API_25_05) != 1
#error "build with exactly one of -DJK_API_22_05, -DJK_API_23_02, -DJK_API_25_05"
#endif
#if !defined(JOB_MAGIC)
#error "force-include one slurm-headers/layout_<tag>.h"
#endif

/* Layout features (the forced-in header's include guard names its layout). */
#if defined(JOBCOMP_KAFKA_LAYOUT_22_05_8_H)
#define BENCH_FAILED_NODE 0
#else
#define BENCH_FAILED_NODE 1
#endif
#if defined(JOBCOMP_KAFKA_LAYOUT_22_05_8_H) || defined(JOBCOMP_KAFKA_LAYOUT_23_02_2_H) || \
	defined(JOBCOMP_KAFKA_LAYOUT_23_02_7_H)
#define BENCH_IDENTITY 0
#else
#define BENCH_IDENTITY 1
#endif

/* 25.11+: job_record starts with its own slurm_step_id_t, whose job_id the
 * plugin's layout guard checks (slurm-headers/ declare only the sluid). */
#if defined(JOBCOMP_KAFKA_LAYOUT_25_11_7_H) || defined(JOBCOMP_KAFKA_LAYOUT_26_05_3_H) || \
	defined(JOBCOMP_KAFKA_LAYOUT_26_05_5_H)
#define BENCH_STEP_ID 1
#else
#define BENCH_STEP_ID 0
#endif

#define NO_VAL 0xfffffffeu
#define NO_VAL16 0xfffeu
#define INFINITE 0xffffffffu

/* ------------------------------------------------------------------ */
/* What slurmctld exports                                              */
/* ------------------------------------------------------------------ */

slurm_conf_t slurm_conf;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t t_start_ns;
static atomic_long log_lines, log_errors;

static void emit_log(const char *level, const char *fmt, va_list ap)
{
	char text[2048];
	uint64_t t = mono_ns() - t_start_ns;

	vsnprintf(text, sizeof(text), fmt, ap);
	atomic_fetch_add(&log_lines, 1);
	fprintf(stderr, "[%8.3f] %s%s\n", (double)t / 1e9, level, text);
}

#define BENCH_LOG(name, level, is_error)                  \
	void name(const char *fmt, ...);                  \
	void name(const char *fmt, ...)                   \
	{                                                 \
		va_list ap;                               \
		if (is_error)                             \
			atomic_fetch_add(&log_errors, 1); \
		va_start(ap, fmt);                        \
		emit_log(level, fmt, ap);                 \
		va_end(ap);                               \
	}

BENCH_LOG(slurm_error, "error: ", 1)
BENCH_LOG(slurm_info, "", 0)
BENCH_LOG(slurm_verbose, "verbose: ", 0)
BENCH_LOG(slurm_debug, "debug: ", 0)
BENCH_LOG(slurm_debug2, "debug2: ", 0)

/* assoc_mgr's association lock: a real read-write lock, as in slurmctld. */
static pthread_rwlock_t assoc_lock = PTHREAD_RWLOCK_INITIALIZER;

void assoc_mgr_lock(void *locks);
void assoc_mgr_lock(void *locks)
{
	const int *levels = locks;

	if (levels && levels[0] == 2)
		pthread_rwlock_wrlock(&assoc_lock);
	else if (levels && levels[0] == 1)
		pthread_rwlock_rdlock(&assoc_lock);
}

void assoc_mgr_unlock(void *locks);
void assoc_mgr_unlock(void *locks)
{
	const int *levels = locks;

	if (levels && levels[0] != 0)
		pthread_rwlock_unlock(&assoc_lock);
}

/* ------------------------------------------------------------------ */
/* Loading the plugin                                                  */
/* ------------------------------------------------------------------ */

static int (*p_init)(void);
static int (*p_fini)(void);
#if defined(JK_API_22_05)
static int (*p_set_location)(char *);
#else
static int (*p_set_location)(void);
#endif
#if defined(JK_API_25_05)
static int (*p_record_job_end)(struct job_record *, uint32_t);
#else
static int (*p_log_record)(struct job_record *);
#endif

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("host_bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static void *need(void *handle, const char *name)
{
	void *sym = dlsym(handle, name);

	if (!sym)
		die("plugin symbol %s missing", name);
	return sym;
}

#define NEED(var, handle, name)                       \
	do {                                          \
		void *s_ = need((handle), (name));    \
		memcpy(&(var), &s_, sizeof(var));     \
	} while (0)

static void load_plugin(const char *path)
{
	void *h = dlopen(path, RTLD_LAZY);
	const uint32_t *version;
	const char *type;

	if (!h)
		die("dlopen %s: %s", path, dlerror());
	type = need(h, "plugin_type");
	version = need(h, "plugin_version");
	need(h, "plugin_name");
	if (strncmp(type, "jobcomp/", 8) != 0)
		die("plugin_type is %s, not jobcomp/*", type);
	if (*version != (uint32_t)EXPECTED_VERSION)
		die("plugin_version 0x%06" PRIx32 " is not this host's 0x%06x", *version,
		    (unsigned)EXPECTED_VERSION);
	NEED(p_init, h, "init");
	NEED(p_fini, h, "fini");
	NEED(p_set_location, h, "jobcomp_p_set_location");
#if defined(JK_API_25_05)
	NEED(p_record_job_end, h, "jobcomp_p_record_job_end");
#else
	NEED(p_log_record, h, "jobcomp_p_log_record");
#endif
	need(h, "jobcomp_p_get_jobs");
}

static inline int call_record(struct job_record *job)
{
#if defined(JK_API_25_05)
	return p_record_job_end(job, 1);
#else
	return p_log_record(job);
#endif
}

/* ------------------------------------------------------------------ */
/* Synthetic job records                                               */
/* ------------------------------------------------------------------ */

enum kind {
	KIND_SHORT = 0,     /* batch job, short script */
	KIND_ARRAY = 1,     /* array task (script owned by the array master) */
	KIND_LONGNODES = 2, /* 384-node job with a fragmented node list */
	KIND_SCRIPT100K = 3,/* batch job with a 100 KiB script */
	KIND_NOBATCH = 4,   /* salloc/srun job: no batch script */
	KIND_COUNT
};
static const char *kind_names[KIND_COUNT] = { "short", "array", "longnodes", "script100k", "nobatch" };

static void *xmalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);

	if (!p)
		die("out of memory");
	return p;
}

static char *xprintf(const char *fmt, ...)
{
	va_list ap;
	char *out;

	va_start(ap, fmt);
	if (vasprintf(&out, fmt, ap) < 0)
		die("out of memory");
	va_end(ap);
	return out;
}

/* The association tree every record points into (user -> account -> root). */
struct assoc_tree {
	struct slurmdb_assoc_rec rec[3];
	struct slurmdb_assoc_usage usage[3];
};
static struct assoc_tree assocs[4];
static struct part_record parts[2];
static struct slurmdb_qos_rec qoses[2];

static void build_shared(const char *cluster)
{
	static const char *accounts[4][2] = {
		{ "physics", "science" }, { "chemistry", "science" }, { "bio-lab-7", "biology" }, { "ops", "staff" },
	};

	for (int a = 0; a < 4; a++) {
		struct assoc_tree *t = &assocs[a];
		const char *names[3] = { accounts[a][0], accounts[a][1], "root" };

		for (int i = 0; i < 3; i++) {
			t->rec[i].acct = (char *)names[i];
			t->rec[i].cluster = (char *)cluster;
			t->rec[i].usage = &t->usage[i];
		}
		t->usage[0].parent_assoc_ptr = &t->rec[1];
		t->usage[1].parent_assoc_ptr = &t->rec[2];
	}
	parts[0].magic = PART_MAGIC;
	parts[0].name = "batch";
	parts[0].max_time = 2880;
	parts[1].magic = PART_MAGIC;
	parts[1].name = "long";
	parts[1].max_time = INFINITE;
	qoses[0].name = "normal";
	qoses[1].name = "high";
}

/* A compressed but fragmented hostlist of `count` nodes (every third node is busy elsewhere). */
static char *fragmented_hostlist(int count, int seed)
{
	size_t cap = 16 + (size_t)count * 12, len = 0;
	char *out = xmalloc(cap);
	int node = 1 + seed % 17, emitted = 0;

	len += (size_t)snprintf(out + len, cap - len, "cn[");
	while (emitted < count) {
		int run = 1 + (node % 3);

		if (run > count - emitted)
			run = count - emitted;
		if (emitted)
			out[len++] = ',';
		if (run == 1)
			len += (size_t)snprintf(out + len, cap - len, "%05d", node);
		else
			len += (size_t)snprintf(out + len, cap - len, "%05d-%05d", node, node + run - 1);
		emitted += run;
		node += run + 1;
	}
	snprintf(out + len, cap - len, "]");
	return out;
}

static int make_dir(const char *path)
{
	return (mkdir(path, 0700) == 0 || errno == EEXIST) ? 0 : -1;
}

/* Writes <state>/hash.<id%10>/job.<id>/script with `len` bytes + NUL (unless it exists with that size). */
static void write_script(const char *state, uint32_t id, size_t len, uint32_t seed)
{
	char d1[PATH_MAX], d2[PATH_MAX], path[PATH_MAX];
	struct stat st;
	FILE *f;

	if (strlen(state) > PATH_MAX - 64)
		die("state directory path too long");
	snprintf(d1, sizeof(d1), "%s/hash.%" PRIu32, state, id % 10);
	snprintf(d2, sizeof(d2), "%.*s/job.%" PRIu32, PATH_MAX - 32, d1, id);
	snprintf(path, sizeof(path), "%.*s/script", PATH_MAX - 16, d2);
	if (stat(path, &st) == 0 && (size_t)st.st_size == len + 1)
		return;
	if (make_dir(d1) || make_dir(d2))
		die("mkdir %s: %s", d2, strerror(errno));
	f = fopen(path, "wb");
	if (!f)
		die("open %s: %s", path, strerror(errno));
	fprintf(f, "#!/bin/bash\n#SBATCH --job-name=sim-%u\n#SBATCH --time=02:00:00\n", seed);
	for (long pos = ftell(f); pos < (long)len;) {
		char line[128];
		int n = snprintf(line, sizeof(line), "srun ./solver --input case-%u.dat --step %ld # \"quoted\" \\ tab\t\n",
				 seed, pos);

		if (pos + n > (long)len)
			n = (int)(len - (size_t)pos);
		fwrite(line, 1, (size_t)n, f);
		pos += n;
	}
	fputc('\0', f);
	if (fclose(f))
		die("write %s failed", path);
}

static const char *users[] = { "root", "daemon", "bin", "sys" };

static struct job_record *build_job(int k, enum kind kind, uint32_t base_id, const char *state)
{
	struct job_record *job = xmalloc(sizeof(*job));
	struct job_details *d = xmalloc(sizeof(*d));
	uint32_t id = base_id + (uint32_t)k;
	uint32_t uid = (uint32_t)(k % 4);
	int64_t end = 1714561261 + k;

	job->magic = JOB_MAGIC;
	job->job_id = id;
#if BENCH_STEP_ID
	memcpy((char *)&job->step_id + 8, &job->job_id, sizeof(job->job_id));
#endif
	job->user_id = uid;
	job->group_id = uid;
	job->job_state = (k % 23 == 0) ? 5 /* FAILED */ : 3 /* COMPLETE */;
	job->exit_code = job->job_state == 5 ? (1u << 8) : 0;
	job->derived_ec = 0;
	job->start_time = end - 3600 - (k % 600);
	job->end_time = end;
	job->resize_time = 0;
	job->total_cpus = 4;
	job->total_nodes = 1;
	job->array_job_id = 0;
	job->array_task_id = NO_VAL;
	job->het_job_id = 0;
	job->het_job_offset = NO_VAL;
	job->priority = 4294901 - (uint32_t)k;
	job->time_limit = 120;
	job->batch_flag = 1;
	job->db_index = 100000 + (uint64_t)k;
	job->name = xprintf("sim-%d", k);
	job->partition = (char *)(k % 5 == 0 ? "long" : "batch");
	job->nodes = xprintf("cn%05d", 1 + k % 3000);
	job->alloc_node = "login01";
	job->account = (char *)assocs[k % 4].rec[0].acct;
	job->comment = (k % 7 == 0) ? "nightly regression run" : NULL;
	job->admin_comment = NULL;
	job->wckey = "*default";
	job->tres_req_str = "1=4,2=16000,4=1,5=4";
	job->tres_fmt_req_str = "cpu=4,mem=16000M,node=1,billing=4";
	job->tres_alloc_str = "1=4,2=16000,3=18446744073709551614,4=1,5=4";
	job->tres_fmt_alloc_str = "cpu=4,mem=16000M,node=1,billing=4";
#if BENCH_FAILED_NODE
	job->failed_node = NULL;
#endif
	job->part_ptr = &parts[k % 5 == 0 ? 1 : 0];
	job->qos_ptr = &qoses[k % 11 == 0 ? 1 : 0];
	job->assoc_ptr = &assocs[k % 4].rec[0];

	d->magic = DETAILS_MAGIC;
	d->submit_time = end - 4000;
	d->begin_time = end - 4000;
	d->work_dir = xprintf("/home/%s/projects/run-%04d", users[uid], k % 1000);
	d->std_out = xprintf("/home/%s/projects/run-%04d/slurm-%%j.out", users[uid], k % 1000);
	d->std_err = NULL;
	d->std_in = "/dev/null";
	d->num_tasks = 4;
	d->ntasks_per_node = NO_VAL16;
	d->ntasks_per_tres = NO_VAL16;
	d->cpus_per_task = 1;
	d->features = (k % 3 == 0) ? "skylake&ib" : NULL;
	job->details = d;

	switch (kind) {
	case KIND_SHORT:
		write_script(state, id, 600 + (size_t)(k % 7) * 100, (uint32_t)k);
		break;
	case KIND_SCRIPT100K:
		write_script(state, id, 100 * 1024, (uint32_t)k);
		break;
	case KIND_ARRAY: {
		/* 100 tasks per array; the master's id owns the script. */
		uint32_t master = base_id + 5000000u + (uint32_t)(k / 100);

		job->array_job_id = master;
		job->array_task_id = (uint32_t)(k % 100);
		job->name = xprintf("sweep-%u", master);
		write_script(state, master, 800, master);
		break;
	}
	case KIND_LONGNODES:
		job->nodes = fragmented_hostlist(384, k);
		job->total_nodes = 384;
		job->total_cpus = 384 * 48;
		d->num_tasks = 384 * 48;
		job->tres_fmt_alloc_str = "cpu=18432,mem=73728000M,node=384,billing=18432";
		job->tres_alloc_str = "1=18432,2=73728000,4=384,5=18432";
		write_script(state, id, 1200, (uint32_t)k);
		break;
	case KIND_NOBATCH:
		job->batch_flag = 0;
		job->name = "interactive";
		break;
	default:
		break;
	}
#if BENCH_IDENTITY
	{
		struct identity *ident = xmalloc(sizeof(*ident));
		gid_t *gids = xmalloc(sizeof(gid_t));
		char **names = xmalloc(sizeof(char *));

		ident->pw_name = (char *)users[uid];
		gids[0] = uid;
		names[0] = (char *)users[uid];
		ident->ngids = 1;
		ident->gids = gids;
		ident->gr_names = names;
		job->id = ident;
	}
#endif
	return job;
}

static enum kind kind_for(const char *workload, int k)
{
	int m = k % 100;

	if (!strcmp(workload, "short"))
		return KIND_SHORT;
	if (!strcmp(workload, "array"))
		return KIND_ARRAY;
	if (!strcmp(workload, "longnodes"))
		return KIND_LONGNODES;
	if (!strcmp(workload, "script100k"))
		return KIND_SCRIPT100K;
	if (!strcmp(workload, "nobatch"))
		return KIND_NOBATCH;
	if (strcmp(workload, "mix"))
		die("unknown workload %s", workload);
	/* mix: 60% short batch, 25% array tasks, 5% large jobs with long node
	 * lists, 9% interactive, 1% 100 KiB scripts. */
	if (m < 60)
		return KIND_SHORT;
	if (m < 85)
		return KIND_ARRAY;
	if (m < 90)
		return KIND_LONGNODES;
	if (m < 99)
		return KIND_NOBATCH;
	return KIND_SCRIPT100K;
}

/* ------------------------------------------------------------------ */
/* Measurements                                                        */
/* ------------------------------------------------------------------ */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static uint32_t pct(const uint32_t *sorted, size_t n, double p)
{
	size_t rank;

	if (!n)
		return 0;
	rank = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

static void print_dist(FILE *out, const char *name, const uint32_t *lat, size_t n)
{
	uint32_t *s = malloc(n * sizeof(*s) + 1);
	double sum = 0;

	if (!s)
		die("out of memory");
	memcpy(s, lat, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_u32);
	for (size_t i = 0; i < n; i++)
		sum += s[i];
	fprintf(out,
		"\"%s\":{\"n\":%zu,\"mean_ns\":%.0f,\"p50_ns\":%u,\"p90_ns\":%u,\"p99_ns\":%u,"
		"\"p999_ns\":%u,\"max_ns\":%u,\"sum_ns\":%.0f}",
		name, n, n ? sum / (double)n : 0.0, pct(s, n, 50), pct(s, n, 90), pct(s, n, 99), pct(s, n, 99.9),
		n ? s[n - 1] : 0, sum);
	free(s);
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static long status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t klen = strlen(key);
	long value = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			value = strtol(line + klen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return value;
}

static int thread_count(void)
{
	return (int)status_kb("Threads");
}

/* Every thread's name and CPU time on a CPU (schedstat's first field, ns),
 * as a JSON object {"TID":["name",ns],...}, into buf. Read outside the timed calls. */
static void thread_cpu_json(char *buf, size_t cap)
{
	char path[64], name[64], line[128];
	size_t len = 0;
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;

	len += (size_t)snprintf(buf + len, cap - len, "{");
	while (d && (e = readdir(d)) && len + 128 < cap) {
		FILE *f;
		unsigned long long ns = 0;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%.16s/comm", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(name, sizeof(name), f))
			name[0] = 0;
		fclose(f);
		name[strcspn(name, "\n\"\\")] = 0;
		snprintf(path, sizeof(path), "/proc/self/task/%.16s/schedstat", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(line, sizeof(line), f))
			ns = strtoull(line, NULL, 10);
		fclose(f);
		len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\":[\"%s\",%llu]", len > 1 ? "," : "",
					e->d_name, name, ns);
	}
	if (d)
		closedir(d);
	snprintf(buf + len, cap - len, "}");
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	const char *plugin = NULL, *state = NULL, *loc = NULL, *params = NULL, *cluster = "bench";
	const char *workload = "mix", *lat_path = NULL, *kinds_path = NULL;
	long records = 100000, pool_size = 10000;
	double rate = 0;
	long settle_ms = 0;
	static char threads_start[8192], threads_end[8192];
	bool interactive = false, do_fini = false;
	struct job_record **pool;
	uint8_t *pool_kind;
	uint32_t *lat;
	uint8_t *kinds;
	int rc, bad = 0, first_bad = 0;
	struct rusage ru0, ru1, th0, th1;
	uint64_t t0, t1, init_ns, setup_ns;
	uint32_t timer_overhead[4096];

	t_start_ns = mono_ns();
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (a[0] != '-') {
			plugin = a;
			continue;
		}
		if (!strcmp(a, "--interactive")) {
			interactive = true;
			continue;
		}
		if (!strcmp(a, "--fini")) {
			do_fini = true;
			continue;
		}
		if (!v)
			die("%s needs a value", a);
		i++;
		if (!strcmp(a, "--state"))
			state = v;
		else if (!strcmp(a, "--loc"))
			loc = v;
		else if (!strcmp(a, "--params"))
			params = v;
		else if (!strcmp(a, "--cluster"))
			cluster = v;
		else if (!strcmp(a, "--records"))
			records = strtol(v, NULL, 10);
		else if (!strcmp(a, "--pool"))
			pool_size = strtol(v, NULL, 10);
		else if (!strcmp(a, "--workload"))
			workload = v;
		else if (!strcmp(a, "--rate"))
			rate = strtod(v, NULL);
		else if (!strcmp(a, "--settle"))
			settle_ms = strtol(v, NULL, 10);
		else if (!strcmp(a, "--lat"))
			lat_path = v;
		else if (!strcmp(a, "--kinds"))
			kinds_path = v;
		else
			die("unknown option %s", a);
	}
	if (!plugin || !state || !loc || records <= 0 || pool_size <= 0)
		die("usage: %s PLUGIN.so --state DIR --loc FILE [--params S] [--records N] [--workload W] "
		    "[--pool P] [--rate R] [--settle MS] [--lat FILE] [--kinds FILE] [--interactive|--fini]",
		    argv[0]);
	if (pool_size > records)
		pool_size = records;

	slurm_conf.cluster_name = (char *)cluster;
	slurm_conf.job_comp_loc = (char *)loc;
	slurm_conf.job_comp_params = (char *)params;
	slurm_conf.job_comp_type = "jobcomp/kafka";
	slurm_conf.state_save_location = (char *)state;
	if (make_dir(state))
		die("mkdir %s: %s", state, strerror(errno));

	/* Timer overhead: two back-to-back clock reads. */
	for (int i = 0; i < 4096; i++) {
		uint64_t a = mono_ns(), b = mono_ns();

		timer_overhead[i] = (uint32_t)(b - a);
	}

	/* Records (and their scripts) are built before anything is timed. */
	t0 = mono_ns();
	build_shared(cluster);
	pool = xmalloc((size_t)pool_size * sizeof(*pool));
	pool_kind = xmalloc((size_t)pool_size);
	for (long k = 0; k < pool_size; k++) {
		pool_kind[k] = (uint8_t)kind_for(workload, (int)k);
		pool[k] = build_job((int)k, (enum kind)pool_kind[k], 1000000u, state);
	}
	setup_ns = mono_ns() - t0;
	lat = xmalloc((size_t)records * sizeof(*lat));
	kinds = xmalloc((size_t)records);
	/* Touch the buffers now so page faults do not land in the timed loop. */
	memset(lat, 0, (size_t)records * sizeof(*lat));
	memset(kinds, 0, (size_t)records);

	load_plugin(plugin);
	t0 = mono_ns();
	rc = p_init();
	if (rc)
		die("init() returned %d", rc);
#if defined(JK_API_22_05)
	rc = p_set_location((char *)loc);
#else
	rc = p_set_location();
#endif
	init_ns = mono_ns() - t0;
	if (rc)
		die("set_location() returned %d", rc);
	if (settle_ms > 0) {
		struct timespec ts = { .tv_sec = settle_ms / 1000, .tv_nsec = (settle_ms % 1000) * 1000000L };

		while (nanosleep(&ts, &ts) == EINTR)
			;
	}

	thread_cpu_json(threads_start, sizeof(threads_start));
	getrusage(RUSAGE_SELF, &ru0);
	getrusage(RUSAGE_THREAD, &th0);
	t0 = mono_ns();
	{
		uint64_t interval = rate > 0 ? (uint64_t)(1e9 / rate) : 0, next = t0;

		for (long i = 0; i < records; i++) {
			long k = i % pool_size;
			uint64_t a, b;

			if (interval) {
				/* Sleep, as slurmctld's threads do between jobs (a spin
				 * would keep caches and the CPU warm). */
				struct timespec ts;

				next += interval;
				ts.tv_sec = (time_t)(next / 1000000000u);
				ts.tv_nsec = (long)(next % 1000000000u);
				while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
					;
			}
			a = mono_ns();
			rc = call_record(pool[k]);
			b = mono_ns();
			lat[i] = (uint32_t)((b - a) > UINT32_MAX ? UINT32_MAX : (b - a));
			kinds[i] = pool_kind[k];
			if (rc) {
				bad++;
				if (!first_bad)
					first_bad = rc;
			}
		}
	}
	t1 = mono_ns();
	getrusage(RUSAGE_THREAD, &th1);
	getrusage(RUSAGE_SELF, &ru1);
	thread_cpu_json(threads_end, sizeof(threads_end));

	{
		double wall = (double)(t1 - t0) / 1e9, sum = 0;
		uint32_t *split[KIND_COUNT];
		size_t nsplit[KIND_COUNT] = { 0 };

		for (long i = 0; i < records; i++)
			sum += lat[i];
		printf("%s {\"records\":%ld,\"workload\":\"%s\",\"pool\":%ld,\"setup_s\":%.3f,\"init_ms\":%.3f,"
		       "\"loop_wall_s\":%.6f,\"loop_rate\":%.1f,\"hot_rate\":%.1f,\"failed_calls\":%d,\"first_rc\":%d,"
		       "\"main_thread_cpu_s\":%.6f,\"main_thread_user_s\":%.6f,\"main_thread_sys_s\":%.6f,"
		       "\"process_cpu_s_during_loop\":%.6f,\"threads\":%d,\"log_lines\":%ld,\"log_errors\":%ld,"
		       "\"rss_kb\":%ld,\"hwm_kb\":%ld,\"t0_mono_ns\":%" PRIu64 ",\"t1_mono_ns\":%" PRIu64 ",\"pid\":%d,",
		       interactive ? "hot-done" : "hot", records, workload, pool_size, (double)setup_ns / 1e9,
		       (double)init_ns / 1e6, wall, (double)records / wall, (double)records / (sum / 1e9), bad,
		       first_bad, tv_s(th1.ru_utime) + tv_s(th1.ru_stime) - tv_s(th0.ru_utime) - tv_s(th0.ru_stime),
		       tv_s(th1.ru_utime) - tv_s(th0.ru_utime), tv_s(th1.ru_stime) - tv_s(th0.ru_stime),
		       tv_s(ru1.ru_utime) + tv_s(ru1.ru_stime) - tv_s(ru0.ru_utime) - tv_s(ru0.ru_stime),
		       thread_count(), atomic_load(&log_lines), atomic_load(&log_errors), status_kb("VmRSS"),
		       status_kb("VmHWM"), t0, t1, (int)getpid());
		printf("\"threads_at_start\":%s,\"threads_at_end\":%s,", threads_start, threads_end);
		print_dist(stdout, "timer_overhead", timer_overhead, 4096);
		putchar(',');
		print_dist(stdout, "all", lat, (size_t)records);
		for (int k = 0; k < KIND_COUNT; k++)
			split[k] = malloc((size_t)records * sizeof(uint32_t) + 1);
		for (long i = 0; i < records; i++)
			split[kinds[i]][nsplit[kinds[i]]++] = lat[i];
		for (int k = 0; k < KIND_COUNT; k++) {
			if (nsplit[k]) {
				putchar(',');
				print_dist(stdout, kind_names[k], split[k], nsplit[k]);
			}
			free(split[k]);
		}
		printf("}\n");
	}
	if (lat_path) {
		FILE *f = fopen(lat_path, "wb");

		if (!f || fwrite(lat, sizeof(*lat), (size_t)records, f) != (size_t)records || fclose(f))
			die("cannot write %s", lat_path);
	}
	if (kinds_path) {
		FILE *f = fopen(kinds_path, "wb");

		if (!f || fwrite(kinds, 1, (size_t)records, f) != (size_t)records || fclose(f))
			die("cannot write %s", kinds_path);
	}
	/* The per-call latencies and kinds (5 bytes per record) are the harness's,
	 * not the plugin's: given back before "measure" reads RssAnon, which is
	 * meant to show the plugin's memory per waiting record (issue #25). */
	free(lat);
	free(kinds);
	lat = NULL;
	kinds = NULL;

	if (interactive) {
		char line[256];

		while (fgets(line, sizeof(line), stdin)) {
			if (!strncmp(line, "measure", 7)) {
				struct rusage ru;
				uint64_t now = mono_ns();

				getrusage(RUSAGE_SELF, &ru);
				printf("measure {\"since_first_call_s\":%.6f,\"cpu_s\":%.6f,\"user_s\":%.6f,\"sys_s\":%.6f,"
				       "\"cpu_per_record_us\":%.3f,\"rss_kb\":%ld,\"hwm_kb\":%ld,\"threads\":%d,"
				       "\"log_lines\":%ld,\"log_errors\":%ld,\"rss_anon_kb\":%ld,\"rss_file_kb\":%ld}\n",
				       (double)(now - t0) / 1e9,
				       tv_s(ru.ru_utime) + tv_s(ru.ru_stime) - tv_s(ru0.ru_utime) - tv_s(ru0.ru_stime),
				       tv_s(ru.ru_utime) - tv_s(ru0.ru_utime), tv_s(ru.ru_stime) - tv_s(ru0.ru_stime),
				       (tv_s(ru.ru_utime) + tv_s(ru.ru_stime) - tv_s(ru0.ru_utime) - tv_s(ru0.ru_stime)) /
					       (double)records * 1e6,
				       status_kb("VmRSS"), status_kb("VmHWM"), thread_count(), atomic_load(&log_lines),
				       atomic_load(&log_errors), status_kb("RssAnon"), status_kb("RssFile"));
				if (getenv("JK_BENCH_MALLOC_INFO")) {
					/* Where the heap stands, arena by arena (glibc's XML). */
					FILE *f = fopen(getenv("JK_BENCH_MALLOC_INFO"), "w");

					if (f) {
						malloc_info(0, f);
						fclose(f);
					}
				}
			} else if (!strncmp(line, "fini", 4)) {
				uint64_t a = mono_ns();

				p_fini();
				printf("fini {\"fini_ms\":%.3f,\"hwm_kb\":%ld}\n", (double)(mono_ns() - a) / 1e6,
				       status_kb("VmHWM"));
			} else if (!strncmp(line, "quit", 4)) {
				break;
			} else {
				printf("err unknown command\n");
			}
		}
	} else if (do_fini) {
		uint64_t a = mono_ns();

		p_fini();
		printf("fini {\"fini_ms\":%.3f,\"hwm_kb\":%ld}\n", (double)(mono_ns() - a) / 1e6, status_kb("VmHWM"));
	}
	fflush(stdout);
	/* Exit without freeing: the plugin may still run threads (no fini). */
	_exit(0);
}
