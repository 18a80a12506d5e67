/*
 * sv2shm-bench calls: the small-slice stream path, call by call, in one
 * process and one thread — for bench/calls.sh, which runs it under valgrind
 * callgrind and reports instructions and stores per slice of each library
 * call (pool_get_writable_slow, sv2shm_buffer_get_data_owned,
 * sv2shm_producer_publish, sv2shm_consumer_recv, sv2shm_slice_release).
 *
 * A producer (64 slots, capacity 2 * 64 * size, policy FAIL, max_held 64,
 * on_limit REFUSE) and its one consumer live in this process, joined by a
 * SOCK_SEQPACKET socketpair. Slices go in batches of --batch: the producer
 * writes and publishes the batch's slices (get_writable, memset, get_data_owned,
 * publish), then the consumer receives, checks and releases them (recv with
 * timeout 0: every slice is in its ring already). No fork, no second thread,
 * no spinning and no sleeping: the instructions a slice costs are the same
 * from run to run, so callgrind's counts are deterministic.
 *
 * calls_measured_run() is the part counted (bench/calls.sh passes
 * --toggle-collect=calls_measured_run); a warm-up of 2 * 64 slices before it
 * (the pool's and the ring's first touches) is not. The wall-clock time per
 * slice printed here is informational only: producer and consumer take turns
 * on one CPU, which is not how they run in an application (see `ipc` and
 * `paired` for that).
 *
 * Every return value is checked; a failure names the call, the slice and the
 * error, and the run exits 1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "report.h"

#include <sv2shm/ipc.h>
#include <sv2shm/sv2shm.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int bench_calls_main(int argc, char **argv);

#define SLOTS 64u
#define DEFAULT_COUNT 64000u
#define MIN_COUNT 64u
#define MAX_COUNT 1000000000u
#define DEFAULT_SIZE 64u
#define MAX_SIZE 65536u
#define DEFAULT_BATCH 16u
#define MAX_BATCH SLOTS
#define WARMUP_SLICES (2u * SLOTS)

/* Not inlined and (GCC) not cloned into calls_measured_run.constprop.0 or
 * the like: callgrind --toggle-collect names it. */
#if defined(__GNUC__) && !defined(__clang__)
#define CALLS_MEASURED __attribute__((noinline, noclone))
#else
#define CALLS_MEASURED __attribute__((noinline))
#endif

struct calls_cfg {
	unsigned long long count;
	size_t size;
	unsigned batch;
};

/* The producer, its one consumer and what a slice needs. */
struct calls_run {
	struct sv2shm_producer *p;
	struct sv2shm_consumer *c;
	struct sv2shm_buffer *buf;
	int id; /* the consumer's id (sv2shm_producer_add_consumer()) */
	size_t size;
	unsigned batch;
};

/* A failed call: one line naming it, the slice and the error (kept out of
 * the measured loop). `what` explains a return value r >= 0. Returns -1. */
static __attribute__((noinline, cold)) int calls_fail(const char *phase, uint64_t i, const char *call, int r,
							const char *what)
{
	fprintf(stderr, "sv2shm-bench calls: %s slice %llu: %s returned %d (%s)\n", phase, (unsigned long long)i, call,
		r, r < 0 ? sv2shm_strerror(r) : what);
	return -1;
}

/* A received slice that is not what was sent. Returns -1. */
static __attribute__((noinline, cold)) int calls_bad(const char *phase, uint64_t i, const struct sv2shm_slice *t,
						       size_t size, uint8_t byte)
{
	if (t->len != size)
		fprintf(stderr, "sv2shm-bench calls: %s slice %llu: sv2shm_consumer_recv() gave %zu bytes, want %zu\n",
			phase, (unsigned long long)i, t->len, size);
	else
		fprintf(stderr, "sv2shm-bench calls: %s slice %llu: received bytes first %u, last %u, want %u\n", phase,
			(unsigned long long)i, t->data[0], t->data[size - 1], byte);
	return -1;
}

/*
 * Slices 0 .. count - 1 of `phase` (the numbers in error messages), in
 * batches of x->batch:
 * write and publish a batch, then receive, check and release it. Returns 0,
 * or -1 after printing what failed (the slices of a failed batch are left as
 * they are: the run ends).
 */
