/*
 * The in-process pool property shared by the `faster` and `slower` targets:
 * the C version of the seed crate's two fuzz targets, with the pool's own
 * invariants checked after every step.
 *
 * The producer (the calling thread) decodes operations from the input:
 *
 *   MSG      write a message of a chosen length in 1..8 get_writable() (or
 *            write()) chunks, bytes fz_pattern(seq), optionally with
 *            danger_set_start() and get_data_by_ref(); take it with
 *            get_data_owned() and hand it to one of the worker threads, which
 *            holds it for a chosen number of microseconds;
 *   KEEP     the same, but the producer keeps the slice itself;
 *   RELEASE  release one kept slice (in any order: the seed's diagrams), then
 *            release it again and check the refusal;
 *   STALE    release a copy of a slice released earlier: must be refused
 *            (-EALREADY or -ESTALE) and change nothing, even when its slot
 *            now holds a worker's slice;
 *   DRAIN    wait until the workers released everything;
 *   EMPTY    get_data_owned() with nothing written;
 *   DESTROY  sv2shm_pool_destroy() while the producer holds slices: -EBUSY.
 *
 * SV2SHM_FUZZ_VERBOSE=1 prints every step with the slot map and mode, as the
 * seed's README draws them.
 *
 * Workers (3 threads, created once per process, pinned to different cores)
 * check a slice's bytes when they receive it and again just before they
 * release it, and abort() on the first difference.
 *
 * After every step the producer checks:
 *   - no two live slices overlap and each lies inside the capacity
 *     (sv2shm_pool_slot_range() for every slot), and each of the producer's
 *     own slices is where its pointer says;
 *   - popcount(mask) equals the pool slices not yet released — exactly,
 *     bracketed by two counters the workers bump before and after each
 *     release, and stats.live agrees;
 *   - from_pool + from_system equals the non-empty slices taken (each
 *     counter separately), refused_releases the refusals the producer
 *     provoked;
 *   - the mode is one of the three; a pool slice is never taken in ALLOC
 *     mode and a system slice only in ALLOC mode; FAIL and WAIT pools never
 *     use system memory; every mode change is counted;
 *   - an empty pool (nothing live anywhere) serves any message that fits in
 *     its capacity from the region: get_writable() does not fail and the
 *     slice is a pool slice (the seed's reset);
 *   - get_writable() fails only with the errors its policy allows, with
 *     -EMSGSIZE exactly when the message exceeds the capacity.
 * At the end every slice is released, the mask is 0, and
 * sv2shm_pool_destroy() returns 0.
 */
#include "pool_driver.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sv2shm/sv2shm.h>

#define NWORKERS 3u
#define QCAP 1024u      /* per worker queue; more than one input can issue */
#define MAX_OUTSTANDING 900u
#define MAX_LOCAL 72u
#define MAX_COPIES 8u
#define BUDGET_NS (5u * 1000u * 1000u) /* stop decoding operations after 5 ms */

/* --- workers -------------------------------------------------------------- */

struct item {
	struct sv2shm_slice s;
	uint64_t seq;      /* message number: its bytes */
	uint64_t idx0;     /* index of its first byte in the message */
	size_t len;        /* expected length */
	uint64_t deadline; /* release at (CLOCK_MONOTONIC ns) */
};

struct worker {
	pthread_t th;
	unsigned index;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct item q[QCAP]; /* producer -> worker */
	unsigned qhead, qlen;
	struct item held[QCAP]; /* worker-private */
	unsigned nheld;
};

static struct worker workers[NWORKERS];
static pthread_once_t workers_once = PTHREAD_ONCE_INIT;

/* Counted over the life of the process. Items given to workers and not yet
 * released (all kinds); pool-slice releases the workers started / finished. */
static _Atomic uint64_t w_outstanding;
static _Atomic uint64_t w_rel_started;
static _Atomic uint64_t w_rel_done;

static void check_item(const struct item *it, const char *when)
{
	FZ_CHECK(it->s.len == it->len, "worker: slice of message %llu has %zu bytes, expected %zu (%s)",
		 (unsigned long long)it->seq, it->s.len, it->len, when);
	if (!it->len)
		return;
	long bad = fz_pattern_check(it->s.data, it->seq, it->idx0, it->len);
	FZ_CHECK(bad < 0, "worker: message %llu (kind %d, %zu bytes from index %llu) differs at byte %ld %s",
		 (unsigned long long)it->seq, sv2shm_slice_kind(&it->s), it->len, (unsigned long long)it->idx0,
		 bad, when);
}

