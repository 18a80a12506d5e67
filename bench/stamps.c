/*
 * sv2shm-bench stamps: where a spinning 64 B round trip's time goes, for
 * sv2shm and for memfd-spin in the same run.
 *
 * Needs a build with -Dstamps=true (x86-64): the library then reads the time
 * stamp counter (TSC) at four instants (libsv2shm/src/stamps.h):
 *   a  the producer latches the consumer's release record (in its wait's
 *      spin, or in the tidy before it when the release came first)
 *   b  the producer stores the next ring entry's sequence word
 *   c  the consumer's spin sees that entry filled
 *   d  the consumer stores its release record
 * For memfd-spin the bench reads the TSC at the same four instants of its
 * own loop (tail seen, head stored, head seen, tail stored). Message i's
 * round trip splits into
 *   producer path    b[i] - a[i]     (release of i-1 seen -> entry i out)
 *   to the consumer  c[i] - b[i]     (the entry's cache line moves, the spin sees it)
 *   consumer path    d[i] - c[i]     (entry seen -> bytes read -> release stored)
 *   to the producer  a[i+1] - d[i]   (the release's line moves, the wait sees it)
 * and the four means add up to the mean round trip a[i+1] - a[i]. The two
 * processes' stamps are compared with each other, so the TSC must run in
 * step on both CPUs (the kernel's constant_tsc and nonstop_tsc flags; the
 * bench says when they are missing). A stamp costs ~10 ns on a VM, and the
 * TSC may tick in steps (26 cycles here): single values are coarse, means
 * over many messages are not.
 *
 * The two contenders alternate in blocks in one producer/consumer process
 * pair (as `paired`): per block, --block sv2shm round trips, then --block
 * memfd-spin ones. A message whose "a" the producer did not see (the
 * release came before its wait began) or whose "c" the consumer did not see
 * (the entry was there at its first look) is left out of the split, and
 * counted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "report.h"

#include <sv2shm/ipc.h>
#include <sv2shm/sv2shm.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if SV2SHM_STAMPS
#include <x86intrin.h>

#include "stamps.h"
#endif

int bench_stamps_main(int argc, char **argv);

#define SIZE 64u
#define WAIT_TIMEOUT_MS 5000
#define DEFAULT_BLOCK 5000u
#define DEFAULT_BLOCKS 20u
#define QUICK_BLOCKS 4u
#define MAX_BLOCK 1000000u
#define MAX_BLOCKS 10000u
#define MAX_MESSAGES 4000000ull /* per contender: the stamp arrays (64 B per message pair) and the split's (40 B) stay under 500 MB */
#define HARD_ALARM_S 600u

struct stamps_cfg {
	unsigned block, blocks; /* 0: default */
};

static void stamps_usage(FILE *out)
{
	fprintf(out,
		"usage: sv2shm-bench stamps [--json] [--quick] [--block N] [--blocks N] [--help]\n"
		"\n"
		"Where a spinning 64 B round trip's time goes, sv2shm beside memfd-spin in the same run:\n"
		"the producer's path (release seen -> next entry out), the hand-off to the consumer, the\n"
		"consumer's path (entry seen -> bytes read -> release stored) and the hand-off back, from\n"
		"time stamp counter reads in the library. Needs a build with -Dstamps=true (x86-64):\n"
		"  meson setup build-stamps -Dbuildtype=release -Dstamps=true -Dtests=false -Dexamples=false\n"
		"\n"
		"  --block N   round trips per contender per block, 1..%u (default %u)\n"
		"  --blocks N  blocks per contender, 1..%u (default %u; --quick: %u)\n"
		"  --json      exactly one JSON object on stdout; the human table goes to stderr\n"
		"Exit status: 0 when the run completed, 1 when it failed or the build has no stamps, 2 usage.\n",
		MAX_BLOCK, DEFAULT_BLOCK, MAX_BLOCKS, DEFAULT_BLOCKS, QUICK_BLOCKS);
}

