/* What a thread wake-up costs on this machine: the floor under the plugin's
 * CPU per record (its delivery thread, and librdkafka's threads, wake at least
 * once per record at a trickle of jobs) and the reason the hot path never
 * wakes the delivery thread itself.
 *
 *   sleeper: a thread sleeps N ms in pthread_cond_timedwait, again and again;
 *            its CPU time (CLOCK_THREAD_CPUTIME_ID) per wake-up.
 *   waker:   after M ms of idle time, one FUTEX_WAKE of a waiting thread; the
 *            waker's wall time for that call (what log_record would pay).
 *
 * Prints one JSON object. Build: cc -O2 -pthread wakeup_cost.c
 * Part of jobcomp/kafka (GPL-2.0-or-later). */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_us(clockid_t clock)
{
	struct timespec t;
	clock_gettime(clock, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* CPU time per wake-up of a thread that sleeps `ms` at a time, `n` times. */
static double sleeper_cpu_us(int ms, int n)
{
	pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
	pthread_condattr_t attr;
	pthread_cond_t cond;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&cond, &attr);
	double cpu0 = now_us(CLOCK_THREAD_CPUTIME_ID);
	for (int i = 0; i < n; i++) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += ms * 1000000L;
		while (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&mutex);
		pthread_cond_timedwait(&cond, &mutex, &until);
		pthread_mutex_unlock(&mutex);
	}
	return (now_us(CLOCK_THREAD_CPUTIME_ID) - cpu0) / n;
}

static _Atomic int futex_word;

static void *waiter(void *unused)
{
	(void)unused;
	for (;;) {
		syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		atomic_store(&futex_word, 0);
	}
	return NULL;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(void)
{
	static const int sleeps_ms[] = { 1, 5, 10, 20, 40 };
	printf("{\"sleeper_cpu_us_per_wakeup\": {");
	for (size_t i = 0; i < sizeof sleeps_ms / sizeof *sleeps_ms; i++) {
		int ms = sleeps_ms[i];
		int n = 2000 / ms; /* about 2 s each */
		printf("%s\"%d\": %.1f", i ? ", " : "", ms, sleeper_cpu_us(ms, n));
		fflush(stdout);
	}
	printf("}, ");

	pthread_t thread;
	pthread_create(&thread, NULL, waiter, NULL);
	enum { N = 100 };
	static const int idle_ms[] = { 5, 37 };
	printf("\"futex_wake_wall_us\": {");
	for (size_t i = 0; i < sizeof idle_ms / sizeof *idle_ms; i++) {
		double took[N];
		for (int k = 0; k < N; k++) {
			usleep(idle_ms[i] * 1000);
			double t0 = now_us(CLOCK_MONOTONIC);
			atomic_store(&futex_word, 1);
			syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
			took[k] = now_us(CLOCK_MONOTONIC) - t0;
		}
		qsort(took, N, sizeof *took, by_value);
		printf("%s\"after_%d_ms_idle\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f}", i ? ", " : "", idle_ms[i],
		       took[N / 2], took[N * 9 / 10], took[N * 99 / 100]);
	}
	printf("}}\n");
	return 0;
}
