/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Runtime evidence of struct layouts: a throw-away jobcomp plugin
 * ("jobcomp/jkprobe") that a real slurmctld loads. For every job start and job
 * end it writes what it sees behind the job_record pointer to
 * $JK_PROBE_DIR/<n>-<event>.json (slurmctld's environment; default /tmp), as
 * a tree of memory blocks starting at the record:
 *
 *  - "xmalloc": the two words Slurm's xmalloc() keeps in front of every block
 *    it returns (a magic 0x42 and the size asked for), i.e. the exact sizeof
 *    of the struct slurmctld allocated (job_record_t, job_details_t, ...);
 *  - "hex": the block's bytes (up to its xmalloc size);
 *  - "strs": the block's 8-aligned words that point to printable strings;
 *  - "kids": the same for every word that points to readable memory, two
 *    levels deep (record -> details / part_ptr / id -> gids, gr_names, ...).
 *
 * Memory is read with process_vm_readv() on our own process, so a word that is
 * not a pointer costs an EFAULT, never a crash. ci/headers/runtime-layout.py
 * turns the dumps of a known job mix into member offsets.
 *
 * Build (plugin_version must equal the running Slurm's SLURM_VERSION_NUMBER):
 *   gcc -shared -fPIC -O1 -DJK_VERSION_NUMBER=0x1a0505 -o jobcomp_jkprobe.so runtime-probe.c
 * slurm.conf: JobCompType=jobcomp/jkprobe. It exports the operations of the
 * 23.02 - 24.11 API (log_record) and of 25.05+ (record_job_end/_start);
 * slurmctld looks up only those of its own series.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef JK_VERSION_NUMBER
#error "define JK_VERSION_NUMBER (SLURM_VERSION_NUMBER of the target release)"
#endif

const char plugin_name[] = "jobcomp layout probe (jobcomp/kafka CI)";
const char plugin_type[] = "jobcomp/jkprobe";
const uint32_t plugin_version = JK_VERSION_NUMBER;

#define RECORD_MAX 4096
#define POINTEE_MAX 1024
#define STR_MAX 256

static int counter;

/* Reads len bytes at addr of our own address space; bytes read (0 on a fault). */
static size_t peek(uintptr_t addr, void *buf, size_t len)
{
	struct iovec local = { buf, len }, remote = { (void *) addr, len };
	ssize_t n;

	if (addr < 4096)
		return 0;
	n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	return n < 0 ? 0 : (size_t) n;
}

/* The xmalloc header of a block: 1 and (magic, size) when readable. */
static int xheader(uintptr_t addr, uint64_t out[2])
{
	if (addr < 4096 + 16 || (addr & 7))
		return 0;
	return peek(addr - 16, out, 16) == 16;
}

static void hex(FILE *f, const unsigned char *p, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", p[i]);
	fputc('"', f);
}

/* Prints a JSON string of the NUL-terminated printable text at addr, or returns 0. */
static int string_at(FILE *f, uintptr_t addr)
{
	char buf[STR_MAX];
	size_t n = 0, i;

	if (addr < 4096)
		return 0;
	/* Byte-wise up to the first NUL (a short string may end near a page end). */
	for (n = 0; n < sizeof(buf); n++) {
		if (peek(addr + n, buf + n, 1) != 1)
			return 0;
		if (!buf[n])
			break;
	}
	if (n == 0 || n == sizeof(buf))
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char) buf[i] < 0x20 || (unsigned char) buf[i] >= 0x7f)
			return 0;
	fputc('"', f);
	for (i = 0; i < n; i++) {
		if (buf[i] == '"' || buf[i] == '\\')
			fputc('\\', f);
		fputc(buf[i], f);
	}
	fputc('"', f);
	return 1;
}

/*
 * One pointee: {"xmalloc":[magic,size],"str":S|null,"hex":H,"strs":{off:S},
 * "kids":{off:node}}. "strs" lists the words of the block that point to
 * strings; "kids" (depth < 2 only) the words that point to other readable
 * memory. Blocks are read up to their xmalloc size (else a default length).
 */
static void node(FILE *f, uintptr_t addr, int depth)
{
	unsigned char *buf;
	uint64_t xh[2] = { 0, 0 };
	size_t cap = depth ? (depth == 1 ? POINTEE_MAX : 256) : RECORD_MAX;
	size_t want = depth ? 64 : 1536, len;
	int first;

	if (xheader(addr, xh) && xh[0] == 0x42)
		want = xh[1] < cap ? xh[1] : cap;
	buf = malloc(want ? want : 1);
	if (!buf)
		return;
	len = peek(addr, buf, want);
	fprintf(f, "{\"xmalloc\":[%llu,%llu],\"str\":",
		(unsigned long long) xh[0], (unsigned long long) xh[1]);
	if (!depth || !string_at(f, addr))
		fputs("null", f);
	fputs(",\"hex\":", f);
	hex(f, buf, len);
	fputs(",\"strs\":{", f);
	first = 1;
	for (size_t off = 0; off + 8 <= len; off += 8) {
		uint64_t w;
		long pos = ftell(f);
		memcpy(&w, buf + off, 8);
		fprintf(f, "%s\"%zu\":", first ? "" : ",", off);
		if (string_at(f, w))
			first = 0;
		else
			fseek(f, pos, SEEK_SET);
	}
	fputs("},\"kids\":{", f);
	first = 1;
	for (size_t off = 0; depth < 2 && off + 8 <= len; off += 8) {
		uint64_t w;
		unsigned char probe;
		memcpy(&w, buf + off, 8);
		if (w < 4096 || (w & 7) || peek(w, &probe, 1) != 1 || w == addr)
			continue;
		fprintf(f, "%s\"%zu\":", first ? "" : ",", off);
		first = 0;
		node(f, w, depth + 1);
	}
	fputs("}}", f);
	free(buf);
}

static void dump(void *job, const char *event)
{
	const char *dir = getenv("JK_PROBE_DIR");
	char path[512], tmp[520];
	FILE *f;
	int n = __atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST);

	snprintf(path, sizeof(path), "%s/%04d-%s.json", dir ? dir : "/tmp", n, event);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (!(f = fopen(tmp, "w")))
		return;
	fprintf(f, "{\"event\":\"%s\",\"record\":", event);
	node(f, (uintptr_t) job, 0);
	fputs("}\n", f);
	/* A rewound, unused key at the very end must not leave bytes behind. */
	fflush(f);
	if (ftruncate(fileno(f), ftell(f)) != 0)
		perror("ftruncate");
	fclose(f);
	rename(tmp, path);
}

int init(void)
{
	return 0;
}

void fini(void)
{
}

int jobcomp_p_set_location(void)
{
	return 0;
}

int jobcomp_p_record_job_end(void *job, uint32_t event)
{
	(void) event;
	if (job)
		dump(job, "end");
	return 0;
}

/* 23.02 - 24.11: one call per finished job. */
int jobcomp_p_log_record(void *job)
{
	if (job)
		dump(job, "end");
	return 0;
}

int jobcomp_p_record_job_start(void *job, uint32_t event)
{
	(void) event;
	if (job)
		dump(job, "start");
	return 0;
}

void *jobcomp_p_get_jobs(void *cond)
{
	(void) cond;
	return NULL;
}