static int stamps_opt(int argc, char **argv, int i, void *ctx)
{
	struct stamps_cfg *c = ctx;
	unsigned long long v;
	if (strcmp(argv[i], "--block") == 0 || strcmp(argv[i], "--blocks") == 0) {
		bool blk = strcmp(argv[i], "--block") == 0;
		if (bench_parse_uint("stamps", argv[i], i + 1 < argc ? argv[i + 1] : NULL, 1,
				     blk ? MAX_BLOCK : MAX_BLOCKS, &v) < 0)
			return -1;
		*(blk ? &c->block : &c->blocks) = (unsigned)v;
		return 2;
	}
	return 0;
}

#if !SV2SHM_STAMPS

static int stamps_run(const struct bench_opts *opts, const struct stamps_cfg *cfg)
{
	(void)opts;
	(void)cfg;
	fprintf(stderr, "sv2shm-bench stamps: this build has no stamps; configure one with -Dstamps=true "
			"(see --help)\n");
	return 1;
}

#else /* SV2SHM_STAMPS */

enum { C_SV2SHM, C_MEMFD, NCONT };
static const char *const cont_names[NCONT] = {"sv2shm", "memfd-spin"};
enum { PART_P, PART_TO_C, PART_C, PART_TO_P, PART_RT, NPART };
static const char *const part_names[NPART] = {"producer_path", "to_consumer", "consumer_path", "to_producer",
					      "round_trip"};
static const char *const part_text[NPART] = {"producer path", "to the consumer", "consumer path",
					     "to the producer", "round trip"};

/* The memfd reference: head and tail on lines of their own, the data after. */
struct ref {
	alignas(64) _Atomic uint32_t head;
	alignas(64) _Atomic uint32_t tail;
	alignas(64) _Atomic uint32_t failed; /* the consumer gave up */
	alignas(64) _Atomic uint32_t sv_done; /* sv2shm blocks the consumer finished */
	alignas(64) uint8_t data[SIZE];
};

struct run {
	unsigned block, blocks;
	uint64_t n;       /* messages per contender */
	struct ref *ref;  /* shared */
	uint64_t *cstamp; /* shared: per contender, per message: c, d */
	uint64_t elapsed_ns[2]; /* per contender: its blocks' time, producer's view */
	char *err;        /* shared: the consumer's error */
};

#define ERR_LEN 512

static uint64_t *cst(const struct run *x, int who, uint64_t i)
{
	return x->cstamp + ((uint64_t)who * x->n + i) * 2u;
}

/* Spin until *w != old; returns the new value, or old after WAIT_TIMEOUT_MS
 * or when *stop is set (the caller reports it). */
static uint32_t spin_change(_Atomic uint32_t *w, uint32_t old, _Atomic uint32_t *stop)
{
	uint32_t v = old;
	bench_spin_change(w, old, &v, stop, (uint64_t)WAIT_TIMEOUT_MS * 1000000u);
	return v;
}

static void child_fail(struct run *x, const char *fmt, ...) BENCH_PRINTF(2, 3);
static void child_fail(struct run *x, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->err, ERR_LEN, fmt, ap);
	va_end(ap);
	atomic_store_explicit(&x->ref->failed, 1u, memory_order_release);
	_exit(1);
}

