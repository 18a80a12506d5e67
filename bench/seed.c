/*
 * sv2shm-bench seed: the seed crate's criterion benchmarks, as its README
 * ("Benchmarks Comparisons") and utils/buffer/benches/pool_benchmark.rs
 * define them.
 *
 * One sample is one call of the seed's bench function: create the buffer
 * (capacity 2^16 * 5), run 1000 iterations, wait until every slice has been
 * dropped, destroy the buffer. Each iteration picks a length
 * 2^14 - rand(0..12000), writes a message of that length in get_writable(10)
 * calls, takes it with get_data_owned(), writes a second message of the same
 * length and takes it too.
 *
 *   single-thread   both slices dropped at once (bench_no_thread)
 *   multi-thread    each slice moved to a new thread that sleeps `hold` and
 *                   drops it (keep_slice; the crate's bench code holds 10 us —
 *                   Duration::from_micros(10) — where its README says 1 ms)
 *   multi-thread-2  as multi-thread, then wait for both slices to be dropped
 *                   (the README's definition; the crate's code holds 10 ns and
 *                   sleeps 10 ns instead of waiting)
 *   workers         the slices go over a queue to a fixed set of worker
 *                   threads, each holding every slice `hold` (10 us) after it
 *                   was handed over, then dropping it: the pool without the
 *                   ~60 us a thread spawn costs here
 *
 * Contenders: pool (sv2shm_pool_new, FALLBACK), system-memory (sv2shm sysbuf),
 * ppool and max-efficiency (the seed's control structs, controls.h), and
 * shared-pool (the pool of sv2shm_producer_new(), no consumer attached).
 *
 * Samples of all contenders are interleaved (sample k runs every contender,
 * in a rotating order, on the same lengths), so background load hits them
 * alike.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "controls.h"
#include "report.h"
#include "workload.h"

#include <errno.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* Benches and contenders                                                     */
/* ------------------------------------------------------------------------- */

enum seed_bench { B_SINGLE, B_MT, B_MT2, B_WORKERS, NBENCH };
static const char *const bench_names[NBENCH] = {"single-thread", "multi-thread", "multi-thread-2", "workers"};
/* The seed README's labels, padded as it pads them. */
static const char *const bench_labels[NBENCH] = {"single thread with ", "multi-thread with  ",
						 "multi-thread 2 with", "workers with       "};

enum seed_contender { C_POOL, C_SYSMEM, C_PPOOL, C_MAXE, C_SHARED, NCONT };
static const char *const cont_names[NCONT] = {"pool", "system-memory", "ppool", "max-efficiency", "shared-pool"};
static const char *const cont_seed_names[NCONT] = {"BufferPool", "BufferFromSystemMemory", "PPool",
						   "MaxEfficiency", "BufferPool (shared)"};

/* Default samples per (bench, contender); --quick takes a fifth. */
static const unsigned default_samples[NBENCH] = {300, 20, 20, 200};
/* The crate's hold times (pool_benchmark.rs). */
#define HOLD_MT_NS 10000u /* Duration::from_micros(10) */
#define HOLD_MT2_NS 10u   /* Duration::from_nanos(10) */
/* Slices queued to the workers at most, in all: the pool's guarantee for a
 * FIFO holder, (L + 2) x 16 KiB <= capacity, holds for L <= 18. */
#define WORKER_QUEUE 16u
/* Holder threads: the stack Rust gives a spawned thread. */
#define HOLDER_STACK ((size_t)2 << 20)

struct seed_cfg {
	unsigned slots;
	unsigned iterations;
	unsigned samples[NBENCH];
	bool bench_on[NBENCH];
	bool cont_on[NCONT];
	bool once;
	uint64_t hold_ns;  /* multi-thread and workers */
	uint64_t hold2_ns; /* multi-thread-2 */
	unsigned workers;
	int cpus[CPU_SETSIZE];
	int ncpus;
};

/* ------------------------------------------------------------------------- */
/* Errors (any thread)                                                        */
/* ------------------------------------------------------------------------- */

static _Atomic unsigned g_errors;
static _Atomic int g_err_taken;
static char g_errmsg[512];

