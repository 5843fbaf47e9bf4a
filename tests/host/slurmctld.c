/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A small stand-in for slurmctld, for the integration tests of jobcomp/kafka.
 *
 * It loads the plugin the way slurmctld does (dlopen RTLD_LAZY, the three data
 * symbols, init, then the operations of the jobcomp API in slurmctld's order)
 * and provides what the plugin resolves from its host: the data symbol
 * `slurm_conf`, the log functions slurm_error .. slurm_debug2, and
 * assoc_mgr_lock / assoc_mgr_unlock. The binary must be named `slurmctld`
 * (the plugin stays inert in any other process).
 *
 * Build (the test does this; one layout header of slurm-headers/ is forced in):
 *   cc -O1 -g -std=gnu11 -Wall -Wextra -include slurm-headers/layout_<tag>.h \
 *      -DJK_API_22_05|-DJK_API_23_02|-DJK_API_25_05 -DEXPECTED_VERSION=0x160508 \
 *      tests/host/slurmctld.c -o DIR/slurmctld -rdynamic -ldl -lpthread
 *
 * Usage: slurmctld PLUGIN.so   (then commands on stdin, one per line)
 * Exit status: 2 when the plugin cannot be loaded or is of another type or
 * release (plugin_version), 3 when an operation symbol is missing (slurmctld
 * treats both as fatal), 0 on quit or end of input (neither calls fini).
 *
 * On start-up it prints "ok load rc=0 ..." once the plugin's symbols are
 * resolved. Every command then prints exactly one line on stdout:
 * "ok <cmd> rc=<n>[ extra]" when the command ran (rc is what the plugin
 * returned), or "err <cmd> <reason>" when the command itself was malformed.
 * The plugin's log lines go to stderr ("error: ", "info: ", ...).
 *
 * With JK_HOST_PROGRESS=<file> in the environment the host keeps, in that file
 * (8 bytes, a shared mapping: it survives a kill -9 of the host), the job id
 * of the last record call that returned, so that a test killing the host in
 * the middle of a burst knows exactly which calls had returned.
 *
 * Commands:
 *   conf key=value ...     slurm_conf: cluster= loc= params= state= type= debug=0|1
 *   init | set_location | fini | get_jobs
 *   job key=value ...      one job record -> log_record (record_job_end, 25.05+)
 *   start_job key=value .. one job record -> record_job_start (25.05+ only)
 *   jobs N FIRST_ID [key=value ...]   N records with consecutive job ids
 *   pace US                `jobs` waits US microseconds between records (0: none)
 *   jobs_threads T N FIRST_ID [key=value ...]   T threads, each N records (thread
 *                          k: ids FIRST_ID + k*N ...), each call under one shared
 *                          mutex as slurmctld's job write lock; between two records a
 *                          thread waits a pseudo-random 0..US microseconds (`pace`)
 *   poison                 job, details and part structs start as 0xa5 bytes (not zeros)
 *   record_at unmapped     log_record (record_job_end) with a pointer to an
 *                          unmapped page: a plugin that reads it dies of SIGSEGV
 *   stats                  assoc_mgr lock/unlock counters, time spent in record calls
 *   sleep MS | quit | abort
 *
 * Values are percent-decoded (%20 is a space, %FF the byte 0xff). Job keys:
 * id user_id group_id user_name group_name name raw(hex bytes for the name)
 * partition part_name nodes alloc_node state exit_code derived_ec start end
 * submit begin resize cpus nodes_count array_job_id array_task_id het_job_id
 * het_job_offset priority work_dir std_out std_err std_in comment
 * admin_comment account parent_account cluster qos time_limit batch
 * script (text written to <state>/hash.<id%10>/job.<id>/script, NUL-terminated)
 * script_len (a generated script of that many bytes, written the same way)
 * resv_name wckey container features db_index failed_node sluid
 * tres_req tres_fmt_req tres_alloc tres_fmt_alloc,
 * job_magic details_magic (default JOB_MAGIC, DETAILS_MAGIC).
 * A key given an empty value ("comment=") stores an empty string; a key given
 * the single value "%00" stores NULL. Defaults (spec_defaults): a completed
 * job of root in partition debug, account physics (association chain
 * physics -> physics -> root), qos normal, 2 CPUs on 1 node, 60 min limit,
 * submitted 2024-05-01T09:58:00, run 10:00:00 - 11:01:01 UTC.
 * Every record is freed, and scribbled over first, as soon as the plugin
 * returns: a plugin that kept a pointer into it sends garbage.
 */

#include <dlfcn.h>
#include <pthread.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef EXPECTED_VERSION
#error "build with -DEXPECTED_VERSION=0xMMmmuu (the Slurm release the plugin targets)"
#endif

#if defined(JK_API_22_05) + defined(JK_API_23_02) + defined(JK_API_25_05) != 1
#error "build with exactly one of -DJK_API_22_05, -DJK_API_23_02, -DJK_API_25_05"
#endif

#if !defined(JOB_MAGIC) || !defined(DETAILS_MAGIC)
#error "force-include one slurm-headers/layout_<tag>.h (-include ...)"
#endif

/* What the forced-in layout declares. */
#if defined(JOBCOMP_KAFKA_LAYOUT_22_05_8_H)
#define JK_HAS_FAILED_NODE 0
#else
#define JK_HAS_FAILED_NODE 1
#endif
#if defined(JOBCOMP_KAFKA_LAYOUT_22_05_8_H) || defined(JOBCOMP_KAFKA_LAYOUT_23_02_2_H) || \
	defined(JOBCOMP_KAFKA_LAYOUT_23_02_7_H)
#define JK_HAS_IDENTITY 0
#else
#define JK_HAS_IDENTITY 1
#endif
#if defined(JOBCOMP_KAFKA_LAYOUT_25_11_7_H) || defined(JOBCOMP_KAFKA_LAYOUT_26_05_3_H) || \
	defined(JOBCOMP_KAFKA_LAYOUT_26_05_5_H)
#define JK_HAS_STEP_ID 1
#else
#define JK_HAS_STEP_ID 0
#endif

#define NO_VAL 0xfffffffeu
#define NO_VAL16 0xfffeu
#define DEBUG_FLAG_JOBCOMP (UINT64_C(1) << 46)
#define EVENT_FINISH 1u
#define EVENT_START 2u

/* ------------------------------------------------------------------------ */
/* What slurmctld exports to its plugins                                    */
/* ------------------------------------------------------------------------ */

slurm_conf_t slurm_conf;

static void log_line(const char *prefix, const char *fmt, va_list ap)
{
	flockfile(stderr);
	fputs(prefix, stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	fflush(stderr);
	funlockfile(stderr);
}

#define LOG_FUNCTION(name, prefix)                 \
	__attribute__((format(printf, 1, 2)))      \
	void name(const char *fmt, ...);           \
	void name(const char *fmt, ...)            \
	{                                          \
		va_list ap;                        \
		va_start(ap, fmt);                 \
		log_line(prefix, fmt, ap);         \
		va_end(ap);                        \
	}

LOG_FUNCTION(slurm_error, "error: ")
LOG_FUNCTION(slurm_info, "info: ")
LOG_FUNCTION(slurm_verbose, "verbose: ")
LOG_FUNCTION(slurm_debug, "debug: ")
LOG_FUNCTION(slurm_debug2, "debug2: ")

/* assoc_mgr_lock_t: seven lock levels (assoc, file, qos, res, tres, user, wckey). */
#define ASSOC_LOCK_LEVELS 7
static atomic_long assoc_locks;
static atomic_long assoc_unlocks;
static atomic_long assoc_held;       /* locks not yet released */
static atomic_long assoc_misuse;     /* unlock without lock, or a level other than NO/READ/WRITE */
static atomic_long assoc_not_read;   /* the assoc level was not READ (1) */

static void check_levels(const void *locks)
{
	const int *levels = locks;

	if (!levels) {
		atomic_fetch_add(&assoc_misuse, 1);
		return;
	}
	for (int i = 0; i < ASSOC_LOCK_LEVELS; i++) {
		if (levels[i] < 0 || levels[i] > 2)
			atomic_fetch_add(&assoc_misuse, 1);
	}
	if (levels[0] != 1)
		atomic_fetch_add(&assoc_not_read, 1);
}

void assoc_mgr_lock(void *locks);
void assoc_mgr_lock(void *locks)
{
	check_levels(locks);
	atomic_fetch_add(&assoc_locks, 1);
	atomic_fetch_add(&assoc_held, 1);
}

void assoc_mgr_unlock(void *locks);
void assoc_mgr_unlock(void *locks)
{
	check_levels(locks);
	atomic_fetch_add(&assoc_unlocks, 1);
	if (atomic_fetch_sub(&assoc_held, 1) <= 0)
		atomic_fetch_add(&assoc_misuse, 1);
}

/* ------------------------------------------------------------------------ */
/* The plugin                                                               */
/* ------------------------------------------------------------------------ */

static int (*p_init)(void);
static void (*p_fini)(void);
#if defined(JK_API_22_05)
static int (*p_set_location)(char *);
#else
static int (*p_set_location)(void);
#endif
#if defined(JK_API_25_05)
static int (*p_record_job_end)(struct job_record *, uint32_t);
static int (*p_record_job_start)(struct job_record *, uint32_t);
#else
static int (*p_log_record)(struct job_record *);
#endif
static void *(*p_get_jobs)(void *);

static void *resolve(void *handle, const char *name)
{
	void *symbol;

	dlerror();
	symbol = dlsym(handle, name);
	if (!symbol) {
		const char *why = dlerror();
		fprintf(stderr, "slurmctld(test host): plugin symbol %s missing: %s\n", name,
			why ? why : "NULL");
		exit(3);
	}
	return symbol;
}

/* dlsym gives a void *; POSIX guarantees it converts to the function pointer. */
#define RESOLVE(var, handle, name)                            \
	do {                                                  \
		void *symbol_ = resolve((handle), (name));    \
		_Static_assert(sizeof(var) == sizeof(symbol_), \
			       "function pointer size");      \
		memcpy(&(var), &symbol_, sizeof(var));        \
	} while (0)

static void load_plugin(const char *path)
{
	void *handle = dlopen(path, RTLD_LAZY);
	const char *type, *name;
	const uint32_t *version;

	if (!handle) {
		fprintf(stderr, "slurmctld(test host): dlopen(%s): %s\n", path, dlerror());
		exit(2);
	}
	name = dlsym(handle, "plugin_name");
	type = dlsym(handle, "plugin_type");
	version = dlsym(handle, "plugin_version");
	if (!name || !type || !version) {
		fprintf(stderr, "slurmctld(test host): %s lacks plugin_name/plugin_type/plugin_version\n",
			path);
		exit(2);
	}
	if (strcmp(type, "jobcomp/kafka") != 0) {
		fprintf(stderr, "slurmctld(test host): plugin_type is \"%s\", not jobcomp/kafka\n", type);
		exit(2);
	}
	if (*version != (uint32_t)EXPECTED_VERSION) {
		fprintf(stderr,
			"slurmctld(test host): plugin_version 0x%06" PRIx32
			" does not match this host's SLURM_VERSION_NUMBER 0x%06x: "
			"incompatible plugin\n",
			*version, (unsigned)EXPECTED_VERSION);
		exit(2);
	}
	RESOLVE(p_init, handle, "init");
	RESOLVE(p_fini, handle, "fini");
	/* The operations, in the order slurmctld's plugin context looks them up. */
	RESOLVE(p_set_location, handle, "jobcomp_p_set_location");
#if defined(JK_API_25_05)
	RESOLVE(p_record_job_end, handle, "jobcomp_p_record_job_end");
	RESOLVE(p_get_jobs, handle, "jobcomp_p_get_jobs");
	RESOLVE(p_record_job_start, handle, "jobcomp_p_record_job_start");
#else
	RESOLVE(p_log_record, handle, "jobcomp_p_log_record");
	RESOLVE(p_get_jobs, handle, "jobcomp_p_get_jobs");
#endif
	/* The plugin stays loaded until the process exits, as in slurmctld. */
	printf("ok load rc=0 name=%s type=%s version=0x%06" PRIx32 "\n", name, type, *version);
	fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* Text helpers                                                             */
/* ------------------------------------------------------------------------ */

static void *xcalloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);

	if (!p) {
		fprintf(stderr, "slurmctld(test host): out of memory\n");
		exit(1);
	}
	return p;
}

static char *xstrdup(const char *text)
{
	size_t len = strlen(text);
	char *copy = xcalloc(len + 1, 1);

	memcpy(copy, text, len);
	return copy;
}

static int hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decodes `text` into a new NUL-terminated buffer; *len (if given)
 * gets the decoded length (the bytes may contain NUL). A '%' not followed by
 * two hex digits is kept as it is.
 */
static char *percent_decode(const char *text, size_t *len)
{
	size_t in = strlen(text), out = 0;
	char *buf = xcalloc(in + 1, 1);

	for (size_t i = 0; i < in; i++) {
		int hi, lo;

		if (text[i] == '%' && i + 2 < in && (hi = hex_digit((unsigned char)text[i + 1])) >= 0 &&
		    (lo = hex_digit((unsigned char)text[i + 2])) >= 0) {
			buf[out++] = (char)(unsigned char)(hi * 16 + lo);
			i += 2;
		} else {
			buf[out++] = text[i];
		}
	}
	buf[out] = '\0';
	if (len)
		*len = out;
	return buf;
}

/* Decodes a hex string ("4aff00") into a NUL-terminated buffer; NULL if malformed. */
static char *hex_decode(const char *text)
{
	size_t in = strlen(text);
	char *buf;

	if (in % 2)
		return NULL;
	buf = xcalloc(in / 2 + 1, 1);
	for (size_t i = 0; i < in; i += 2) {
		int hi = hex_digit((unsigned char)text[i]), lo = hex_digit((unsigned char)text[i + 1]);

		if (hi < 0 || lo < 0) {
			free(buf);
			return NULL;
		}
		buf[i / 2] = (char)(unsigned char)(hi * 16 + lo);
	}
	return buf;
}

static bool parse_u64(const char *text, uint64_t max, uint64_t *value)
{
	char *end;
	unsigned long long v;

	if (!*text || *text == '-')
		return false;
	errno = 0;
	v = strtoull(text, &end, 0);
	if (errno || *end || v > max)
		return false;
	*value = v;
	return true;
}

static bool parse_i64(const char *text, int64_t *value)
{
	char *end;
	long long v;

	if (!*text)
		return false;
	errno = 0;
	v = strtoll(text, &end, 0);
	if (errno || *end)
		return false;
	*value = v;
	return true;
}

/* Splits "key=value" in place; false when there is no '='. */
static bool split_pair(char *token, char **key, char **value)
{
	char *eq = strchr(token, '=');

	if (!eq)
		return false;
	*eq = '\0';
	*key = token;
	*value = eq + 1;
	return true;
}

/* Replaces *slot with the percent-decoded value; "%00" alone means NULL. */
static void set_string(char **slot, const char *value)
{
	free(*slot);
	*slot = strcmp(value, "%00") == 0 ? NULL : percent_decode(value, NULL);
}

/* ------------------------------------------------------------------------ */
/* slurm_conf                                                               */
/* ------------------------------------------------------------------------ */

static int cmd_conf(char **args, int nargs, char *why, size_t whylen)
{
	for (int i = 0; i < nargs; i++) {
		char *key, *value;

		if (!split_pair(args[i], &key, &value)) {
			snprintf(why, whylen, "expected key=value, got %.200s", args[i]);
			return -1;
		}
		if (!strcmp(key, "cluster")) {
			set_string(&slurm_conf.cluster_name, value);
		} else if (!strcmp(key, "loc")) {
			set_string(&slurm_conf.job_comp_loc, value);
		} else if (!strcmp(key, "params")) {
			set_string(&slurm_conf.job_comp_params, value);
		} else if (!strcmp(key, "state")) {
			set_string(&slurm_conf.state_save_location, value);
		} else if (!strcmp(key, "type")) {
			set_string(&slurm_conf.job_comp_type, value);
		} else if (!strcmp(key, "debug")) {
			if (!strcmp(value, "1"))
				slurm_conf.debug_flags |= DEBUG_FLAG_JOBCOMP;
			else if (!strcmp(value, "0"))
				slurm_conf.debug_flags &= ~DEBUG_FLAG_JOBCOMP;
			else {
				snprintf(why, whylen, "debug must be 0 or 1");
				return -1;
			}
		} else {
			snprintf(why, whylen, "unknown conf key %.200s", key);
			return -1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Job records                                                              */
/* ------------------------------------------------------------------------ */

/* The values of one synthetic job, before it is laid out as a job_record. */
struct job_spec {
	uint32_t id, user_id, group_id, state, exit_code, derived_ec;
	uint32_t cpus, nodes_count, array_job_id, array_task_id;
	uint32_t het_job_id, het_job_offset, priority, time_limit, part_max_time;
	uint32_t job_magic, details_magic; /* the layout guard's tests break them */
	uint16_t batch;
	uint64_t db_index, sluid;
	int64_t start, end, submit, begin, resize;
	char *user_name, *group_name, *name, *partition, *part_name, *nodes, *alloc_node;
	char *work_dir, *std_out, *std_err, *std_in, *comment, *admin_comment;
	char *account, *parent_account, *cluster, *qos, *resv_name, *wckey, *container;
	char *features, *failed_node, *tres_req, *tres_fmt_req, *tres_alloc, *tres_fmt_alloc;
	char *script;       /* written to the state directory when set */
	size_t script_len;  /* its length (the text may hold no NUL) */
};

static void spec_defaults(struct job_spec *s, uint32_t id)
{
	memset(s, 0, sizeof(*s));
	s->id = id;
	s->user_id = 0;
	s->group_id = 0;
	s->state = 3; /* JOB_COMPLETE */
	s->job_magic = JOB_MAGIC;
	s->details_magic = DETAILS_MAGIC;
	s->cpus = 2;
	s->nodes_count = 1;
	s->array_task_id = NO_VAL;
	s->priority = 1;
	s->time_limit = 60;
	s->part_max_time = 0xffffffffu;
	s->submit = 1714557480; /* 2024-05-01T09:58:00 */
	s->begin = 1714557480;
	s->start = 1714557600;  /* 2024-05-01T10:00:00 */
	s->end = 1714561261;    /* 2024-05-01T11:01:01 */
	s->user_name = xstrdup("root");
	s->group_name = xstrdup("root");
	s->name = xstrdup("test.sh");
	s->partition = xstrdup("debug");
	s->part_name = xstrdup("debug");
	s->nodes = xstrdup("localhost");
	s->alloc_node = xstrdup("login1");
	s->work_dir = xstrdup("/tmp");
	s->std_out = xstrdup("/tmp/slurm-%j.out");
	s->std_in = xstrdup("/dev/null");
	s->account = xstrdup("physics");
	s->cluster = NULL; /* defaults to slurm_conf.cluster_name at build time */
	s->qos = xstrdup("normal");
}

static void spec_free(struct job_spec *s)
{
	char **strings[] = {
		&s->user_name, &s->group_name, &s->name, &s->partition, &s->part_name, &s->nodes,
		&s->alloc_node, &s->work_dir, &s->std_out, &s->std_err, &s->std_in, &s->comment,
		&s->admin_comment, &s->account, &s->parent_account, &s->cluster, &s->qos,
		&s->resv_name, &s->wckey, &s->container, &s->features, &s->failed_node,
		&s->tres_req, &s->tres_fmt_req, &s->tres_alloc, &s->tres_fmt_alloc, &s->script,
	};

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		free(*strings[i]);
		*strings[i] = NULL;
	}
}

struct u32_key {
	const char *key;
	size_t offset;
};
struct str_key {
	const char *key;
	size_t offset;
};

#define U32_KEY(k, field) { k, offsetof(struct job_spec, field) }
static const struct u32_key u32_keys[] = {
	U32_KEY("id", id),
	U32_KEY("job_magic", job_magic),
	U32_KEY("details_magic", details_magic),
	U32_KEY("user_id", user_id),
	U32_KEY("group_id", group_id),
	U32_KEY("state", state),
	U32_KEY("exit_code", exit_code),
	U32_KEY("derived_ec", derived_ec),
	U32_KEY("cpus", cpus),
	U32_KEY("nodes_count", nodes_count),
	U32_KEY("array_job_id", array_job_id),
	U32_KEY("array_task_id", array_task_id),
	U32_KEY("het_job_id", het_job_id),
	U32_KEY("het_job_offset", het_job_offset),
	U32_KEY("priority", priority),
	U32_KEY("time_limit", time_limit),
	U32_KEY("part_max_time", part_max_time),
};

#define STR_KEY(k, field) { k, offsetof(struct job_spec, field) }
static const struct str_key str_keys[] = {
	STR_KEY("user_name", user_name),
	STR_KEY("group_name", group_name),
	STR_KEY("name", name),
	STR_KEY("partition", partition),
	STR_KEY("part_name", part_name),
	STR_KEY("nodes", nodes),
	STR_KEY("alloc_node", alloc_node),
	STR_KEY("work_dir", work_dir),
	STR_KEY("std_out", std_out),
	STR_KEY("std_err", std_err),
	STR_KEY("std_in", std_in),
	STR_KEY("comment", comment),
	STR_KEY("admin_comment", admin_comment),
	STR_KEY("account", account),
	STR_KEY("parent_account", parent_account),
	STR_KEY("cluster", cluster),
	STR_KEY("qos", qos),
	STR_KEY("resv_name", resv_name),
	STR_KEY("wckey", wckey),
	STR_KEY("container", container),
	STR_KEY("features", features),
	STR_KEY("failed_node", failed_node),
	STR_KEY("tres_req", tres_req),
	STR_KEY("tres_fmt_req", tres_fmt_req),
	STR_KEY("tres_alloc", tres_alloc),
	STR_KEY("tres_fmt_alloc", tres_fmt_alloc),
};

/* Applies one key=value to the spec; false (with a reason) when it is malformed. */
static bool spec_set(struct job_spec *s, char *token, char *why, size_t whylen)
{
	char *key, *value;
	uint64_t u;
	int64_t i;

	if (!split_pair(token, &key, &value)) {
		snprintf(why, whylen, "expected key=value, got %.200s", token);
		return false;
	}
	for (size_t k = 0; k < sizeof(u32_keys) / sizeof(u32_keys[0]); k++) {
		if (strcmp(key, u32_keys[k].key))
			continue;
		if (!parse_u64(value, UINT32_MAX, &u)) {
			snprintf(why, whylen, "%s needs an unsigned 32-bit number", key);
			return false;
		}
		memcpy((char *)s + u32_keys[k].offset, &(uint32_t){ (uint32_t)u }, sizeof(uint32_t));
		return true;
	}
	for (size_t k = 0; k < sizeof(str_keys) / sizeof(str_keys[0]); k++) {
		char **slot;

		if (strcmp(key, str_keys[k].key))
			continue;
		slot = (char **)(void *)((char *)s + str_keys[k].offset);
		set_string(slot, value);
		return true;
	}
	if (!strcmp(key, "start") || !strcmp(key, "end") || !strcmp(key, "submit") ||
	    !strcmp(key, "begin") || !strcmp(key, "resize")) {
		if (!parse_i64(value, &i)) {
			snprintf(why, whylen, "%s needs a number", key);
			return false;
		}
		if (!strcmp(key, "start"))
			s->start = i;
		else if (!strcmp(key, "end"))
			s->end = i;
		else if (!strcmp(key, "submit"))
			s->submit = i;
		else if (!strcmp(key, "begin"))
			s->begin = i;
		else
			s->resize = i;
		return true;
	}
	if (!strcmp(key, "batch")) {
		if (!parse_u64(value, UINT16_MAX, &u)) {
			snprintf(why, whylen, "batch needs a 16-bit number");
			return false;
		}
		s->batch = (uint16_t)u;
		return true;
	}
	if (!strcmp(key, "db_index") || !strcmp(key, "sluid")) {
		if (!parse_u64(value, UINT64_MAX, &u)) {
			snprintf(why, whylen, "%s needs an unsigned number", key);
			return false;
		}
		if (!strcmp(key, "db_index"))
			s->db_index = u;
		else
			s->sluid = u;
		return true;
	}
	if (!strcmp(key, "raw")) {
		char *name = hex_decode(value);

		if (!name) {
			snprintf(why, whylen, "raw needs an even number of hex digits");
			return false;
		}
		free(s->name);
		s->name = name;
		return true;
	}
	if (!strcmp(key, "script")) {
		free(s->script);
		s->script = percent_decode(value, &s->script_len);
		return true;
	}
	if (!strcmp(key, "script_len")) {
		static const char head[] = "#!/bin/sh\n";
		if (!parse_u64(value, 64u << 20, &u)) {
			snprintf(why, whylen, "script_len needs a size up to 64 MiB");
			return false;
		}
		free(s->script);
		s->script = xcalloc((size_t)u + 1, 1);
		for (size_t n = 0; n < (size_t)u; n++)
			s->script[n] = n < sizeof(head) - 1 ? head[n] : (n % 64 == 63 ? '\n' : 'a' + (char)(n % 26));
		s->script_len = (size_t)u;
		return true;
	}
	snprintf(why, whylen, "unknown job key %.200s", key);
	return false;
}

/* mkdir -p for the two directory levels below the state directory. */
static int make_dir(const char *path)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return 0;
	return -1;
}

/* Writes the batch script where slurmctld keeps it, NUL-terminated. */
static int write_script(const struct job_spec *s, char *why, size_t whylen)
{
	const char *state = slurm_conf.state_save_location;
	uint32_t owner = s->array_task_id != NO_VAL && s->array_job_id ? s->array_job_id : s->id;
	char dir1[PATH_MAX], dir2[PATH_MAX], path[PATH_MAX];
	FILE *f;
	int ok;

	if (!state) {
		snprintf(why, whylen, "script= needs conf state= first");
		return -1;
	}
	if (snprintf(dir1, sizeof(dir1), "%s/hash.%" PRIu32, state, owner % 10) >= (int)sizeof(dir1) ||
	    snprintf(dir2, sizeof(dir2), "%s/job.%" PRIu32, dir1, owner) >= (int)sizeof(dir2) ||
	    snprintf(path, sizeof(path), "%s/script", dir2) >= (int)sizeof(path)) {
		snprintf(why, whylen, "state path too long");
		return -1;
	}
	if (make_dir(dir1) || make_dir(dir2)) {
		snprintf(why, whylen, "mkdir %.300s: %s", dir2, strerror(errno));
		return -1;
	}
	f = fopen(path, "wb");
	if (!f) {
		snprintf(why, whylen, "open %.300s: %s", path, strerror(errno));
		return -1;
	}
	ok = fwrite(s->script, 1, s->script_len, f) == s->script_len && fputc('\0', f) != EOF;
	ok = (fclose(f) == 0) && ok;
	if (!ok) {
		snprintf(why, whylen, "write %.300s failed", path);
		return -1;
	}
	return 0;
}

/* Everything one job_record points to, so that it can all be freed afterwards. */
struct built_job {
	struct job_record *job;
	struct job_details *details;
	struct part_record *part;
	struct slurmdb_qos_rec *qos;
	struct slurmdb_assoc_rec *assoc[3];        /* user, account, root */
	struct slurmdb_assoc_usage *usage[3];
#if JK_HAS_IDENTITY
	struct identity *id;
	gid_t *gids;
	char **gr_names;
#endif
	char *strings[40];
	int nstrings;
};

/* A private copy of `text` owned by `b` (NULL stays NULL). */
static char *own(struct built_job *b, const char *text)
{
	char *copy;

	if (!text)
		return NULL;
	if (b->nstrings >= (int)(sizeof(b->strings) / sizeof(b->strings[0]))) {
		fprintf(stderr, "slurmctld(test host): too many strings in one job\n");
		exit(1);
	}
	copy = xstrdup(text);
	b->strings[b->nstrings++] = copy;
	return copy;
}

/* `poison`: the job, details and partition structs start as 0xa5 bytes instead of
 * zeros, as the members our declarations leave out are never all zero in
 * slurmctld; a plugin reading them through another layout reads poison. */
static bool poison_records;

static void build_job(struct built_job *b, const struct job_spec *s)
{
	struct job_record *job;
	struct job_details *details;
	const char *cluster = s->cluster ? s->cluster : slurm_conf.cluster_name;
	const char *parent = s->parent_account ? s->parent_account : s->account;

	memset(b, 0, sizeof(*b));
	job = b->job = xcalloc(1, sizeof(*job));
	details = b->details = xcalloc(1, sizeof(*details));
	if (poison_records) {
		memset(job, 0xa5, sizeof(*job));
		memset(details, 0xa5, sizeof(*details));
		/* Every declared member the code below may leave unset. */
		job->part_ptr = NULL;
		job->qos_ptr = NULL;
		job->assoc_ptr = NULL;
#if JK_HAS_IDENTITY
		job->id = NULL;
#endif
		details->orig_dependency = NULL;
		details->exc_nodes = NULL;
	}

	job->magic = s->job_magic;
	job->job_id = s->id;
	job->user_id = s->user_id;
	job->group_id = s->group_id;
	job->job_state = s->state;
	job->exit_code = s->exit_code;
	job->derived_ec = s->derived_ec;
	job->start_time = (time_t)s->start;
	job->end_time = (time_t)s->end;
	job->resize_time = (time_t)s->resize;
	job->total_cpus = s->cpus;
	job->total_nodes = s->nodes_count;
	job->array_job_id = s->array_job_id;
	job->array_task_id = s->array_task_id;
	job->het_job_id = s->het_job_id;
	job->het_job_offset = s->het_job_offset;
	job->priority = s->priority;
	job->time_limit = s->time_limit;
	job->batch_flag = s->batch;
	job->db_index = s->db_index;
	job->name = own(b, s->name);
	job->partition = own(b, s->partition);
	job->nodes = own(b, s->nodes);
	job->alloc_node = own(b, s->alloc_node);
	job->account = own(b, s->account);
	job->comment = own(b, s->comment);
	job->admin_comment = own(b, s->admin_comment);
	job->resv_name = own(b, s->resv_name);
	job->wckey = own(b, s->wckey);
	job->container = own(b, s->container);
	job->tres_req_str = own(b, s->tres_req);
	job->tres_fmt_req_str = own(b, s->tres_fmt_req);
	job->tres_alloc_str = own(b, s->tres_alloc);
	job->tres_fmt_alloc_str = own(b, s->tres_fmt_alloc);
#if JK_HAS_FAILED_NODE
	job->failed_node = own(b, s->failed_node);
#endif
#if JK_HAS_STEP_ID
	job->step_id.sluid = s->sluid;
	/* slurm_step_id_t.job_id, after the 8-byte sluid (slurm-headers/
	 * declare only the sluid), as slurmctld keeps it. */
	memcpy((char *)&job->step_id + 8, &job->job_id, sizeof(job->job_id));
#endif

	details->magic = s->details_magic;
	details->submit_time = (time_t)s->submit;
	details->begin_time = (time_t)s->begin;
	details->work_dir = own(b, s->work_dir);
	details->std_out = own(b, s->std_out);
	details->std_err = own(b, s->std_err);
	details->std_in = own(b, s->std_in);
	details->features = own(b, s->features);
	details->num_tasks = s->cpus;
	details->ntasks_per_node = NO_VAL16;
	details->ntasks_per_tres = NO_VAL16;
	details->cpus_per_task = 1;
	job->details = details;

	if (s->part_name) {
		b->part = xcalloc(1, sizeof(*b->part));
		if (poison_records)
			memset(b->part, 0xa5, sizeof(*b->part));
		b->part->magic = PART_MAGIC;
		b->part->name = own(b, s->part_name);
		b->part->max_time = s->part_max_time;
		job->part_ptr = b->part;
	}
	if (s->qos) {
		b->qos = xcalloc(1, sizeof(*b->qos));
		b->qos->name = own(b, s->qos);
		job->qos_ptr = b->qos;
	}

	/* user association -> account association -> root association */
	if (s->account) {
		const char *accts[3] = { s->account, parent, "root" };

		for (int i = 0; i < 3; i++) {
			b->assoc[i] = xcalloc(1, sizeof(*b->assoc[i]));
			b->usage[i] = xcalloc(1, sizeof(*b->usage[i]));
			b->assoc[i]->acct = own(b, accts[i]);
			b->assoc[i]->cluster = own(b, cluster);
			b->assoc[i]->usage = b->usage[i];
		}
		b->usage[0]->parent_assoc_ptr = b->assoc[1];
		b->usage[1]->parent_assoc_ptr = b->assoc[2];
		job->assoc_ptr = b->assoc[0];
	}

#if JK_HAS_IDENTITY
	if (s->user_name) {
		b->id = xcalloc(1, sizeof(*b->id));
		b->gids = xcalloc(1, sizeof(*b->gids));
		b->gr_names = xcalloc(1, sizeof(*b->gr_names));
		b->id->pw_name = own(b, s->user_name);
		b->gids[0] = s->group_id;
		b->gr_names[0] = own(b, s->group_name ? s->group_name : "");
		b->id->ngids = s->group_name ? 1 : 0;
		b->id->gids = b->gids;
		b->id->gr_names = b->gr_names;
		job->id = b->id;
	}
#endif
}

/* Frees the record and scribbles over it first: a plugin that kept a pointer sees garbage. */
static void free_job(struct built_job *b)
{
	for (int i = 0; i < b->nstrings; i++) {
		memset(b->strings[i], 'X', strlen(b->strings[i]));
		free(b->strings[i]);
	}
	for (int i = 0; i < 3; i++) {
		free(b->assoc[i]);
		free(b->usage[i]);
	}
	free(b->qos);
	free(b->part);
#if JK_HAS_IDENTITY
	free(b->id);
	free(b->gids);
	free(b->gr_names);
#endif
	memset(b->details, 0xa5, sizeof(*b->details));
	free(b->details);
	memset(b->job, 0xa5, sizeof(*b->job));
	free(b->job);
	memset(b, 0, sizeof(*b));
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Time spent inside the plugin's record calls (what slurmctld would stall on). */
static uint64_t record_calls, record_ns_total, record_ns_max;

/* `pace`: microseconds between the records of `jobs`. */
static uint64_t pace_us;

/* `jobs_threads`: slurmctld's job write lock, held around each record call. */
static pthread_mutex_t job_write_lock = PTHREAD_MUTEX_INITIALIZER;

/* JK_HOST_PROGRESS: the id of the last job whose record call returned. */
static volatile uint64_t *progress;

static void open_progress(void)
{
	const char *path = getenv("JK_HOST_PROGRESS");
	void *map;
	int fd;

	if (!path || !*path)
		return;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, sizeof(uint64_t)) != 0) {
		fprintf(stderr, "host: cannot create JK_HOST_PROGRESS file %s: %s\n", path, strerror(errno));
		exit(2);
	}
	map = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, "host: cannot map %s: %s\n", path, strerror(errno));
		exit(2);
	}
	close(fd);
	progress = map;
}