/* The consumer: never returns. */
static void child_main(struct run *x, int sock, pid_t parent, int cpu)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(1);
	alarm(HARD_ALARM_S + 10u);
	if (cpu >= 0 && bench_pin_thread(cpu, NULL, 0) < 0)
		child_fail(x, "consumer: pinning to CPU %d failed", cpu);
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	struct sv2shm_consumer *c = NULL;
	int r = sv2shm_consumer_new(sock, &co, &c);
	if (r < 0)
		child_fail(x, "consumer: sv2shm_consumer_new() returned %d (%s)", r, sv2shm_strerror(r));
	uint64_t si = 0, mi = 0, bad = 0;
	uint32_t head = 0, tail = 0;
	for (unsigned blk = 0; blk < x->blocks; blk++) {
		for (unsigned j = 0; j < x->block; j++, si++) {
			struct sv2shm_slice s;
			sv2shm_stamps_[STAMP_C_SEES_ENTRY] = 0;
			r = sv2shm_consumer_recv(c, &s, WAIT_TIMEOUT_MS);
			if (r != 1)
				child_fail(x, "consumer: sv2shm message %llu: sv2shm_consumer_recv() returned %d (%s)",
					   (unsigned long long)si, r, r == 0 ? "timeout" : sv2shm_strerror(r));
			uint64_t ts = sv2shm_stamps_[STAMP_C_SEES_ENTRY];
			bad += s.len != SIZE || bench_sum_bytes(s.data, s.len) != SIZE * (uint64_t)bench_msg_byte(si);
			r = sv2shm_slice_release(&s);
			if (r < 0)
				child_fail(x, "consumer: sv2shm message %llu: sv2shm_slice_release() returned %d (%s)",
					   (unsigned long long)si, r, sv2shm_strerror(r));
			cst(x, C_SV2SHM, si)[0] = ts;
			cst(x, C_SV2SHM, si)[1] = sv2shm_stamps_[STAMP_C_RELEASED];
		}
		atomic_store_explicit(&x->ref->sv_done, blk + 1u, memory_order_release);
		for (unsigned j = 0; j < x->block; j++, mi++) {
			uint64_t tc = 0;
			if (tail == head) {
				head = atomic_load_explicit(&x->ref->head, memory_order_acquire);
				if (tail == head) {
					head = spin_change(&x->ref->head, head, NULL);
					if (tail == head)
						child_fail(x, "consumer: memfd-spin message %llu: no head move in %d ms",
							   (unsigned long long)mi, WAIT_TIMEOUT_MS);
					tc = __rdtsc();
				}
			}
			bad += bench_sum_bytes(x->ref->data, SIZE) != SIZE * (uint64_t)bench_msg_byte(mi);
			tail++;
			atomic_store_explicit(&x->ref->tail, tail, memory_order_release);
			cst(x, C_MEMFD, mi)[0] = tc;
			cst(x, C_MEMFD, mi)[1] = __rdtsc();
		}
	}
	r = sv2shm_consumer_free(c);
	if (r < 0)
		child_fail(x, "consumer: sv2shm_consumer_free() returned %d (%s)", r, sv2shm_strerror(r));
	if (bad)
		child_fail(x, "consumer: %llu messages had wrong bytes", (unsigned long long)bad);
	_exit(0);
}

/* The producer's side of the run: fills a[] and b[] per contender. Returns 0
 * or -1 after printing why. */