static void release_item(struct item *it)
{
	check_item(it, "just before its release");
	bool pool = sv2shm_slice_kind(&it->s) == SV2SHM_SLICE_POOL;
	if (pool)
		atomic_fetch_add_explicit(&w_rel_started, 1, memory_order_seq_cst);
	int r = sv2shm_slice_release(&it->s);
	FZ_CHECK(r == 0, "worker: release of message %llu returned %d (%s)", (unsigned long long)it->seq, r,
		 sv2shm_strerror(r));
	FZ_CHECK(sv2shm_slice_kind(&it->s) == SV2SHM_SLICE_NONE, "released slice not cleared");
	if (pool)
		atomic_fetch_add_explicit(&w_rel_done, 1, memory_order_seq_cst);
	atomic_fetch_sub_explicit(&w_outstanding, 1, memory_order_seq_cst);
}

static void ns_to_timespec(uint64_t ns, struct timespec *ts)
{
	ts->tv_sec = (time_t)(ns / 1000000000u);
	ts->tv_nsec = (long)(ns % 1000000000u);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu > 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET((int)(w->index % (unsigned long)ncpu), &set);
		(void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set); /* failure is fine */
	}
	for (;;) {
		pthread_mutex_lock(&w->mu);
		for (;;) {
			if (w->qlen)
				break;
			if (!w->nheld) {
				pthread_cond_wait(&w->cv, &w->mu);
				continue;
			}
			uint64_t next = UINT64_MAX;
			for (unsigned i = 0; i < w->nheld; i++)
				if (w->held[i].deadline < next)
					next = w->held[i].deadline;
			if (fz_now_ns() >= next)
				break;
			struct timespec ts;
			ns_to_timespec(next, &ts);
			pthread_cond_timedwait(&w->cv, &w->mu, &ts);
		}
		unsigned fresh = w->nheld;
		while (w->qlen) {
			w->held[w->nheld++] = w->q[w->qhead];
			w->qhead = (w->qhead + 1u) % QCAP;
			w->qlen--;
		}
		pthread_mutex_unlock(&w->mu);

		for (unsigned i = fresh; i < w->nheld; i++)
			check_item(&w->held[i], "when the worker received it");
		uint64_t now = fz_now_ns();
		for (unsigned i = 0; i < w->nheld;) {
			if (w->held[i].deadline <= now) {
				release_item(&w->held[i]);
				w->held[i] = w->held[--w->nheld];
			} else {
				i++;
			}
		}
	}
	return NULL;
}

static void workers_start(void)
{
	for (unsigned i = 0; i < NWORKERS; i++) {
		struct worker *w = &workers[i];
		w->index = i;
		pthread_mutex_init(&w->mu, NULL);
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&w->cv, &ca);
		pthread_condattr_destroy(&ca);
		if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
			perror("pthread_create");
			abort();
		}
		pthread_detach(w->th);
	}
}