static int call_record(struct job_record *job, bool start)
{
	uint64_t t0 = now_ns(), spent;
	int rc;

#if defined(JK_API_25_05)
	rc = start ? p_record_job_start(job, EVENT_START) : p_record_job_end(job, EVENT_FINISH);
#else
	(void)start;
	rc = p_log_record(job);
#endif
	spent = now_ns() - t0;
	if (progress)
		*progress = job->job_id;
	record_calls++;
	record_ns_total += spent;
	if (spent > record_ns_max)
		record_ns_max = spent;
	return rc;
}

/* Builds one record from defaults + args, calls the plugin, frees it. */
static bool run_job(char **args, int nargs, uint32_t id, bool start, int *rc, char *why, size_t whylen)
{
	struct job_spec spec;
	struct built_job built;
	bool ok = true;

	spec_defaults(&spec, id);
	for (int i = 0; i < nargs && ok; i++) {
		/* spec_set splits in place: work on a copy so `jobs` can reuse args. */
		char *token = xstrdup(args[i]);

		ok = spec_set(&spec, token, why, whylen);
		free(token);
	}
	if (ok && spec.script)
		ok = write_script(&spec, why, whylen) == 0;
	if (ok) {
		build_job(&built, &spec);
		*rc = call_record(built.job, start);
		free_job(&built);
	}
	spec_free(&spec);
	return ok;
}