static int produce(struct run *x, int sock, uint64_t *pa[NCONT], uint64_t *pb[NCONT])
{
	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.slots = 1; /* the next get_writable() waits for the release */
	o.pool.capacity = 4096;
	o.pool.policy = SV2SHM_POOL_WAIT;
	o.pool.wait_timeout_ms = WAIT_TIMEOUT_MS;
	o.max_held = 1;
	o.on_limit = SV2SHM_LIMIT_REFUSE;
	struct sv2shm_producer *p = NULL;
	int r = sv2shm_producer_new(&o, &p);
	if (r < 0) {
		close(sock);
		fprintf(stderr, "sv2shm-bench stamps: sv2shm_producer_new() returned %d (%s)\n", r, sv2shm_strerror(r));
		return -1;
	}
	int id = sv2shm_producer_add_consumer(p, sock);
	int rc = 0;
	if (id < 0) {
		fprintf(stderr, "sv2shm-bench stamps: sv2shm_producer_add_consumer() returned %d (%s)\n", id,
			sv2shm_strerror(id));
		rc = -1;
	}
	struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
	uint64_t si = 0, mi = 0;
	uint32_t head = 0, tail = 0;
	for (unsigned blk = 0; blk < x->blocks && rc == 0; blk++) {
		uint64_t t0 = bench_now_ns();
		for (unsigned j = 0; j < x->block && rc == 0; j++, si++) {
			sv2shm_stamps_[STAMP_P_SEES_RELEASE] = 0;
			uint8_t *w = sv2shm_buffer_get_writable(b, SIZE);
			uint64_t ta = sv2shm_stamps_[STAMP_P_SEES_RELEASE];
			struct sv2shm_slice s;
			if (w) {
				memset(w, bench_msg_byte(si), SIZE);
				r = sv2shm_buffer_get_data_owned(b, &s);
			} else {
				r = sv2shm_buffer_last_error(b);
			}
			if (r == 0) {
				r = sv2shm_producer_publish(p, &s, &id, 1, 0);
				if (r != 0)
					sv2shm_slice_release(&s); /* -EALREADY when publish consumed it */
			}
			if (r != 0) {
				fprintf(stderr, "sv2shm-bench stamps: sv2shm message %llu: %d (%s)%s\n",
					(unsigned long long)si, r, r > 0 ? "not delivered" : sv2shm_strerror(r),
					atomic_load_explicit(&x->ref->failed, memory_order_acquire) ? "; the consumer failed"
												     : "");
				rc = -1;
			}
			pa[C_SV2SHM][si] = ta;
			pb[C_SV2SHM][si] = sv2shm_stamps_[STAMP_P_ENTRY_OUT];
		}
		/* The sv2shm block ends when the consumer released its last slice. */
		if (rc == 0 && atomic_load_explicit(&x->ref->sv_done, memory_order_acquire) != blk + 1u &&
		    spin_change(&x->ref->sv_done, blk, &x->ref->failed) != blk + 1u) {
			fprintf(stderr, "sv2shm-bench stamps: the consumer did not finish sv2shm block %u\n", blk);
			rc = -1;
		}
		uint64_t t1 = bench_now_ns();
		x->elapsed_ns[C_SV2SHM] += t1 - t0;
		for (unsigned j = 0; j < x->block && rc == 0; j++, mi++) {
			uint64_t ta = 0;
			if (head != tail) {
				tail = atomic_load_explicit(&x->ref->tail, memory_order_acquire);
				if (head != tail) {
					tail = spin_change(&x->ref->tail, tail, &x->ref->failed);
					if (head != tail) {
						fprintf(stderr, "sv2shm-bench stamps: memfd-spin message %llu: the consumer "
								"did not take the last one\n",
							(unsigned long long)mi);
						rc = -1;
						break;
					}
					ta = __rdtsc();
				}
			}
			memset(x->ref->data, bench_msg_byte(mi), SIZE);
			head++;
			atomic_store_explicit(&x->ref->head, head, memory_order_release);
			pa[C_MEMFD][mi] = ta;
			pb[C_MEMFD][mi] = __rdtsc();
		}
		/* The block ends when the consumer took the last memfd message:
		 * the next sv2shm block's first wait is not inside it. */
		if (rc == 0 && atomic_load_explicit(&x->ref->tail, memory_order_acquire) != head &&
		    spin_change(&x->ref->tail, tail, &x->ref->failed) != head) {
			fprintf(stderr, "sv2shm-bench stamps: the consumer did not finish block %u\n", blk);
			rc = -1;
		}
		tail = head;
		x->elapsed_ns[C_MEMFD] += bench_now_ns() - t1;
	}
	r = sv2shm_producer_destroy(p);
	if (r < 0 && rc == 0) {
		fprintf(stderr, "sv2shm-bench stamps: sv2shm_producer_destroy() returned %d (%s)\n", r,
			sv2shm_strerror(r));
		rc = -1;
	}
	return rc;
}