static inline __attribute__((always_inline)) int calls_loop(const struct calls_run *x, const char *phase,
							    uint64_t count)
{
	struct sv2shm_buffer *buf = x->buf;
	const size_t size = x->size;
	uint64_t i = 0;
	while (i < count) {
		const uint64_t n = count - i < x->batch ? count - i : x->batch;
		for (uint64_t k = 0; k < n; k++) {
			const uint64_t j = i + k;
			void *w = sv2shm_buffer_get_writable(buf, size);
			if (!w)
				return calls_fail(phase, j, "sv2shm_buffer_get_writable() gave NULL; its last error",
						  sv2shm_buffer_last_error(buf), "none recorded");
			memset(w, bench_msg_byte(j), size);
			struct sv2shm_slice s;
			int r = sv2shm_buffer_get_data_owned(buf, &s);
			if (r < 0)
				return calls_fail(phase, j, "sv2shm_buffer_get_data_owned()", r, "");
			r = sv2shm_producer_publish(x->p, &s, &x->id, 1, 0);
			if (r != 0) {
				/* Not published: give the slice back (a positive r: published, consumed). */
				if (r < 0 && sv2shm_slice_kind(&s) != SV2SHM_SLICE_NONE)
					sv2shm_slice_release(&s);
				return calls_fail(phase, j, "sv2shm_producer_publish()", r,
						  "consumers that did not get the slice");
			}
		}
		for (uint64_t k = 0; k < n; k++) {
			const uint64_t j = i + k;
			const uint8_t byte = bench_msg_byte(j);
			struct sv2shm_slice t;
			int r = sv2shm_consumer_recv(x->c, &t, 0);
			if (r != 1)
				return calls_fail(phase, j, "sv2shm_consumer_recv(timeout 0)", r,
						  "no slice, though it was published");
			if (t.len != size || t.data[0] != byte || t.data[size - 1] != byte) {
				calls_bad(phase, j, &t, size, byte);
				sv2shm_slice_release(&t);
				return -1;
			}
			r = sv2shm_slice_release(&t);
			if (r < 0)
				return calls_fail(phase, j, "sv2shm_slice_release()", r, "");
		}
		i += n;
	}
	return 0;
}

/* The warm-up: not counted by bench/calls.sh. */
static CALLS_MEASURED int calls_warm_up(const struct calls_run *x, uint64_t count)
{
	return calls_loop(x, "warm-up", count);
}

/* The measured slices: bench/calls.sh counts inside this function only
 * (callgrind --toggle-collect=calls_measured_run). */
static CALLS_MEASURED int calls_measured_run(const struct calls_run *x, uint64_t count)
{
	return calls_loop(x, "measured", count);
}

/* ------------------------------------------------------------------------- */
/* Options and main                                                           */
/* ------------------------------------------------------------------------- */

static void calls_usage(FILE *out)
{
	fprintf(out,
		"usage: sv2shm-bench calls [--json] [--count N] [--size B] [--batch K] [--help]\n\n"
		"The small-slice stream path in ONE process and ONE thread, for bench/calls.sh (valgrind\n"
		"callgrind: instructions and stores per slice of each library call). A producer (%u slots,\n"
		"capacity 2 * %u * B, policy FAIL, max_held %u, on_limit REFUSE) and its one consumer over a\n"
		"socketpair; per batch, K times [get_writable, memset B bytes, get_data_owned, publish], then\n"
		"K times [recv (timeout 0), check length and first and last byte, release]. A warm-up of %u\n"
		"slices, then N measured ones in calls_measured_run() (what calls.sh counts). No fork, no\n"
		"spinning: the counts are deterministic. The wall-clock ns per slice printed is informational:\n"
		"producer and consumer alternate on one thread.\n\n"
		"  --count N   measured slices, %u..%u (default %u)\n"
		"  --size B    slice size in bytes, 1..%u (default %u)\n"
		"  --batch K   slices published before the consumer takes them, 1..%u (default %u)\n"
		"  --json      exactly one JSON object on stdout; the human table goes to stderr\n"
		"Exit status: 0 when the run completed, 1 when it failed, 2 usage.\n",
		SLOTS, SLOTS, SLOTS, WARMUP_SLICES, MIN_COUNT, MAX_COUNT, DEFAULT_COUNT, MAX_SIZE, DEFAULT_SIZE,
		MAX_BATCH, DEFAULT_BATCH);
}

static int calls_opt(int argc, char **argv, int i, void *ctx)
{
	struct calls_cfg *c = ctx;
	const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
	unsigned long long x;
	if (strcmp(a, "--count") == 0) {
		if (bench_parse_uint("calls", a, v, MIN_COUNT, MAX_COUNT, &x) < 0)
			return -1;
		c->count = x;
		return 2;
	}
	if (strcmp(a, "--size") == 0) {
		if (bench_parse_uint("calls", a, v, 1, MAX_SIZE, &x) < 0)
			return -1;
		c->size = (size_t)x;
		return 2;
	}
	if (strcmp(a, "--batch") == 0) {
		if (bench_parse_uint("calls", a, v, 1, MAX_BATCH, &x) < 0)
			return -1;
		c->batch = (unsigned)x;
		return 2;
	}
	return 0;
}

/* Free the consumer, then the producer. Returns 0, or -1 after printing
 * what failed (quiet: after a failed run, whose slices may still be live,
 * print nothing). */
static int calls_teardown(struct calls_run *x, bool quiet)
{
	int rc = 0;
	if (x->c) {
		int r = sv2shm_consumer_free(x->c);
		if (r < 0 && !quiet) {
			fprintf(stderr, "sv2shm-bench calls: sv2shm_consumer_free() returned %d (%s)\n", r,
				sv2shm_strerror(r));
			rc = -1;
		}
		x->c = NULL;
	}
	if (x->p) {
		int r = sv2shm_producer_destroy(x->p);
		if (r < 0 && !quiet) {
			fprintf(stderr, "sv2shm-bench calls: sv2shm_producer_destroy() returned %d (%s)\n", r,
				sv2shm_strerror(r));
			rc = -1;
		}
		x->p = NULL;
	}
	return rc;
}