/* One thread of `jobs_threads`. */
struct thread_jobs {
	pthread_t thread;
	char **args;
	int nargs;
	uint64_t n, first;
	int first_bad;
	bool malformed;
	char why[256];
};

static void *thread_jobs_run(void *arg)
{
	struct thread_jobs *t = arg;
	uint64_t seed = t->first * 6364136223846793005ull + 1442695040888963407ull;

	for (uint64_t k = 0; k < t->n; k++) {
		int one = 0;
		bool ok;

		pthread_mutex_lock(&job_write_lock);
		ok = run_job(t->args, t->nargs, (uint32_t)(t->first + k), false, &one, t->why, sizeof(t->why));
		pthread_mutex_unlock(&job_write_lock);
		if (!ok) {
			t->malformed = true;
			break;
		}
		if (one && !t->first_bad)
			t->first_bad = one;
		if (pace_us) {
			uint64_t us;
			struct timespec ts;

			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			us = (seed >> 33) % (pace_us + 1);
			ts.tv_sec = (time_t)(us / 1000000);
			ts.tv_nsec = (long)(us % 1000000) * 1000L;
			while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
				;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Command loop                                                             */
/* ------------------------------------------------------------------------ */

#define MAX_ARGS 256

static int reply_ok(const char *cmd, int rc, const char *extra)
{
	printf("ok %s rc=%d%s%s\n", cmd, rc, extra && *extra ? " " : "", extra ? extra : "");
	fflush(stdout);
	return rc;
}

static int reply_err(const char *cmd, const char *why)
{
	printf("err %s %s\n", cmd, why);
	fflush(stdout);
	return -1;
}

/* Runs one command line and prints its result line; returns the rc printed. */
static int run_command(char *line)
{
	char *args[MAX_ARGS];
	int nargs = 0;
	char why[512] = "";
	char extra[256] = "";
	const char *cmd;
	int rc = 0;

	for (char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save); tok;
	     tok = strtok_r(NULL, " \t\r\n", &save)) {
		if (nargs == MAX_ARGS) {
			return reply_err(args[0], "too many arguments");
		}
		args[nargs++] = tok;
	}
	if (nargs == 0)
		return 0;
	cmd = args[0];

	if (!strcmp(cmd, "conf")) {
		if (cmd_conf(args + 1, nargs - 1, why, sizeof(why)))
			return reply_err(cmd, why);
		return reply_ok(cmd, 0, NULL);
	}
	if (!strcmp(cmd, "init"))
		return reply_ok(cmd, p_init(), NULL);
	if (!strcmp(cmd, "set_location")) {
#if defined(JK_API_22_05)
		rc = p_set_location(slurm_conf.job_comp_loc);
#else
		rc = p_set_location();
#endif
		return reply_ok(cmd, rc, NULL);
	}
	if (!strcmp(cmd, "fini")) {
		p_fini();
		return reply_ok(cmd, 0, NULL);
	}
	if (!strcmp(cmd, "get_jobs")) {
		void *list = p_get_jobs(NULL);
		return reply_ok(cmd, list ? 1 : 0, list ? "list=non-null" : "list=null");
	}
	if (!strcmp(cmd, "poison")) {
		poison_records = true;
		return reply_ok(cmd, 0, NULL);
	}
	if (!strcmp(cmd, "record_at")) {
		void *page;

		if (nargs != 2 || strcmp(args[1], "unmapped"))
			return reply_err(cmd, "usage: record_at unmapped");
		page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (page == MAP_FAILED || munmap(page, 4096) != 0)
			return reply_err(cmd, "mmap/munmap failed");
		return reply_ok(cmd, call_record(page, false), NULL);
	}
	if (!strcmp(cmd, "job") || !strcmp(cmd, "start_job")) {
		bool start = !strcmp(cmd, "start_job");
#if !defined(JK_API_25_05)
		if (start)
			return reply_err(cmd, "record_job_start exists from 25.05 only");
#endif
		if (!run_job(args + 1, nargs - 1, 1, start, &rc, why, sizeof(why)))
			return reply_err(cmd, why);
		return reply_ok(cmd, rc, NULL);
	}
	if (!strcmp(cmd, "jobs")) {
		uint64_t n, first;
		int first_bad = 0;

		if (nargs < 3 || !parse_u64(args[1], 10000000, &n) || !parse_u64(args[2], UINT32_MAX, &first) ||
		    first + n > (uint64_t)UINT32_MAX + 1)
			return reply_err(cmd, "usage: jobs N FIRST_ID [key=value ...]");
		for (uint64_t k = 0; k < n; k++) {
			int one = 0;

			if (!run_job(args + 3, nargs - 3, (uint32_t)(first + k), false, &one, why, sizeof(why)))
				return reply_err(cmd, why);
			if (one && !first_bad)
				first_bad = one;
			if (pace_us) {
				struct timespec ts = { .tv_sec = (time_t)(pace_us / 1000000),
						       .tv_nsec = (long)(pace_us % 1000000) * 1000L };

				while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
					;
			}
		}
		snprintf(extra, sizeof(extra), "n=%" PRIu64, n);
		return reply_ok(cmd, first_bad, extra);
	}
	if (!strcmp(cmd, "jobs_threads")) {
		uint64_t threads, n, first;
		struct thread_jobs *t;
		int first_bad = 0;
		const char *malformed = NULL;

		if (nargs < 4 || !parse_u64(args[1], 64, &threads) || threads == 0 || !parse_u64(args[2], 10000000, &n) ||
		    !parse_u64(args[3], UINT32_MAX, &first) || first + threads * n > (uint64_t)UINT32_MAX + 1)
			return reply_err(cmd, "usage: jobs_threads T N FIRST_ID [key=value ...]");
		t = xcalloc(threads, sizeof(*t));
		for (uint64_t k = 0; k < threads; k++) {
			t[k] = (struct thread_jobs){ .args = args + 4, .nargs = nargs - 4, .n = n, .first = first + k * n };
			if (pthread_create(&t[k].thread, NULL, thread_jobs_run, &t[k]) != 0) {
				fprintf(stderr, "host: pthread_create failed\n");
				exit(2);
			}
		}
		for (uint64_t k = 0; k < threads; k++) {
			pthread_join(t[k].thread, NULL);
			if (t[k].first_bad && !first_bad)
				first_bad = t[k].first_bad;
			if (t[k].malformed && !malformed)
				malformed = t[k].why;
		}
		if (malformed) {
			snprintf(why, sizeof(why), "%s", malformed);
			free(t);
			return reply_err(cmd, why);
		}
		free(t);
		snprintf(extra, sizeof(extra), "n=%" PRIu64, threads * n);
		return reply_ok(cmd, first_bad, extra);
	}
	if (!strcmp(cmd, "stats")) {
		snprintf(extra, sizeof(extra),
			 "assoc_lock=%ld assoc_unlock=%ld assoc_held=%ld assoc_misuse=%ld assoc_not_read=%ld "
			 "record_calls=%" PRIu64 " record_us_total=%" PRIu64 " record_us_max=%" PRIu64,
			 atomic_load(&assoc_locks), atomic_load(&assoc_unlocks), atomic_load(&assoc_held),
			 atomic_load(&assoc_misuse), atomic_load(&assoc_not_read), record_calls,
			 record_ns_total / 1000, record_ns_max / 1000);
		return reply_ok(cmd, 0, extra);
	}
	if (!strcmp(cmd, "pace")) {
		if (nargs != 2 || !parse_u64(args[1], 10000000, &pace_us))
			return reply_err(cmd, "usage: pace US");
		return reply_ok(cmd, 0, NULL);
	}
	if (!strcmp(cmd, "sleep")) {
		uint64_t ms;
		struct timespec ts;

		if (nargs != 2 || !parse_u64(args[1], 3600000, &ms))
			return reply_err(cmd, "usage: sleep MS");
		ts.tv_sec = (time_t)(ms / 1000);
		ts.tv_nsec = (long)(ms % 1000) * 1000000L;
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
		return reply_ok(cmd, 0, NULL);
	}
	if (!strcmp(cmd, "quit")) {
		reply_ok(cmd, 0, NULL);
		exit(0);
	}
	if (!strcmp(cmd, "abort")) {
		fflush(stdout);
		fflush(stderr);
		raise(SIGKILL);
		return reply_err(cmd, "still alive after SIGKILL");
	}
	return reply_err(cmd, "unknown command");
}

int main(int argc, char **argv)
{
	char *line = NULL;
	size_t cap = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s PLUGIN.so  (commands on stdin)\n", argv[0]);
		return 2;
	}
	open_progress();
	/* As slurmctld's: it loads the plugin JobCompType names. */
	slurm_conf.job_comp_type = strdup("jobcomp/kafka");
	load_plugin(argv[1]);
	while (getline(&line, &cap, stdin) != -1)
		run_command(line);
	/* End of input: exit like `quit` (no fini). */
	free(line);
	return 0;
}