/* TSC ticks per ns, against CLOCK_MONOTONIC over 100 ms. */
static double tsc_per_ns(void)
{
	uint64_t t0 = bench_now_ns(), c0 = __rdtsc();
	struct timespec ts = {0, 100000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	uint64_t t1 = bench_now_ns(), c1 = __rdtsc();
	return t1 > t0 ? (double)(c1 - c0) / (double)(t1 - t0) : 0.0;
}

static bool cpu_flag(const char *flag)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return false;
	char line[4096];
	bool found = false;
	size_t n = strlen(flag);
	while (!found && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		for (char *q = strstr(line, flag); q && !found; q = strstr(q + 1, flag))
			found = (q[-1] == ' ' || q[-1] == '\t') && (q[n] == ' ' || q[n] == '\n' || q[n] == '\0');
		break;
	}
	fclose(f);
	return found;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* One contender's split: means and medians (ns) into the report. Returns 0,
 * or -1 when out of memory. */
static int add_split(struct bench_report *rep, const struct run *x, int who, const uint64_t *pa, const uint64_t *pb,
		     double ticks)
{
	int64_t *v[NPART];
	for (int k = 0; k < NPART; k++)
		v[k] = malloc(x->n * sizeof(int64_t));
	int rc = 0;
	for (int k = 0; k < NPART; k++)
		if (!v[k])
			rc = -1;
	uint64_t m = 0, left_out = 0;
	for (uint64_t i = 0; rc == 0 && i < x->n; i++) {
		/* Message i with its successor in the same block, both seen. */
		if (i % x->block == 0 || (i + 1) % x->block == 0) /* the first's a[] is the block's start */
			continue;
		const uint64_t *c = cst(x, who, i);
		if (!pa[i] || !pa[i + 1] || !c[0] || !c[1] || !pb[i]) {
			left_out++;
			continue;
		}
		v[PART_P][m] = (int64_t)(pb[i] - pa[i]);
		v[PART_TO_C][m] = (int64_t)(c[0] - pb[i]);
		v[PART_C][m] = (int64_t)(c[1] - c[0]);
		v[PART_TO_P][m] = (int64_t)(pa[i + 1] - c[1]);
		v[PART_RT][m] = (int64_t)(pa[i + 1] - pa[i]);
		m++;
	}
	struct bench_row *row = NULL;
	if (rc == 0 && m > 0) {
		double mean[NPART], med[NPART];
		for (int k = 0; k < NPART; k++) {
			double s = 0;
			for (uint64_t j = 0; j < m; j++)
				s += (double)v[k][j];
			mean[k] = s / (double)m / ticks;
			qsort(v[k], m, sizeof(int64_t), cmp_i64);
			med[k] = (double)v[k][m / 2] / ticks;
		}
		row = bench_report_add_row(rep, "stamps", cont_names[who], SIZE, med[PART_RT], NAN,
					   mean[PART_RT] > 0 ? 1e9 / mean[PART_RT] : NAN);
		if (!row)
			rc = -1;
		for (int k = 0; rc == 0 && k < NPART; k++) {
			char name[48];
			snprintf(name, sizeof(name), "%s_mean_ns", part_names[k]);
			if (bench_row_field(row, name, mean[k], false) < 0)
				rc = -1;
			snprintf(name, sizeof(name), "%s_median_ns", part_names[k]);
			if (rc == 0 && bench_row_field(row, name, med[k], false) < 0)
				rc = -1;
		}
		double elapsed = (double)x->elapsed_ns[who] / (double)x->n;
		if (rc == 0 && (bench_row_field(row, "block_mean_ns", elapsed, false) < 0 ||
				bench_row_field(row, "messages", (double)m, true) < 0 ||
				bench_row_field(row, "left_out", (double)left_out, true) < 0))
			rc = -1;
		if (rc == 0) {
			bench_report_text(rep, "%-10s  mean (median) ns over %llu round trips, %llu left out; blocks' time "
					       "per round trip %.1f ns:",
					  cont_names[who], (unsigned long long)m, (unsigned long long)left_out, elapsed);
			for (int k = 0; k < NPART; k++)
				bench_report_text(rep, "  %-16s %7.1f (%6.1f)", part_text[k], mean[k], med[k]);
		}
	} else if (rc == 0) {
		bench_report_text(rep, "%s: no round trip had all four stamps (%llu left out)", cont_names[who],
				  (unsigned long long)left_out);
	}
	for (int k = 0; k < NPART; k++)
		free(v[k]);
	return rc;
}

static int stamps_run(const struct bench_opts *opts, const struct stamps_cfg *cfg)
{
	struct run x;
	memset(&x, 0, sizeof(x));
	x.block = cfg->block ? cfg->block : DEFAULT_BLOCK;
	x.blocks = cfg->blocks ? cfg->blocks : opts->quick ? QUICK_BLOCKS : DEFAULT_BLOCKS;
	x.n = (uint64_t)x.block * x.blocks;
	if (x.n > MAX_MESSAGES) {
		fprintf(stderr, "sv2shm-bench stamps: --block x --blocks is %llu round trips per contender; at most %llu\n",
			(unsigned long long)x.n, MAX_MESSAGES);
		return 2;
	}
	if (bench_ignore_sigpipe("stamps") < 0 || bench_hard_alarm("stamps", HARD_ALARM_S) < 0)
		return 1;
	int cpus[2];
	int ncpu = bench_cpus(cpus, 2);
	double ticks = tsc_per_ns();
	if (ticks <= 0) {
		fprintf(stderr, "sv2shm-bench stamps: could not measure the TSC's rate\n");
		return 1;
	}

	size_t shm_len = sizeof(struct ref) + ERR_LEN + (size_t)x.n * NCONT * 2u * sizeof(uint64_t);
	void *shm = mmap(NULL, shm_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t *pa[NCONT] = {NULL, NULL}, *pb[NCONT] = {NULL, NULL};
	for (int k = 0; k < NCONT; k++) {
		pa[k] = calloc(x.n, sizeof(uint64_t));
		pb[k] = calloc(x.n, sizeof(uint64_t));
	}
	int rc = 1, sv[2] = {-1, -1};
	if (shm == MAP_FAILED || !pa[0] || !pa[1] || !pb[0] || !pb[1]) {
		fprintf(stderr, "sv2shm-bench stamps: out of memory for %llu round trips\n", (unsigned long long)x.n);
		goto out;
	}
	x.ref = shm;
	x.err = (char *)shm + sizeof(struct ref);
	x.cstamp = (uint64_t *)(void *)((char *)shm + sizeof(struct ref) + ERR_LEN);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("sv2shm-bench stamps: socketpair");
		goto out;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		perror("sv2shm-bench stamps: fork");
		goto out;
	}
	if (pid == 0) {
		close(sv[0]);
		child_main(&x, sv[1], parent, ncpu >= 2 ? cpus[1] : -1);
	}
	close(sv[1]);
	sv[1] = -1;
	if (ncpu >= 2 && bench_pin_thread(cpus[0], NULL, 0) < 0)
		fprintf(stderr, "sv2shm-bench stamps: pinning the producer to CPU %d failed\n", cpus[0]);
	bench_progress("stamps: %u blocks of %u round trips per contender ", x.blocks, x.block);
	int prc = produce(&x, sv[0], pa, pb); /* owns sv[0] */
	sv[0] = -1;
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	bench_progress("done\n");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "sv2shm-bench stamps: the consumer failed: %s\n",
			x.err[0] ? x.err : "(no message; killed by a signal?)");
		goto out;
	}
	if (prc < 0)
		goto out;

	struct bench_report rep;
	bench_report_init(&rep, "stamps");
	rc = 0;
	for (int k = 0; k < NCONT && rc == 0; k++)
		if (add_split(&rep, &x, k, pa[k], pb[k], ticks) < 0) {
			fprintf(stderr, "sv2shm-bench stamps: out of memory\n");
			rc = 1;
		}
	if (ncpu >= 2)
		bench_report_note(&rep, "producer pinned to CPU %d, consumer to CPU %d", cpus[0], cpus[1]);
	else
		bench_report_note(&rep, "fewer than two CPUs: not pinned, the round trips share one");
	bench_report_note(&rep, "TSC at %.3f ticks/ns; %s", ticks,
			  cpu_flag("constant_tsc") && cpu_flag("nonstop_tsc")
				  ? "constant_tsc and nonstop_tsc: the two CPUs' stamps compare"
				  : "constant_tsc or nonstop_tsc MISSING: the hand-off columns may be wrong");
	bench_report_note(&rep, "each stamp costs a TSC read (~10 ns on a VM) inside the part it ends; the "
				"round trip column is the stamped round trip, a little slower than `paired`'s");
	if (rc == 0 && bench_report_print(&rep, opts->json) < 0)
		rc = 1;
	bench_report_free(&rep);
out:
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	for (int k = 0; k < NCONT; k++) {
		free(pa[k]);
		free(pb[k]);
	}
	if (shm != MAP_FAILED)
		munmap(shm, shm_len);
	return rc;
}

#endif /* SV2SHM_STAMPS */

int bench_stamps_main(int argc, char **argv)
{
	struct bench_opts opts;
	struct stamps_cfg cfg = {0, 0};
	if (bench_parse_opts_ex(argc, argv, &opts, stamps_opt, &cfg) < 0)
		return 2;
	if (opts.help) {
		stamps_usage(stdout);
		return 0;
	}
	return stamps_run(&opts, &cfg);
}