/* Producer, consumer, warm-up, the measured run. Returns 0 and the elapsed
 * time of the measured run in *ns, or -1 after printing what failed. */
static int calls_run_all(struct calls_run *x, const struct calls_cfg *cfg, uint64_t *ns)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		fprintf(stderr, "sv2shm-bench calls: socketpair(AF_UNIX, SOCK_SEQPACKET): %s\n", strerror(errno));
		return -1;
	}
	struct sv2shm_producer_options po;
	memset(&po, 0, sizeof(po));
	po.pool.slots = SLOTS;
	po.pool.capacity = 2u * (uint64_t)SLOTS * cfg->size;
	po.pool.policy = SV2SHM_POOL_FAIL;
	po.max_held = SLOTS;
	po.on_limit = SV2SHM_LIMIT_REFUSE;
	int r = sv2shm_producer_new(&po, &x->p);
	if (r < 0) {
		fprintf(stderr, "sv2shm-bench calls: sv2shm_producer_new(%u slots, capacity %llu) returned %d (%s)\n",
			SLOTS, (unsigned long long)po.pool.capacity, r, sv2shm_strerror(r));
		close(sv[0]);
		close(sv[1]);
		x->p = NULL;
		return -1;
	}
	r = sv2shm_producer_add_consumer(x->p, sv[0]); /* owns sv[0] now, even on failure */
	if (r < 0) {
		fprintf(stderr, "sv2shm-bench calls: sv2shm_producer_add_consumer() returned %d (%s)\n", r,
			sv2shm_strerror(r));
		close(sv[1]);
		return -1;
	}
	x->id = r;
	struct sv2shm_consumer_options co;
	memset(&co, 0, sizeof(co));
	r = sv2shm_consumer_new(sv[1], &co, &x->c); /* owns sv[1] now, even on failure */
	if (r < 0) {
		fprintf(stderr, "sv2shm-bench calls: sv2shm_consumer_new() returned %d (%s)\n", r, sv2shm_strerror(r));
		x->c = NULL;
		return -1;
	}
	x->buf = sv2shm_producer_buffer(x->p);
	if (!x->buf) {
		fprintf(stderr, "sv2shm-bench calls: sv2shm_producer_buffer() returned NULL\n");
		return -1;
	}
	x->size = cfg->size;
	x->batch = cfg->batch;

	if (calls_warm_up(x, WARMUP_SLICES) < 0)
		return -1;
	const uint64_t t0 = bench_now_ns();
	r = calls_measured_run(x, cfg->count);
	const uint64_t t1 = bench_now_ns();
	if (r < 0)
		return -1;
	*ns = t1 - t0;
	return 0;
}

int bench_calls_main(int argc, char **argv)
{
	struct bench_opts opts;
	struct calls_cfg cfg = {DEFAULT_COUNT, DEFAULT_SIZE, DEFAULT_BATCH};
	if (bench_parse_opts_ex(argc, argv, &opts, calls_opt, &cfg) < 0)
		return 2;
	if (opts.help) {
		calls_usage(stdout);
		return 0;
	}

	struct calls_run x;
	memset(&x, 0, sizeof(x));
	uint64_t ns = 0;
	int rc = calls_run_all(&x, &cfg, &ns);
	if (calls_teardown(&x, rc < 0) < 0)
		rc = -1;
	if (rc < 0) {
		fprintf(stderr, "sv2shm-bench calls: FAILED\n");
		return 1;
	}

	const double per_slice = (double)ns / (double)cfg.count;
	struct bench_report rep;
	bench_report_init(&rep, "calls");
	struct bench_row *row = bench_report_add_row(&rep, "calls", "sv2shm", cfg.size, per_slice, NAN, NAN);
	if (!row || bench_row_field(row, "ns_per_slice", per_slice, false) < 0 ||
	    bench_row_field(row, "batch", (double)cfg.batch, true) < 0) {
		fprintf(stderr, "sv2shm-bench calls: FAILED: out of memory for the report\n");
		bench_report_free(&rep);
		return 1;
	}
	row->slices = (int64_t)cfg.count;
	bench_report_note(&rep, "one thread: producer and consumer alternate (per batch of %u: write and publish "
				"%u slices, then receive, check and release them), so ns_per_slice is wall-clock time "
				"of both sides together, informational only",
			  cfg.batch, cfg.batch);
	bench_report_note(&rep, "%llu measured slices of %zu B after %u warm-up slices; %u slots, capacity %llu B, "
				"policy FAIL, max_held %u, on_limit REFUSE",
			  cfg.count, cfg.size, WARMUP_SLICES, SLOTS, 2ull * SLOTS * cfg.size, SLOTS);
	bench_report_note(&rep, "instructions and stores per slice of each call: bench/calls.sh --count %llu --size "
				"%zu --batch %u (valgrind callgrind on calls_measured_run)",
			  cfg.count, cfg.size, cfg.batch);
	int pr = bench_report_print(&rep, opts.json);
	bench_report_free(&rep);
	return pr < 0 ? 1 : 0;
}