static void worker_push(unsigned wi, const struct item *it)
{
	struct worker *w = &workers[wi % NWORKERS];
	atomic_fetch_add_explicit(&w_outstanding, 1, memory_order_seq_cst);
	pthread_mutex_lock(&w->mu);
	FZ_CHECK(w->qlen < QCAP, "worker queue overflow");
	w->q[(w->qhead + w->qlen) % QCAP] = *it;
	w->qlen++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void workers_drain(void)
{
	uint64_t start = fz_now_ns();
	while (atomic_load_explicit(&w_outstanding, memory_order_seq_cst) != 0) {
		FZ_CHECK(fz_now_ns() - start < UINT64_C(10000000000), "workers did not release their slices in 10 s");
		fz_sleep_us(20);
	}
}

/* --- the producer ---------------------------------------------------------- */

struct kept {
	struct sv2shm_slice s;
	uint64_t seq, idx0;
	size_t len;
};

struct run {
	const struct pool_fuzz_params *pp;
	struct fz *in;
	struct sv2shm_pool *pool;
	struct sv2shm_buffer *b;
	uint64_t all;        /* valid mask bits */
	uint64_t seq;        /* messages written */
	uint64_t taken_pool, taken_system;
	uint64_t w_issued;   /* pool slices handed to workers (process lifetime, as the w_ counters) */
	uint64_t refused;    /* refusals provoked */
	struct kept kept[MAX_LOCAL];
	unsigned nkept;
	struct sv2shm_slice copies[MAX_COPIES]; /* copies of released pool slices */
	unsigned ncopies, copy_next;
	const uint8_t *base; /* the region, learned from the first pool slice */
	int last_mode;
	uint64_t last_switches;
	uint64_t deadline;
	uint64_t bytes_left; /* message bytes this input may still write */
	bool system_kept;    /* an EMPTY take in ALLOC mode kept the system block:
	                        the next message continues in it */
	bool verbose;        /* SV2SHM_FUZZ_VERBOSE=1: print every step, the seed's way */
};

static unsigned kept_pool(const struct run *r, uint64_t *bits)
{
	unsigned n = 0;
	uint64_t m = 0;
	for (unsigned i = 0; i < r->nkept; i++)
		if (sv2shm_slice_kind(&r->kept[i].s) == SV2SHM_SLICE_POOL) {
			n++;
			m |= UINT64_C(1) << r->kept[i].s._slot;
		}
	if (bits)
		*bits = m;
	return n;
}

/* Nothing of this pool is live anywhere (workers or producer). */
static bool quiescent(const struct run *r)
{
	return atomic_load_explicit(&w_rel_done, memory_order_seq_cst) == r->w_issued && kept_pool(r, NULL) == 0;
}

struct range {
	uint64_t off, len;
	unsigned slot;
};

static int range_cmp(const void *a, const void *b)
{
	const struct range *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

static void check_invariants(struct run *r, const char *step)
{
	const struct pool_fuzz_params *pp = r->pp;
	struct sv2shm_pool_stats st;
	uint64_t done_before = atomic_load_explicit(&w_rel_done, memory_order_seq_cst);
	FZ_CHECK(sv2shm_pool_stats(r->pool, &st) == 0, "stats");
	uint64_t started_after = atomic_load_explicit(&w_rel_started, memory_order_seq_cst);

	uint64_t kept_bits;
	unsigned kp = kept_pool(r, &kept_bits);
	uint64_t pm = (uint64_t)__builtin_popcountll(st.mask);
	uint64_t lo = r->w_issued - started_after + kp, hi = r->w_issued - done_before + kp;
	FZ_CHECK(pm >= lo && pm <= hi,
		 "after %s: popcount(mask %#llx) = %llu, but %llu..%llu pool slices are live (%u kept by the producer)",
		 step, (unsigned long long)st.mask, (unsigned long long)pm, (unsigned long long)lo,
		 (unsigned long long)hi, kp);
	FZ_CHECK(st.live == pm, "after %s: stats.live %llu != popcount(mask) %llu", step,
		 (unsigned long long)st.live, (unsigned long long)pm);
	FZ_CHECK((st.mask & ~r->all) == 0, "after %s: mask %#llx has bits beyond %u slots", step,
		 (unsigned long long)st.mask, pp->slots);
	FZ_CHECK((st.mask & kept_bits) == kept_bits, "after %s: mask %#llx lost kept slots %#llx", step,
		 (unsigned long long)st.mask, (unsigned long long)kept_bits);
	FZ_CHECK(st.slots == pp->slots && st.capacity == pp->capacity, "after %s: stats geometry %u/%llu", step,
		 st.slots, (unsigned long long)st.capacity);
	FZ_CHECK(st.from_pool == r->taken_pool && st.from_system == r->taken_system,
		 "after %s: from_pool %llu from_system %llu, but %llu pool and %llu system slices were taken", step,
		 (unsigned long long)st.from_pool, (unsigned long long)st.from_system,
		 (unsigned long long)r->taken_pool, (unsigned long long)r->taken_system);
	FZ_CHECK(st.refused_releases == r->refused, "after %s: refused_releases %llu, provoked %llu", step,
		 (unsigned long long)st.refused_releases, (unsigned long long)r->refused);

	int mode = sv2shm_pool_mode(r->pool);
	FZ_CHECK(mode == SV2SHM_MODE_BACK || mode == SV2SHM_MODE_FRONT || mode == SV2SHM_MODE_ALLOC,
		 "after %s: mode %d", step, mode);
	if (pp->policy != SV2SHM_POOL_FALLBACK)
		FZ_CHECK(mode != SV2SHM_MODE_ALLOC && st.from_system == 0,
			 "after %s: a %s pool went to system memory", step,
			 pp->policy == SV2SHM_POOL_FAIL ? "FAIL" : "WAIT");
	if (pp->capacity == 0)
		FZ_CHECK(mode != SV2SHM_MODE_FRONT, "after %s: FRONT mode in a pool of capacity 0", step);
	FZ_CHECK(st.mode_switches >= r->last_switches, "mode_switches went down");
	if (mode != r->last_mode)
		FZ_CHECK(st.mode_switches > r->last_switches, "after %s: mode %s -> %s not counted", step,
			 sv2shm_pool_mode_name(r->last_mode), sv2shm_pool_mode_name(mode));
	r->last_mode = mode;
	r->last_switches = st.mode_switches;

	/* No two live slices overlap; all lie inside the region. */
	struct range rg[64];
	unsigned n = 0;
	for (unsigned s = 0; s < pp->slots; s++) {
		uint64_t off, len;
		int k = sv2shm_pool_slot_range(r->pool, s, &off, &len);
		FZ_CHECK(k == 0 || k == 1, "slot_range(%u) = %d", s, k);
		if (k == 1) {
			FZ_CHECK(off <= pp->capacity && len <= pp->capacity - off,
				 "after %s: slot %u range [%llu, +%llu) outside capacity %llu", step, s,
				 (unsigned long long)off, (unsigned long long)len, (unsigned long long)pp->capacity);
			if (len)
				rg[n++] = (struct range){off, len, s};
		}
	}
	FZ_CHECK(sv2shm_pool_slot_range(r->pool, pp->slots, &(uint64_t){0}, &(uint64_t){0}) == -EINVAL,
		 "slot_range past the last slot");
	qsort(rg, n, sizeof(rg[0]), range_cmp);
	for (unsigned i = 1; i < n; i++)
		FZ_CHECK(rg[i - 1].off + rg[i - 1].len <= rg[i].off,
			 "after %s: live slots %u [%llu, +%llu) and %u [%llu, +%llu) overlap", step, rg[i - 1].slot,
			 (unsigned long long)rg[i - 1].off, (unsigned long long)rg[i - 1].len, rg[i].slot,
			 (unsigned long long)rg[i].off, (unsigned long long)rg[i].len);

	/* The producer's own slices: where their pointers say, bytes intact. */
	for (unsigned i = 0; i < r->nkept; i++) {
		const struct kept *k = &r->kept[i];
		if (sv2shm_slice_kind(&k->s) != SV2SHM_SLICE_POOL)
			continue;
		uint64_t off = 0, len = 0;
		FZ_CHECK(sv2shm_pool_slot_range(r->pool, k->s._slot, &off, &len) == 1, "kept slot %u not live",
			 k->s._slot);
		FZ_CHECK(k->s.data == r->base + off && k->s.len == len,
			 "after %s: kept slice of slot %u at +%lld len %zu, slot range says +%llu len %llu", step,
			 k->s._slot, (long long)(k->s.data - r->base), k->s.len, (unsigned long long)off,
			 (unsigned long long)len);
	}

	char map[SV2SHM_MAX_SLOTS + 1];
	FZ_CHECK(sv2shm_pool_slot_map(r->pool, map, sizeof(map)) == (int)pp->slots, "slot_map");
	if (r->verbose)
		fprintf(stderr, "%-12s %s  %-10s pool %llu system %llu kept %u\n", step, map, sv2shm_pool_mode_name(mode),
			(unsigned long long)st.from_pool, (unsigned long long)st.from_system, r->nkept);
	FZ_CHECK(strlen(map) == pp->slots, "slot_map length");
	for (unsigned s = 0; s < pp->slots; s++)
		if (kept_bits & (UINT64_C(1) << s))
			FZ_CHECK(map[s] != '-', "after %s: slot map %s shows kept slot %u free", step, map, s);
}

/* --- operations ------------------------------------------------------------ */

static const size_t fast_lens[] = {0,   1,   2,    3,    5,    6,    7,    8,    9,     15,   16,  17,
				   31,  32,  33,   63,   64,   65,   100,  127,  128,   129,  255, 256,
				   257, 1000, 1023, 1024, 1025, 4095, 4096, 4097, 65535, 65536};
static const unsigned fast_holds[] = {0, 0, 1, 2, 5, 10, 20, 50, 100};

#define SLOW_MAX_MSG (UINT64_C(1) << 20)

static size_t clamp_len(struct run *r, uint64_t len, uint64_t max)
{
	if (len > max)
		len = max;
	if (len > r->bytes_left)
		len = r->bytes_left % 64u;
	r->bytes_left -= len;
	return (size_t)len;
}

static size_t cap_relative(struct run *r)
{
	const struct pool_fuzz_params *pp = r->pp;
	uint64_t cap = pp->capacity, basis;
	switch (fz_u8(r->in) & 3u) {
	case 0:
		basis = cap;
		break;
	case 1:
		basis = cap / 2;
		break;
	case 2:
		basis = cap / pp->slots;
		break;
	default:
		basis = cap / 3;
		break;
	}
	int8_t d = (int8_t)fz_u8(r->in);
	if (d < 0 && (uint64_t)(-(int)d) > basis)
		return 0;
	return (size_t)(basis + (uint64_t)(int64_t)d);
}

static size_t pick_len(struct run *r)
{
	uint64_t len;
	if (r->pp->faster) {
		uint8_t c = fz_u8(r->in);
		if (c >= 0xe0)
			len = cap_relative(r);
		else
			len = fast_lens[c % (sizeof(fast_lens) / sizeof(fast_lens[0]))];
		return clamp_len(r, len, 65536u + 256u);
	}
	switch (fz_u8(r->in) & 3u) {
	case 0:
		len = fz_u8(r->in);
		break;
	case 1:
		len = fz_u16(r->in);
		break;
	case 2:
		len = (fz_u16(r->in) | ((uint64_t)fz_u8(r->in) << 16)) % (SLOW_MAX_MSG + 1u);
		break;
	default:
		len = cap_relative(r);
		break;
	}
	return clamp_len(r, len, SLOW_MAX_MSG);
}

static unsigned pick_hold(struct run *r)
{
	if (r->pp->faster)
		return fast_holds[fz_u8(r->in) % (sizeof(fast_holds) / sizeof(fast_holds[0]))];
	return fz_u16(r->in) % 1001u;
}

/* Check a failed get_writable()/write() against the policy. */
static void check_write_error(struct run *r, int err, size_t need, bool was_quiescent)
{
	const struct pool_fuzz_params *pp = r->pp;
	switch (pp->policy) {
	case SV2SHM_POOL_FALLBACK:
		FZ_CHECK(0, "FALLBACK pool refused %zu bytes: %d (%s)", need, err, sv2shm_strerror(err));
		break;
	case SV2SHM_POOL_FAIL:
	case SV2SHM_POOL_WAIT: {
		int busy = pp->policy == SV2SHM_POOL_FAIL ? -EAGAIN : -ETIMEDOUT;
		FZ_CHECK(err == busy || err == -EMSGSIZE, "policy %d: get_writable(%zu) failed with %d (%s)",
			 pp->policy, need, err, sv2shm_strerror(err));
		FZ_CHECK((err == -EMSGSIZE) == (need > pp->capacity),
			 "policy %d: %zu bytes in a pool of %llu failed with %d (%s)", pp->policy, need,
			 (unsigned long long)pp->capacity, err, sv2shm_strerror(err));
		FZ_CHECK(!(err == busy && was_quiescent),
			 "an empty pool (capacity %llu, %u slots) refused a %zu-byte message: %d (%s)",
			 (unsigned long long)pp->capacity, pp->slots, need, err, sv2shm_strerror(err));
		break;
	}
	default:
		FZ_CHECK(0, "policy");
	}
}

/* Write message r->seq; returns its length (what was written). */
static size_t write_message(struct run *r, size_t len, unsigned nchunks, bool use_write, bool was_quiescent)
{
	struct sv2shm_buffer *b = r->b;
	size_t pos = 0;
	for (unsigned c = 0; c < nchunks; c++) {
		size_t chunk = c + 1 == nchunks ? len - pos : (size_t)fz_range(r->in, 0, len - pos);
		size_t need = pos + chunk;
		if (use_write && chunk <= 4096) {
			uint8_t tmp[4096];
			fz_pattern_fill(tmp, r->seq, pos, chunk);
			ssize_t w = (c & 1u) ? (ssize_t)sv2shm_buffer_write_all(b, tmp, chunk)
					     : sv2shm_buffer_write(b, tmp, chunk);
			if ((c & 1u) && w == 0)
				w = (ssize_t)chunk;
			if (w < 0) {
				check_write_error(r, (int)w, need, was_quiescent);
				FZ_CHECK(sv2shm_buffer_len(b) == pos, "a failed write changed len() %zu -> %zu", pos,
					 sv2shm_buffer_len(b));
				return pos;
			}
			FZ_CHECK((size_t)w == chunk, "write took %zd of %zu bytes", w, chunk);
		} else {
			uint8_t *w = sv2shm_buffer_get_writable(b, chunk);
			if (!w) {
				FZ_CHECK(chunk > 0, "get_writable(0) failed");
				check_write_error(r, sv2shm_buffer_last_error(b), need, was_quiescent);
				FZ_CHECK(sv2shm_buffer_len(b) == pos, "a failed get_writable changed len() %zu -> %zu",
					 pos, sv2shm_buffer_len(b));
				return pos;
			}
			fz_pattern_fill(w, r->seq, pos, chunk);
		}
		pos = need;
		FZ_CHECK(sv2shm_buffer_len(b) == pos, "len() %zu after writing %zu bytes", sv2shm_buffer_len(b), pos);
	}
	return pos;
}

/* Write one message and take it: returns false when no slice resulted. */
static void do_message(struct run *r, bool keep)
{
	struct fz *in = r->in;
	size_t len = pick_len(r);
	unsigned nchunks = 1u + fz_u8(in) % (r->pp->faster ? 3u : 8u);
	uint8_t flags = fz_u8(in);
	unsigned hold = keep ? 0 : pick_hold(r);
	unsigned wi = keep ? 0 : fz_u8(in) % NWORKERS;
	uint64_t idx0 = (flags & 2u) ? fz_range(in, 0, len) : 0;
	size_t ref_ask = (flags & 4u) ? (size_t)fz_range(in, 0, len + 1u) : 0;

	r->seq++;
	bool was_quiescent = quiescent(r);
	/* An EMPTY take keeps the slice being written where it is: after one in
	 * ALLOC mode the next message continues in that system block. */
	bool may_continue_system = r->system_kept;
	size_t total = write_message(r, len, nchunks, flags & 1u, was_quiescent);
	struct sv2shm_buffer *b = r->b;

	if (idx0 > total)
		idx0 = total;
	if (flags & 2u)
		FZ_CHECK(sv2shm_buffer_danger_set_start(b, (size_t)idx0) == 0, "danger_set_start(%llu) of %zu",
			 (unsigned long long)idx0, total);
	if (flags & 8u)
		FZ_CHECK(sv2shm_buffer_danger_set_start(b, total + 1u) == -EINVAL,
			 "danger_set_start past len() accepted");
	if (flags & 4u) {
		size_t vl = SIZE_MAX;
		const uint8_t *v = sv2shm_buffer_get_data_by_ref(b, ref_ask, &vl);
		size_t want = ref_ask < total - idx0 ? ref_ask : total - (size_t)idx0;
		FZ_CHECK(v != NULL && vl == want, "get_data_by_ref(%zu) gave %zu bytes, expected %zu", ref_ask, vl,
			 want);
		long bad = fz_pattern_check(v, r->seq, idx0, vl);
		FZ_CHECK(bad < 0, "get_data_by_ref differs at %ld", bad);
	}

	struct sv2shm_slice s;
	memset(&s, 0xa5, sizeof(s));
	FZ_CHECK(sv2shm_buffer_get_data_owned(b, &s) == 0, "get_data_owned");
	FZ_CHECK(sv2shm_buffer_len(b) == 0, "len() %zu after get_data_owned", sv2shm_buffer_len(b));
	size_t slen = total - (size_t)idx0;
	int kind = sv2shm_slice_kind(&s);
	int mode = sv2shm_pool_mode(r->pool);
	if (slen == 0) {
		r->system_kept = r->system_kept || (total > 0 && mode == SV2SHM_MODE_ALLOC);
		FZ_CHECK(kind == SV2SHM_SLICE_EMPTY && s.len == 0, "empty take gave kind %d len %zu", kind, s.len);
		FZ_CHECK(sv2shm_slice_release(&s) == 0, "release of an EMPTY slice");
		return;
	}
	FZ_CHECK(s.len == slen && s.data != NULL, "slice of %zu bytes, expected %zu", s.len, slen);
	long bad = fz_pattern_check(s.data, r->seq, idx0, slen);
	FZ_CHECK(bad < 0, "message %llu differs at byte %ld right after get_data_owned", (unsigned long long)r->seq,
		 bad);
	r->system_kept = false;
	if (kind == SV2SHM_SLICE_POOL) {
		r->taken_pool++;
		FZ_CHECK(mode != SV2SHM_MODE_ALLOC, "a pool slice was taken in ALLOC mode");
		uint64_t off = 0, l = 0;
		FZ_CHECK(s._slot < r->pp->slots && sv2shm_pool_slot_range(r->pool, s._slot, &off, &l) == 1,
			 "new slice's slot %u not live", s._slot);
		FZ_CHECK(l == slen, "slot %u length %llu, slice %zu", s._slot, (unsigned long long)l, slen);
		if (!r->base)
			r->base = s.data - off;
		FZ_CHECK(s.data == r->base + off, "slice of slot %u at %p, slot range says base %p + %llu", s._slot,
			 (void *)s.data, (const void *)r->base, (unsigned long long)off);
	} else {
		FZ_CHECK(kind == SV2SHM_SLICE_SYSTEM, "slice kind %d", kind);
		r->taken_system++;
		FZ_CHECK(mode == SV2SHM_MODE_ALLOC, "a system slice was taken in %s", sv2shm_pool_mode_name(mode));
		FZ_CHECK(!(was_quiescent && total <= r->pp->capacity && !may_continue_system),
			 "an empty pool (capacity %llu, %u slots) sent a %zu-byte message to system memory",
			 (unsigned long long)r->pp->capacity, r->pp->slots, total);
	}

	if (keep && r->nkept < MAX_LOCAL) {
		r->kept[r->nkept++] = (struct kept){s, r->seq, idx0, slen};
		return;
	}
	if (keep) {
		FZ_CHECK(sv2shm_slice_release(&s) == 0, "release");
		return;
	}
	if (atomic_load_explicit(&w_outstanding, memory_order_seq_cst) >= MAX_OUTSTANDING)
		workers_drain();
	struct item it = {.s = s, .seq = r->seq, .idx0 = idx0, .len = slen};
	it.deadline = fz_now_ns() + (uint64_t)hold * 1000u;
	if (kind == SV2SHM_SLICE_POOL)
		r->w_issued++;
	worker_push(wi, &it);
}

static void release_kept(struct run *r, unsigned i)
{
	struct kept k = r->kept[i];
	memmove(&r->kept[i], &r->kept[i + 1], (r->nkept - i - 1u) * sizeof(r->kept[0]));
	r->nkept--;
	long bad = fz_pattern_check(k.s.data, k.seq, k.idx0, k.len);
	FZ_CHECK(bad < 0, "kept message %llu (kind %d) differs at byte %ld before its release",
		 (unsigned long long)k.seq, sv2shm_slice_kind(&k.s), bad);
	struct sv2shm_slice copy = k.s;
	bool pool = sv2shm_slice_kind(&k.s) == SV2SHM_SLICE_POOL;
	int rc = sv2shm_slice_release(&k.s);
	FZ_CHECK(rc == 0, "release of a kept slice: %d (%s)", rc, sv2shm_strerror(rc));
	FZ_CHECK(sv2shm_slice_kind(&k.s) == SV2SHM_SLICE_NONE, "released slice not cleared");
	rc = sv2shm_slice_release(&k.s);
	FZ_CHECK(rc == -EALREADY, "second release of the cleared slice: %d", rc);
	if (pool) {
		r->copies[r->copy_next] = copy;
		r->copy_next = (r->copy_next + 1u) % MAX_COPIES;
		if (r->ncopies < MAX_COPIES)
			r->ncopies++;
	}
}

static void release_copy(struct run *r, unsigned j)
{
	struct sv2shm_slice c = r->copies[j % r->ncopies];
	int rc = sv2shm_slice_release(&c);
	FZ_CHECK(rc == -EALREADY || rc == -ESTALE, "release of a released copy (slot %u gen %u): %d (%s)", c._slot,
		 c._gen, rc, sv2shm_strerror(rc));
	r->refused++;
}

void pool_fuzz_run(const struct pool_fuzz_params *pp, struct fz *in)
{
	pthread_once(&workers_once, workers_start);
	workers_drain();

	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	o.capacity = pp->capacity;
	o.slots = pp->slots;
	o.policy = pp->policy;
	o.wait_timeout_ms = pp->wait_timeout_ms;
	struct run *r = calloc(1, sizeof(*r));
	FZ_CHECK(r != NULL, "calloc");
	r->pp = pp;
	r->in = in;
	const char *env = getenv("SV2SHM_FUZZ_VERBOSE");
	r->verbose = env && *env == '1';
	if (r->verbose)
		fprintf(stderr, "pool: capacity %llu, %u slots, policy %d, wait %d ms\n", (unsigned long long)pp->capacity,
			pp->slots, pp->policy, pp->wait_timeout_ms);
	int rc = sv2shm_pool_new(&o, &r->pool);
	FZ_CHECK(rc == 0, "pool_new(capacity %llu, %u slots, policy %d): %d (%s)", (unsigned long long)pp->capacity,
		 pp->slots, pp->policy, rc, sv2shm_strerror(rc));
	r->b = sv2shm_pool_buffer(r->pool);
	FZ_CHECK(sv2shm_pool_from_buffer(r->b) == r->pool, "pool_from_buffer");
	r->all = pp->slots == 64 ? ~UINT64_C(0) : (UINT64_C(1) << pp->slots) - 1u;
	r->last_mode = SV2SHM_MODE_BACK;
	r->w_issued = atomic_load_explicit(&w_rel_done, memory_order_seq_cst);
	r->bytes_left = pp->faster ? (UINT64_C(1) << 20) : (UINT64_C(4) << 20);
	r->deadline = fz_now_ns() + BUDGET_NS;
	FZ_CHECK(sv2shm_pool_mode(r->pool) == SV2SHM_MODE_BACK, "a new pool is not in BACK mode");
	check_invariants(r, "pool_new");

	unsigned max_ops = pp->faster ? 256u : 1024u;
	for (unsigned op = 0; op < max_ops && !fz_empty(in) && fz_now_ns() < r->deadline; op++) {
		uint8_t c = fz_u8(in);
		const char *step;
		switch (c % 16u) {
		default: /* 0..6 */
			do_message(r, false);
			step = "MSG";
			break;
		case 7:
		case 8:
			do_message(r, true);
			step = "KEEP";
			break;
		case 9:
		case 10:
			if (r->nkept)
				release_kept(r, fz_u8(in) % r->nkept);
			step = "RELEASE";
			break;
		case 11:
			workers_drain();
			step = "DRAIN";
			break;
		case 12: {
			struct sv2shm_slice s;
			FZ_CHECK(sv2shm_buffer_get_data_owned(r->b, &s) == 0, "get_data_owned");
			FZ_CHECK(sv2shm_slice_kind(&s) == SV2SHM_SLICE_EMPTY && s.len == 0, "EMPTY take: kind %d",
				 sv2shm_slice_kind(&s));
			FZ_CHECK(sv2shm_slice_release(&s) == 0, "release EMPTY");
			step = "EMPTY";
			break;
		}
		case 13:
			if (r->ncopies)
				release_copy(r, fz_u8(in));
			step = "STALE";
			break;
		case 14:
			if (kept_pool(r, NULL)) {
				FZ_CHECK(!sv2shm_buffer_is_droppable(r->b), "is_droppable with slices kept");
				rc = sv2shm_pool_destroy(r->pool);
				FZ_CHECK(rc == -EBUSY, "pool_destroy with live slices returned %d", rc);
			}
			step = "DESTROY";
			break;
		case 15: {
			/* Release all kept slices, oldest or newest first (the seed's diagrams). */
			bool newest = fz_bool(in);
			while (r->nkept)
				release_kept(r, newest ? r->nkept - 1u : 0);
			step = "RELEASE ALL";
			break;
		}
		}
		check_invariants(r, step);
	}

	while (r->nkept)
		release_kept(r, 0);
	workers_drain();
	check_invariants(r, "the end");
	struct sv2shm_pool_stats st;
	sv2shm_pool_stats(r->pool, &st);
	FZ_CHECK(st.mask == 0 && st.live == 0, "mask %#llx after every slice was released",
		 (unsigned long long)st.mask);
	FZ_CHECK(sv2shm_buffer_is_droppable(r->b), "not droppable after every slice was released");
	rc = sv2shm_pool_destroy(r->pool);
	FZ_CHECK(rc == 0, "pool_destroy at the end: %d (%s)", rc, sv2shm_strerror(rc));
	free(r);
}