static void record_error(const char *fmt, ...) BENCH_PRINTF(1, 2);
static void record_error(const char *fmt, ...)
{
	atomic_fetch_add(&g_errors, 1u);
	if (atomic_exchange(&g_err_taken, 1))
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_errmsg, sizeof(g_errmsg), fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------------- */
/* Slices of any contender                                                    */
/* ------------------------------------------------------------------------- */

enum { AS_SV2, AS_PPOOL, AS_MAXE };

struct any_slice {
	int type;
	union {
		struct sv2shm_slice sv;
		struct ppool_slice pp;
		struct maxe_slice me;
	} u;
};

/* The seed's Load::load(): what a holder does with a slice before dropping it. */
static size_t any_load(const struct any_slice *s)
{
	switch (s->type) {
	case AS_SV2:
		return *(const volatile size_t *)&s->u.sv.len;
	case AS_PPOOL:
		return *(const volatile size_t *)&s->u.pp.len;
	default:
		return *(const volatile size_t *)&s->u.me.len;
	}
}

static void any_release(struct any_slice *s)
{
	switch (s->type) {
	case AS_SV2: {
		int r = sv2shm_slice_release(&s->u.sv);
		if (r < 0)
			record_error("sv2shm_slice_release() returned %d (%s)", r, sv2shm_strerror(r));
		break;
	}
	case AS_PPOOL:
		ppool_slice_drop(&s->u.pp);
		break;
	default:
		break;
	}
}

static void futex_wait(_Atomic uint32_t *w, uint32_t v)
{
	syscall(SYS_futex, (void *)w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *w)
{
	syscall(SYS_futex, (void *)w, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* ------------------------------------------------------------------------- */
/* Sinks: where a taken slice goes in the threaded benches                    */
/* ------------------------------------------------------------------------- */

enum sink_kind { SINK_SPAWN, SINK_SPAWN_JOIN, SINK_WORKERS };

struct sink;

struct holder {
	struct any_slice s;
	struct sink *k;
};

struct witem {
	struct any_slice s;
	uint64_t deadline;
};

struct worker {
	alignas(64) _Atomic uint64_t head; /* producer */
	alignas(64) _Atomic uint64_t tail; /* worker */
	alignas(64) struct witem *items;
	unsigned ring; /* power of 2 */
	uint64_t hold_ns;
	int cpu;
	const int *all_cpus;
	int nall;
	_Atomic bool *stop;
	pthread_t tid;
	bool started;
};

struct sink {
	int kind;
	uint64_t hold_ns;
	/* spawn */
	struct holder *holders;
	size_t nholders, used;
	pthread_attr_t attr;
	bool attr_ok;
	alignas(64) _Atomic uint32_t live;
	pthread_t pair[2];
	unsigned npair;
	/* workers */
	struct worker *workers;
	unsigned nworkers, next;
	_Atomic bool stop;
	uint64_t full_waits; /* puts that found the worker's queue full */
};

static void *holder_main(void *arg)
{
	struct holder *h = arg;
	struct sink *k = h->k;
	/* std::thread::sleep(d): nanosleep, even for 10 ns. */
	struct timespec ts = {.tv_sec = (time_t)(k->hold_ns / 1000000000u), .tv_nsec = (long)(k->hold_ns % 1000000000u)};
	nanosleep(&ts, NULL);
	(void)any_load(&h->s);
	any_release(&h->s);
	if (k->kind == SINK_SPAWN && atomic_fetch_sub(&k->live, 1u) == 1u)
		futex_wake_all(&k->live);
	return NULL;
}

static int spawn(struct sink *k, struct holder *h, pthread_t *tid)
{
	for (int attempt = 0;; attempt++) {
		int r = pthread_create(tid, &k->attr, holder_main, h);
		if (r == 0)
			return 0;
		if (r != EAGAIN || attempt >= 1000) {
			record_error("pthread_create: %s", strerror(r));
			return -1;
		}
		usleep(100); /* too many threads alive: let some finish */
	}
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	pthread_setname_np(pthread_self(), "sv2shm-worker"); /* tells it apart in perf */
	if (wk->cpu >= 0)
		bench_pin_thread(wk->cpu, wk->all_cpus, wk->nall);
	uint64_t tail = atomic_load_explicit(&wk->tail, memory_order_relaxed);
	unsigned idle = 0;
	for (;;) {
		uint64_t head = atomic_load_explicit(&wk->head, memory_order_acquire);
		if (tail == head) {
			if (atomic_load_explicit(wk->stop, memory_order_acquire))
				break;
			bench_cpu_relax();
			if (++idle % 4096u == 0)
				sched_yield(); /* polite when workers outnumber CPUs */
			continue;
		}
		idle = 0;
		struct witem *it = &wk->items[tail & (wk->ring - 1u)];
		/* Wait for the deadline gently: a few pauses between clock reads,
		 * so a spinning worker takes as little as it can from a producer
		 * that may share the physical core (vCPUs can be hyperthreads). */
		while (bench_now_ns() < it->deadline)
			for (int p = 0; p < 8; p++)
				bench_cpu_relax();
		(void)any_load(&it->s);
		any_release(&it->s);
		tail++;
		atomic_store_explicit(&wk->tail, tail, memory_order_release);
	}
	return NULL;
}

static int sink_init(struct sink *k, int kind, uint64_t hold_ns, size_t max_slices, const struct seed_cfg *cfg)
{
	memset(k, 0, sizeof(*k));
	k->kind = kind;
	k->hold_ns = hold_ns;
	if (kind != SINK_WORKERS) {
		k->holders = calloc(max_slices, sizeof(*k->holders));
		if (!k->holders)
			return -1;
		k->nholders = max_slices;
		if (pthread_attr_init(&k->attr) != 0)
			return -1;
		k->attr_ok = true;
		pthread_attr_setstacksize(&k->attr, HOLDER_STACK);
		if (kind == SINK_SPAWN)
			pthread_attr_setdetachstate(&k->attr, PTHREAD_CREATE_DETACHED);
		return 0;
	}
	unsigned n = cfg->workers ? cfg->workers : 1;
	unsigned ring = 1;
	while (ring * 2 <= WORKER_QUEUE / n)
		ring *= 2;
	if (ring < 2)
		ring = 2;
	k->workers = calloc(n, sizeof(*k->workers));
	if (!k->workers)
		return -1;
	k->nworkers = n;
	for (unsigned j = 0; j < n; j++) {
		struct worker *wk = &k->workers[j];
		wk->items = calloc(ring, sizeof(*wk->items));
		if (!wk->items)
			return -1;
		wk->ring = ring;
		wk->hold_ns = hold_ns;
		wk->cpu = cfg->ncpus > 1 ? cfg->cpus[1 + (int)(j % (unsigned)(cfg->ncpus - 1))] : -1;
		wk->all_cpus = cfg->cpus;
		wk->nall = cfg->ncpus;
		wk->stop = &k->stop;
		if (pthread_create(&wk->tid, NULL, worker_main, wk) != 0)
			return -1;
		wk->started = true;
	}
	return 0;
}

static void sink_fini(struct sink *k)
{
	if (k->workers) {
		atomic_store(&k->stop, true);
		for (unsigned j = 0; j < k->nworkers; j++) {
			if (k->workers[j].started)
				pthread_join(k->workers[j].tid, NULL);
			free(k->workers[j].items);
		}
		free(k->workers);
	}
	if (k->attr_ok)
		pthread_attr_destroy(&k->attr);
	free(k->holders);
	memset(k, 0, sizeof(*k));
}

/* Hand a slice over. On failure the slice is dropped here. */
static int sink_put(struct sink *k, const struct any_slice *s)
{
	if (k->kind == SINK_WORKERS) {
		struct worker *wk = &k->workers[k->next];
		if (++k->next == k->nworkers)
			k->next = 0;
		uint64_t head = atomic_load_explicit(&wk->head, memory_order_relaxed);
		if (head - atomic_load_explicit(&wk->tail, memory_order_acquire) >= wk->ring) {
			k->full_waits++;
			while (head - atomic_load_explicit(&wk->tail, memory_order_acquire) >= wk->ring)
				bench_cpu_relax();
		}
		struct witem *it = &wk->items[head & (wk->ring - 1u)];
		it->s = *s;
		it->deadline = bench_now_ns() + wk->hold_ns;
		atomic_store_explicit(&wk->head, head + 1, memory_order_release);
		return 0;
	}
	if (k->used >= k->nholders) {
		struct any_slice c = *s;
		any_release(&c);
		record_error("more slices than holders (%zu)", k->nholders);
		return -1;
	}
	struct holder *h = &k->holders[k->used++];
	h->s = *s;
	h->k = k;
	if (k->kind == SINK_SPAWN) {
		atomic_fetch_add(&k->live, 1u);
		pthread_t tid;
		if (spawn(k, h, &tid) < 0) {
			any_release(&h->s);
			atomic_fetch_sub(&k->live, 1u);
			return -1;
		}
		return 0;
	}
	if (spawn(k, h, &k->pair[k->npair]) < 0) {
		any_release(&h->s);
		return -1;
	}
	k->npair++;
	return 0;
}

/* End of an iteration: multi-thread-2 waits for both slices to be dropped. */
static int sink_iter_end(struct sink *k)
{
	if (k->kind != SINK_SPAWN_JOIN)
		return 0;
	for (unsigned j = 0; j < k->npair; j++)
		pthread_join(k->pair[j], NULL);
	k->npair = 0;
	return 0;
}

/* Wait until every slice handed over has been dropped. */
static void sink_drain(struct sink *k)
{
	sink_iter_end(k);
	if (k->kind == SINK_SPAWN) {
		uint32_t v;
		while ((v = atomic_load(&k->live)) != 0)
			futex_wait(&k->live, v);
	} else if (k->kind == SINK_WORKERS) {
		for (unsigned j = 0; j < k->nworkers; j++) {
			struct worker *wk = &k->workers[j];
			uint64_t head = atomic_load_explicit(&wk->head, memory_order_relaxed);
			while (atomic_load_explicit(&wk->tail, memory_order_acquire) != head)
				bench_cpu_relax();
		}
	}
	k->used = 0;
}

/* ------------------------------------------------------------------------- */
/* The bench bodies, one per buffer type (monomorphised like the seed's       */
/* generic functions)                                                         */
/* ------------------------------------------------------------------------- */

struct seed_work {
	const uint8_t *data;
	const uint16_t *len; /* per iteration */
	unsigned iterations;
};

static inline int take_sv2(struct sv2shm_buffer *b, struct any_slice *s)
{
	s->type = AS_SV2;
	return sv2shm_buffer_get_data_owned(b, &s->u.sv);
}

static inline int take_ppool(struct ppool *p, struct any_slice *s)
{
	s->type = AS_PPOOL;
	return ppool_get_data_owned(p, &s->u.pp);
}

static inline int take_maxe(struct maxe *m, struct any_slice *s)
{
	s->type = AS_MAXE;
	maxe_get_data_owned(m, &s->u.me);
	return 0;
}

static inline void drop_sv2(struct any_slice *s)
{
	if (BENCH_UNLIKELY(sv2shm_slice_release(&s->u.sv) < 0))
		record_error("sv2shm_slice_release() failed");
}

static inline void drop_ppool(struct any_slice *s)
{
	ppool_slice_drop(&s->u.pp);
}

static inline void drop_maxe(struct any_slice *s)
{
	(void)s;
}

static int fail_write(const char *who)
{
	record_error("%s: get_writable(10) returned NULL", who);
	return -1;
}

static int fail_take(const char *who)
{
	record_error("%s: get_data_owned() failed", who);
	return -1;
}

#define DEFINE_BODIES(NAME, BT, GETW, TAKE, DROP)                                                                  \
	static BENCH_NOINLINE int NAME##_single(BT b, const struct seed_work *w)                                    \
	{                                                                                                          \
		for (unsigned i = 0; i < w->iterations; i++) {                                                     \
			const size_t len = w->len[i];                                                              \
			struct any_slice s;                                                                        \
			SEED_WRITE_MSG(GETW, b, len, w->data + i, return fail_write(#NAME));                       \
			if (BENCH_UNLIKELY(TAKE(b, &s) < 0))                                                       \
				return fail_take(#NAME);                                                           \
			DROP(&s);                                                                                  \
			SEED_WRITE_MSG(GETW, b, len, w->data + i, return fail_write(#NAME));                       \
			if (BENCH_UNLIKELY(TAKE(b, &s) < 0))                                                       \
				return fail_take(#NAME);                                                           \
			DROP(&s);                                                                                  \
		}                                                                                                  \
		return 0;                                                                                          \
	}                                                                                                          \
	static BENCH_NOINLINE int NAME##_threaded(BT b, const struct seed_work *w, struct sink *k)                  \
	{                                                                                                          \
		for (unsigned i = 0; i < w->iterations; i++) {                                                     \
			const size_t len = w->len[i];                                                              \
			struct any_slice s;                                                                        \
			SEED_WRITE_MSG(GETW, b, len, w->data + i, return fail_write(#NAME));                       \
			if (BENCH_UNLIKELY(TAKE(b, &s) < 0))                                                       \
				return fail_take(#NAME);                                                           \
			if (sink_put(k, &s) < 0)                                                                   \
				return -1;                                                                         \
			SEED_WRITE_MSG(GETW, b, len, w->data + i, return fail_write(#NAME));                       \
			if (BENCH_UNLIKELY(TAKE(b, &s) < 0))                                                       \
				return fail_take(#NAME);                                                           \
			if (sink_put(k, &s) < 0)                                                                   \
				return -1;                                                                         \
			if (sink_iter_end(k) < 0)                                                                  \
				return -1;                                                                         \
		}                                                                                                  \
		return 0;                                                                                          \
	}

DEFINE_BODIES(sv2, struct sv2shm_buffer *, sv2shm_buffer_get_writable, take_sv2, drop_sv2)
DEFINE_BODIES(ppool, struct ppool *, ppool_get_writable, take_ppool, drop_ppool)
DEFINE_BODIES(maxe, struct maxe *, maxe_get_writable, take_maxe, drop_maxe)

/* ------------------------------------------------------------------------- */
/* One sample                                                                 */
/* ------------------------------------------------------------------------- */

struct sample_res {
	uint64_t total_ns; /* the seed's sample: create + body + drain + destroy */
	uint64_t setup_ns; /* create + destroy */
	uint64_t from_pool, from_system, taken;
};

/*
 * One call of the seed's bench function for contender `c` (k == NULL:
 * single-thread). Not inlined: instructions.sh counts instructions inside
 * this function only (callgrind --toggle-collect). Returns 0, or -1 with the
 * error recorded.
 */
BENCH_NOINLINE int seed_measured_run(int c, unsigned slots, const struct seed_work *w, struct sink *k,
				     struct sample_res *out);
BENCH_NOINLINE int seed_measured_run(int c, unsigned slots, const struct seed_work *w, struct sink *k,
				     struct sample_res *out)
{
	char err[256];
	struct sv2_buf sb;
	struct ppool *pp = NULL;
	struct maxe *me = NULL;
	int r = 0;
	memset(out, 0, sizeof(*out));
	out->taken = 2 * (uint64_t)w->iterations;

	uint64_t t0 = bench_now_ns();
	switch (c) {
	case C_POOL:
	case C_SYSMEM:
	case C_SHARED:
		if (sv2_buf_new(&sb, c == C_POOL ? SV2_POOL : c == C_SYSMEM ? SV2_SYSMEM : SV2_SHARED, slots,
				SEED_CAPACITY, err, sizeof(err)) < 0) {
			record_error("%s", err);
			return -1;
		}
		break;
	case C_PPOOL:
		pp = ppool_new(SEED_CAPACITY);
		if (!pp) {
			record_error("ppool: out of memory");
			return -1;
		}
		break;
	case C_MAXE:
		me = maxe_new(SEED_CAPACITY);
		if (!me) {
			record_error("max-efficiency: out of memory");
			return -1;
		}
		break;
	default:
		return -1;
	}
	uint64_t t1 = bench_now_ns();
	switch (c) {
	case C_PPOOL:
		r = k ? ppool_threaded(pp, w, k) : ppool_single(pp, w);
		break;
	case C_MAXE:
		r = k ? maxe_threaded(me, w, k) : maxe_single(me, w);
		break;
	default:
		r = k ? sv2_threaded(sb.b, w, k) : sv2_single(sb.b, w);
		break;
	}
	if (k)
		sink_drain(k);
	uint64_t t2 = bench_now_ns();
	switch (c) {
	case C_PPOOL:
		ppool_free(pp);
		break;
	case C_MAXE:
		maxe_free(me);
		break;
	default:
		sv2_buf_counts(&sb, out->taken, &out->from_pool, &out->from_system);
		if (sv2_buf_free(&sb, err, sizeof(err)) < 0) {
			record_error("%s", err);
			r = -1;
		}
		break;
	}
	uint64_t t3 = bench_now_ns();
	out->total_ns = t3 - t0;
	out->setup_ns = (t1 - t0) + (t3 - t2);
	return r;
}

/* ------------------------------------------------------------------------- */
/* One bench: every contender, interleaved samples                            */
/* ------------------------------------------------------------------------- */

struct cont_result {
	uint64_t *total, *body, *setup;
	uint64_t *sample_of; /* total[i] was measured in sample sample_of[i] */
	size_t n;
	uint64_t from_pool, from_system, taken;
	bool failed;
};

/* Per bench and contender: median over samples of system-memory's time /
 * this contender's time in the same sample (NAN: no pairs); and of
 * max-efficiency's time / this one's. */
static double g_paired[NBENCH][NCONT];
static double g_paired_maxe[NBENCH][NCONT];

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median over the samples both measured of ref->total / c->total. */
static double paired_median(const struct cont_result *ref, const struct cont_result *c)
{
	if (!ref->n || !c->n || ref->failed || c->failed)
		return NAN;
	double *r = calloc(c->n, sizeof(double));
	if (!r)
		return NAN;
	size_t m = 0, j = 0;
	for (size_t i = 0; i < c->n; i++) {
		while (j < ref->n && ref->sample_of[j] < c->sample_of[i])
			j++;
		if (j < ref->n && ref->sample_of[j] == c->sample_of[i] && c->total[i] > 0)
			r[m++] = (double)ref->total[j] / (double)c->total[i];
	}
	double med = NAN;
	if (m) {
		qsort(r, m, sizeof(double), cmp_dbl);
		med = m % 2 ? r[m / 2] : (r[m / 2 - 1] + r[m / 2]) / 2.0;
	}
	free(r);
	return med;
}

static void make_work(struct seed_work *w, uint16_t *lens, unsigned iterations, uint64_t sample)
{
	uint64_t rng = seed_rng_init(sample);
	for (unsigned i = 0; i < iterations; i++)
		lens[i] = (uint16_t)seed_msg_len(&rng);
	w->data = seed_data();
	w->len = lens;
	w->iterations = iterations;
}

static const char *fmt_ms(double ns, char *buf, size_t n)
{
	/* criterion's five significant digits: 7.5006 ms, 10.274 ms, 142.23 ms */
	double ms = ns / 1e6;
	int digits = ms >= 1000 ? 0 : ms >= 100 ? 2 : ms >= 10 ? 3 : 4;
	snprintf(buf, n, "%.*f ms", digits, ms);
	return buf;
}

static int pin_for(enum seed_bench b, const struct seed_cfg *cfg)
{
	/* single-thread and workers: the producer on the first CPU (the workers
	 * on the others). Thread-per-slice benches: not pinned, or every holder
	 * thread would inherit the producer's CPU. */
	if (cfg->ncpus < 1)
		return 0;
	if (b == B_SINGLE || b == B_WORKERS)
		return bench_pin_thread(cfg->cpus[0], cfg->cpus, cfg->ncpus);
	return bench_pin_thread(-1, cfg->cpus, cfg->ncpus);
}

static int run_bench(struct bench_report *rep, enum seed_bench b, const struct seed_cfg *cfg, bool quick)
{
	unsigned samples = cfg->samples[b];
	if (quick && samples > 5)
		samples = samples / 5 < 3 ? 3 : samples / 5;
	const unsigned warmup = cfg->once ? 0 : 1;
	if (cfg->once)
		samples = 1;
	struct cont_result res[NCONT];
	memset(res, 0, sizeof(res));
	uint16_t *lens = calloc(cfg->iterations ? cfg->iterations : 1, sizeof(*lens));
	int rc = 0;
	if (!lens)
		return -1;
	for (int c = 0; c < NCONT; c++) {
		if (!cfg->cont_on[c])
			continue;
		res[c].total = calloc(samples, sizeof(uint64_t));
		res[c].body = calloc(samples, sizeof(uint64_t));
		res[c].setup = calloc(samples, sizeof(uint64_t));
		res[c].sample_of = calloc(samples, sizeof(uint64_t));
		if (!res[c].total || !res[c].body || !res[c].setup || !res[c].sample_of) {
			rc = -1;
			goto out;
		}
	}
	int pr = pin_for(b, cfg);
	if (pr < 0)
		bench_report_note(rep, "%s: pinning failed (%s): not pinned", bench_names[b], strerror(-pr));

	struct sink sink_storage, *k = NULL;
	memset(&sink_storage, 0, sizeof(sink_storage));
	if (b != B_SINGLE) {
		int kind = b == B_MT ? SINK_SPAWN : b == B_MT2 ? SINK_SPAWN_JOIN : SINK_WORKERS;
		uint64_t hold = b == B_MT2 ? cfg->hold2_ns : cfg->hold_ns;
		if (sink_init(&sink_storage, kind, hold, 2 * (size_t)cfg->iterations, cfg) < 0) {
			bench_report_note(rep, "%s: could not set up the holder threads", bench_names[b]);
			sink_fini(&sink_storage);
			rc = -1;
			goto out;
		}
		k = &sink_storage;
	}

	uint64_t t_start = bench_now_ns();
	bench_progress("%-15s slots %-2u ", bench_names[b], cfg->slots);
	for (unsigned s = 0; s < warmup + samples; s++) {
		struct seed_work w;
		make_work(&w, lens, cfg->iterations, s);
		for (int j = 0; j < NCONT; j++) {
			int c = (int)((s + (unsigned)j) % NCONT);
			if (!cfg->cont_on[c] || res[c].failed)
				continue;
			struct sample_res sr;
			if (seed_measured_run(c, cfg->slots, &w, k, &sr) < 0 || atomic_load(&g_errors)) {
				bench_report_note(rep, "%s %s: FAILED: %s", bench_names[b], cont_names[c], g_errmsg);
				res[c].failed = true;
				rc = -1;
				atomic_store(&g_errors, 0u);
				atomic_store(&g_err_taken, 0);
				continue;
			}
			if (s < warmup)
				continue;
			size_t n = res[c].n++;
			res[c].sample_of[n] = s;
			res[c].total[n] = sr.total_ns;
			res[c].setup[n] = sr.setup_ns;
			res[c].body[n] = sr.total_ns - sr.setup_ns;
			res[c].from_pool += sr.from_pool;
			res[c].from_system += sr.from_system;
			res[c].taken += sr.taken;
		}
		if ((s + 1) % 10 == 0)
			bench_progress(".");
	}
	bench_progress(" %.1f s\n", (double)(bench_now_ns() - t_start) / 1e9);
	uint64_t full_waits = k ? k->full_waits : 0;
	if (k)
		sink_fini(k);

	if (cfg->once) {
		for (int c = 0; c < NCONT; c++) {
			if (!cfg->cont_on[c] || res[c].failed || !res[c].n)
				continue;
			fprintf(stderr, "once: %s %s slots %u iterations %u: %.3f ms, from_system %llu of %llu\n",
				bench_names[b], cont_names[c], cfg->slots, cfg->iterations, (double)res[c].total[0] / 1e6,
				(unsigned long long)res[c].from_system, (unsigned long long)res[c].taken);
		}
		goto out;
	}

	/* Paired ratios (before the sort below reorders the samples): the
	 * median over samples of ref time / contender time, both measured in
	 * the same sample, back to back. A drift of the machine's speed (this
	 * VM's vCPUs go through slow and fast phases of seconds) cancels out. */
	for (int c = 0; c < NCONT; c++) {
		g_paired[b][c] = paired_median(&res[C_SYSMEM], &res[c]);
		g_paired_maxe[b][c] = paired_median(&res[C_MAXE], &res[c]);
	}

	/* Rows, in the seed's order, then the seed-shaped summary. */
	static const int order[NCONT] = {C_POOL, C_SYSMEM, C_PPOOL, C_MAXE, C_SHARED};
	for (int j = 0; j < NCONT; j++) {
		int c = order[j];
		if (!cfg->cont_on[c] || res[c].failed || !res[c].n)
			continue;
		struct bench_stats st, setup, body;
		bench_stats_compute(res[c].total, res[c].n, &st);
		bench_stats_compute(res[c].setup, res[c].n, &setup);
		bench_stats_compute(res[c].body, res[c].n, &body);
		struct bench_row *row = bench_report_add_row(rep, bench_names[b], cont_names[c], 0, st.median_ns,
							     st.p99_ns, NAN);
		if (!row)
			continue;
		row->p10_ns = st.p10_ns;
		row->p90_ns = st.p90_ns;
		row->stddev_ns = st.stddev_ns;
		row->samples = st.n;
		row->slots = cfg->slots;
		row->setup_ns = setup.median_ns;
		/* per slice, without construction and destruction */
		row->per_msg_ns = body.median_ns / (2.0 * cfg->iterations);
		row->ratio_paired = g_paired[b][c];
		if (c == C_POOL || c == C_SYSMEM || c == C_SHARED) {
			row->from_system = (int64_t)res[c].from_system;
			row->slices = (int64_t)res[c].taken;
			uint64_t all = res[c].from_pool + res[c].from_system;
			row->pool_share = all ? (double)res[c].from_pool / (double)all : NAN;
		}
	}
	if (b == B_WORKERS)
		bench_report_note(rep, "workers: %u worker thread(s), queue of %u slices in all, hold %.1f us after "
				       "hand-over; the producer found a queue full %llu times (it then waits)",
				  cfg->workers, WORKER_QUEUE, (double)cfg->hold_ns / 1000.0,
				  (unsigned long long)full_waits);
out:
	for (int c = 0; c < NCONT; c++) {
		free(res[c].total);
		free(res[c].body);
		free(res[c].setup);
		free(res[c].sample_of);
	}
	free(lens);
	return rc;
}

/* ------------------------------------------------------------------------- */
/* Ratios, the seed-shaped table, targets                                     */
/* ------------------------------------------------------------------------- */

static void add_ratios(struct bench_report *rep)
{
	for (size_t i = 0; i < rep->nrows; i++) {
		struct bench_row *row = &rep->rows[i];
		struct bench_row *ref = bench_report_find(rep, row->bench, "system-memory", 0);
		if (!ref || row->median_ns <= 0)
			continue;
		row->ratio = ref->median_ns / row->median_ns;
		snprintf(row->ratio_vs, sizeof(row->ratio_vs), "system-memory");
	}
}

static void add_seed_table(struct bench_report *rep, unsigned slots)
{
	bench_report_text(rep, "In the seed README's layout (median of the samples; [p10 .. p90]; speedup vs "
			       "system-memory: ratio of the medians, and the median of the per-sample ratios), N = %u "
			       "slots:",
			  slots);
	bench_report_text(rep, "```");
	for (int b = 0; b < NBENCH; b++) {
		for (size_t i = 0; i < rep->nrows; i++) {
			const struct bench_row *row = &rep->rows[i];
			if (strcmp(row->bench, bench_names[b]) != 0)
				continue;
			int c = 0;
			while (c < NCONT && strcmp(cont_names[c], row->contender) != 0)
				c++;
			if (c == NCONT)
				continue;
			char head[96], med[32], p10[32], p90[32], dashes[64];
			snprintf(head, sizeof(head), "* %s `%s`:", bench_labels[b], cont_seed_names[c]);
			int pad = 68 - (int)strlen(head);
			if (pad < 3)
				pad = 3;
			if (pad > (int)sizeof(dashes) - 1)
				pad = (int)sizeof(dashes) - 1;
			memset(dashes, '-', (size_t)pad);
			dashes[pad] = '\0';
			char ratio[64] = "";
			if (!isnan(row->ratio))
				snprintf(ratio, sizeof(ratio), "  %.2fx (paired %.2fx)", row->ratio, row->ratio_paired);
			bench_report_text(rep, "%s %s %10s  [%s .. %s]%s", head, dashes, fmt_ms(row->median_ns, med, sizeof(med)),
					  fmt_ms(row->p10_ns, p10, sizeof(p10)), fmt_ms(row->p90_ns, p90, sizeof(p90)), ratio);
		}
	}
	bench_report_text(rep, "```");
}

static int bench_index(const char *name)
{
	for (int b = 0; b < NBENCH; b++)
		if (strcmp(bench_names[b], name) == 0)
			return b;
	return -1;
}

/*
 * A ratio target: `paired` is the median over samples of the two times
 * measured back to back (the target's value, robust to the machine's speed
 * drifting); the note also gives the ratio of the medians and the ratio
 * without construction.
 */
static void target_ratio(struct bench_report *rep, const char *name, const char *bench, const char *num,
			 const char *den, double paired, double limit, bool at_least)
{
	const struct bench_row *a = bench_report_find(rep, bench, num, 0);
	const struct bench_row *d = bench_report_find(rep, bench, den, 0);
	struct bench_target *t = bench_report_add_target(rep, name, a && d ? paired : NAN, limit, at_least, "x");
	if (!t)
		return;
	if (!a || !d) {
		snprintf(t->note, sizeof(t->note), "no %s row", !a ? num : den);
		return;
	}
	double body = d->per_msg_ns > 0 ? a->per_msg_ns / d->per_msg_ns : NAN;
	snprintf(t->note, sizeof(t->note), "paired median; medians %s %.3f ms / %s %.3f ms = %.2fx; without "
					   "construction %.2fx",
		 num, a->median_ns / 1e6, den, d->median_ns / 1e6, a->median_ns / d->median_ns, body);
}

static void add_targets(struct bench_report *rep, unsigned slots)
{
	int st = bench_index("single-thread"), wk = bench_index("workers");
	double pm = g_paired_maxe[st][C_POOL];
	target_ratio(rep, "single thread: pool within 1.5x of max-efficiency (pool time / max-efficiency time)",
		     "single-thread", "pool", "max-efficiency", pm > 0 ? 1.0 / pm : NAN, 1.5, false);
	target_ratio(rep, "single thread: pool at least 1.5x faster than system-memory", "single-thread",
		     "system-memory", "pool", g_paired[st][C_POOL], 1.5, true);
	target_ratio(rep, "workers: pool at least 3x faster than system-memory", "workers", "system-memory", "pool",
		     g_paired[wk][C_POOL], 3.0, true);
	/* What a pool with no cost at all would reach: max-efficiency. */
	const struct bench_row *me = bench_report_find(rep, "workers", "max-efficiency", 0);
	const struct bench_row *me1 = bench_report_find(rep, "single-thread", "max-efficiency", 0);
	if (me && me1)
		bench_report_note(rep, "the bound no pool can beat: max-efficiency is %.2fx faster than system-memory single "
				       "threaded and %.2fx with workers (paired medians), the pool %.2fx and %.2fx",
				  g_paired[st][C_MAXE], g_paired[wk][C_MAXE], g_paired[st][C_POOL], g_paired[wk][C_POOL]);
	const struct bench_row *w = bench_report_find(rep, "workers", "pool", 0);
	if (slots == 64) {
		struct bench_target *t = bench_report_add_target(rep, "workers at N = 64: slices from system memory",
								 w ? (double)w->from_system : NAN, 0, false, "");
		if (t && w)
			snprintf(t->note, sizeof(t->note), "%lld of %lld slices", (long long)w->from_system,
				 (long long)w->slices);
	} else if (w) {
		bench_report_note(rep, "workers at N = %u: %lld of %lld slices came from system memory (the target of 0 "
				       "applies at N = 64)",
				  slots, (long long)w->from_system, (long long)w->slices);
	}
}

/* ------------------------------------------------------------------------- */
/* Options and main                                                           */
/* ------------------------------------------------------------------------- */

static int find_name(const char *const *names, int n, const char *s, size_t len)
{
	for (int i = 0; i < n; i++)
		if (strlen(names[i]) == len && strncmp(names[i], s, len) == 0)
			return i;
	return -1;
}

/* "a,b,c" into on[]. Returns 0 or -1 (unknown name). */
static int parse_list(const char *opt, const char *val, const char *const *names, int n, bool *on)
{
	if (!val) {
		fprintf(stderr, "sv2shm-bench seed: %s needs a value\n", opt);
		return -1;
	}
	for (int i = 0; i < n; i++)
		on[i] = false;
	const char *p = val;
	while (*p) {
		size_t len = strcspn(p, ",");
		int k = find_name(names, n, p, len);
		if (k < 0) {
			fprintf(stderr, "sv2shm-bench seed: %s: unknown name '%.*s'\n", opt, (int)len, p);
			return -1;
		}
		on[k] = true;
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

static int seed_opt(int argc, char **argv, int i, void *ctx)
{
	struct seed_cfg *cfg = ctx;
	const char *a = argv[i];
	const char *v = i + 1 < argc ? argv[i + 1] : NULL;
	unsigned long long x;
	if (strcmp(a, "--slots") == 0) {
		if (bench_parse_uint("seed", a, v, 1, SV2SHM_MAX_SLOTS, &x) < 0)
			return -1;
		cfg->slots = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--iterations") == 0) {
		if (bench_parse_uint("seed", a, v, 1, 100000, &x) < 0)
			return -1;
		cfg->iterations = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--samples") == 0) {
		if (bench_parse_uint("seed", a, v, 1, 1000000, &x) < 0)
			return -1;
		for (int b = 0; b < NBENCH; b++)
			cfg->samples[b] = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--hold-ns") == 0) {
		if (bench_parse_uint("seed", a, v, 0, 10000000000ull, &x) < 0)
			return -1;
		cfg->hold_ns = x;
		return 2;
	}
	if (strcmp(a, "--hold2-ns") == 0) {
		if (bench_parse_uint("seed", a, v, 0, 10000000000ull, &x) < 0)
			return -1;
		cfg->hold2_ns = x;
		return 2;
	}
	if (strcmp(a, "--workers") == 0) {
		if (bench_parse_uint("seed", a, v, 1, WORKER_QUEUE / 2, &x) < 0)
			return -1;
		cfg->workers = (unsigned)x;
		return 2;
	}
	if (strcmp(a, "--only") == 0)
		return parse_list(a, v, cont_names, NCONT, cfg->cont_on) < 0 ? -1 : 2;
	if (strcmp(a, "--bench") == 0)
		return parse_list(a, v, bench_names, NBENCH, cfg->bench_on) < 0 ? -1 : 2;
	if (strcmp(a, "--once") == 0) {
		cfg->once = true;
		return 1;
	}
	return 0;
}

static void seed_usage(FILE *out)
{
	fprintf(out,
		"usage: sv2shm-bench seed [--slots N] [--json] [--quick] [--bench LIST] [--only LIST]\n"
		"                         [--iterations N] [--samples N] [--once] [--hold-ns NS] [--hold2-ns NS]\n"
		"                         [--workers N]\n\n"
		"The seed crate's (buffer_sv2) criterion benchmarks. A sample: create the buffer (capacity 2^16*5),\n"
		"1000 iterations of two messages of 2^14 - rand(0..12000) bytes written in get_writable(10) calls and\n"
		"taken with get_data_owned(), wait until every slice is dropped, destroy the buffer.\n"
		"  single-thread   both slices dropped at once\n"
		"  multi-thread    each slice moved to a new thread that sleeps 10 us (the crate's bench code) and drops it\n"
		"  multi-thread-2  as multi-thread (hold 10 ns, the crate's code), then wait for both slices to drop\n"
		"  workers         slices queued to a fixed set of worker threads that drop each 10 us after hand-over\n"
		"Contenders: pool, system-memory, ppool, max-efficiency, shared-pool.\n\n"
		"  --slots N       pool slots (1..64, default 8)\n"
		"  --bench LIST    comma-separated benches (default: all)\n"
		"  --only LIST     comma-separated contenders (default: all)\n"
		"  --iterations N  iterations per sample (default 1000)\n"
		"  --samples N     samples per bench and contender (default 300 / 20 / 20 / 200)\n"
		"  --once          one sample of each selected bench and contender, no statistics (for\n"
		"                  bench/instructions.sh: callgrind counts inside seed_measured_run only)\n"
		"  --hold-ns NS    hold time of multi-thread and workers (default %u)\n"
		"  --hold2-ns NS   hold time of multi-thread-2 (default %u)\n"
		"  --workers N     worker threads (default: CPUs - 1, at least 1)\n"
		"  --json          exactly one JSON object on stdout; the human table goes to stderr\n"
		"  --quick         a fifth of the samples\n"
		"Exit status: 0 when every run completed (targets may be missed), 1 when a run failed, 2 usage.\n",
		HOLD_MT_NS, HOLD_MT2_NS);
}

int bench_seed_main(int argc, char **argv)
{
	struct seed_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.slots = SV2SHM_DEFAULT_SLOTS;
	cfg.iterations = 1000;
	for (int b = 0; b < NBENCH; b++) {
		cfg.samples[b] = default_samples[b];
		cfg.bench_on[b] = true;
	}
	for (int c = 0; c < NCONT; c++)
		cfg.cont_on[c] = true;
	cfg.hold_ns = HOLD_MT_NS;
	cfg.hold2_ns = HOLD_MT2_NS;
	cfg.ncpus = bench_cpus(cfg.cpus, CPU_SETSIZE);
	cfg.workers = cfg.ncpus > 1 ? (unsigned)(cfg.ncpus - 1) : 1;
	if (cfg.workers > WORKER_QUEUE / 2)
		cfg.workers = WORKER_QUEUE / 2;

	struct bench_opts opts;
	if (bench_parse_opts_ex(argc, argv, &opts, seed_opt, &cfg) < 0)
		return 2;
	if (opts.help) {
		seed_usage(stdout);
		return 0;
	}
	(void)seed_data(); /* generate the input outside every measurement */

	struct bench_report rep;
	bench_report_init(&rep, "seed");
	rep.ratio_desc = "speedup vs system-memory: system-memory's median / this median (> 1: faster); targets use "
			 "the paired ratio (JSON ratio_paired): the median over samples of the two times measured back "
			 "to back in the same sample";
	struct bench_load load;
	bench_load_start(&load);
	bool failed = false;
	for (int b = 0; b < NBENCH; b++) {
		if (!cfg.bench_on[b])
			continue;
		if (run_bench(&rep, (enum seed_bench)b, &cfg, opts.quick) < 0)
			failed = true;
	}
	if (cfg.once) {
		bench_report_free(&rep);
		return failed ? 1 : 0;
	}
	bench_load_note(&rep, &load);
	add_ratios(&rep);
	add_seed_table(&rep, cfg.slots);
	add_targets(&rep, cfg.slots);
	bench_report_note(&rep, "sample = one call of the seed's bench function: construction + %u iterations + "
				"waiting for every slice to be dropped + destruction (setup_ns: construction and "
				"destruction alone; ns_per_msg: the rest, per slice)",
			  cfg.iterations);
	bench_report_note(&rep, "hold: multi-thread %.3f us, multi-thread-2 %.3f us (the crate's bench code: "
				"Duration::from_micros(10) and from_nanos(10); its README says 1 ms); a holder thread "
				"calls nanosleep() even for 10 ns, as std::thread::sleep does",
			  (double)cfg.hold_ns / 1000.0, (double)cfg.hold2_ns / 1000.0);
	bench_report_note(&rep, "the crate's multi-thread-2 sleeps 10 ns after each iteration instead of waiting for "
				"the two slices: here the producer joins both holder threads (the README's "
				"definition); the crate's threaded system-memory benches write 2^16 - rand(0..12000) "
				"bytes into a BufferPool and take empty slices from the system buffer (a bug): here "
				"they write into the system buffer like every other contender");
	int pr = bench_report_print(&rep, opts.json);
	bench_report_free(&rep);
	if (pr < 0)
		return 1;
	return failed ? 1 : 0;
}
