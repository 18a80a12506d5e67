/*
 * Multithreaded release (the seed crate's fuzz property): slices written by
 * one producer keep exactly their bytes while other threads hold them for a
 * random time, and are released there; the producer reuses the freed slots.
 *
 *   fanout_*        the producer (this thread) writes 20 000 slices of random
 *                   sizes, in one or several get_writable() calls, with bytes
 *                   derived from a sequence number, and hands each to one of
 *                   2-4 workers through small mutex+condvar queues; a worker
 *                   holds it 0..200 us, checks every byte and releases it.
 *   pingpong_reuse  one slice at a time goes to a worker and is released
 *                   there before the next is written: every slice must come
 *                   from the pool (releases on another thread are seen).
 *   release_race    two threads release copies of the same slice at once:
 *                   exactly one succeeds, the other gets -EALREADY/-ESTALE,
 *                   the mask stays consistent; meanwhile the producer
 *                   writes new slices that may reuse the slot at once, and
 *                   the losing (stale) release must never free those.
 *
 * Runs under ThreadSanitizer in CI (suite 'threads').
 *
 * Environment: SV2SHM_THREADS_SLICES overrides the 20 000 slices per fan-out
 * run; SV2SHM_THREADS_ROUNDS the release race rounds.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <sv2shm/sv2shm.h>

#define QCAP 16u

/* --- PRNG and message bytes ---------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static size_t rnd_range(uint64_t *s, size_t lo, size_t hi)
{
	return lo + (size_t)(splitmix64(s) % (uint64_t)(hi - lo + 1u));
}

/* Byte i of message `seq`: a stream seeded by the sequence number. */
static void gen_message(uint64_t seq, uint8_t *dst, size_t n)
{
	uint64_t s = (seq + 1u) * UINT64_C(0xd6e8feb86659fd93);
	size_t i = 0;
	while (i < n) {
		uint64_t x = splitmix64(&s);
		for (unsigned j = 0; j < 8 && i < n; j++, i++)
			dst[i] = (uint8_t)(x >> (8u * j));
	}
}

/* Check slice bytes against message `seq` without a copy; returns the index
 * of the first differing byte, or n when all match. */
static size_t check_message(uint64_t seq, const uint8_t *p, size_t n)
{
	uint64_t s = (seq + 1u) * UINT64_C(0xd6e8feb86659fd93);
	size_t i = 0;
	while (i < n) {
		uint64_t x = splitmix64(&s);
		for (unsigned j = 0; j < 8 && i < n; j++, i++)
			if (p[i] != (uint8_t)(x >> (8u * j)))
				return i;
	}
	return n;
}

static void sleep_us(unsigned us)
{
	if (!us)
		return;
	struct timespec ts = {0, (long)us * 1000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static unsigned env_uint(const char *name, unsigned def)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	unsigned long x = strtoul(v, NULL, 0);
	return x ? (unsigned)x : def;
}

/* --- a small blocking queue ------------------------------------------------ */

struct item {
	struct sv2shm_slice s;
	uint64_t seq;
	size_t len;
	bool stop;
};

struct queue {
	pthread_mutex_t mu;
	pthread_cond_t not_empty, not_full;
	struct item items[QCAP];
	unsigned head, count, depth;
};

static void queue_init(struct queue *q, unsigned depth)
{
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->not_empty, NULL);
	pthread_cond_init(&q->not_full, NULL);
	q->head = q->count = 0;
	q->depth = depth < 1 ? 1 : depth > QCAP ? QCAP : depth;
}

static void queue_fini(struct queue *q)
{
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->not_empty);
	pthread_cond_destroy(&q->not_full);
}

static void queue_push(struct queue *q, const struct item *it)
{
	pthread_mutex_lock(&q->mu);
	while (q->count == q->depth)
		pthread_cond_wait(&q->not_full, &q->mu);
	q->items[(q->head + q->count) % QCAP] = *it;
	q->count++;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->mu);
}

static void queue_pop(struct queue *q, struct item *it)
{
	pthread_mutex_lock(&q->mu);
	while (q->count == 0)
		pthread_cond_wait(&q->not_empty, &q->mu);
	*it = q->items[q->head];
	q->head = (q->head + 1) % QCAP;
	q->count--;
	pthread_cond_signal(&q->not_full);
	pthread_mutex_unlock(&q->mu);
}

/* --- workers --------------------------------------------------------------- */

struct worker {
	pthread_t th;
	struct queue q;
	uint64_t rng;
	unsigned max_delay_us;
	/* results (read after join) */
	uint64_t verified, mismatched, release_errors, pool_slices, system_slices;
	uint64_t first_bad_seq;
	size_t first_bad_byte;
	int first_release_error;
	/* ping-pong acknowledgement */
	pthread_mutex_t ack_mu;
	pthread_cond_t ack_cv;
	uint64_t acked;
	bool ack;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (;;) {
		struct item it;
		queue_pop(&w->q, &it);
		if (it.stop)
			break;
		sleep_us((unsigned)rnd_range(&w->rng, 0, w->max_delay_us));
		int kind = sv2shm_slice_kind(&it.s);
		if (kind == SV2SHM_SLICE_POOL)
			w->pool_slices++;
		else if (kind == SV2SHM_SLICE_SYSTEM)
			w->system_slices++;
		size_t bad = it.s.len == it.len ? check_message(it.seq, it.s.data, it.len) : 0;
		if (it.s.len != it.len || bad != it.len) {
			if (!w->mismatched) {
				w->first_bad_seq = it.seq;
				w->first_bad_byte = bad;
			}
			w->mismatched++;
		} else {
			w->verified++;
		}
		int r = sv2shm_slice_release(&it.s);
		if (r != 0) {
			if (!w->release_errors)
				w->first_release_error = r;
			w->release_errors++;
		}
		if (w->ack) {
			pthread_mutex_lock(&w->ack_mu);
			w->acked++;
			pthread_cond_signal(&w->ack_cv);
			pthread_mutex_unlock(&w->ack_mu);
		}
	}
	return NULL;
}

/* --- fan-out ----------------------------------------------------------------- */

struct fanout_cfg {
	const char *name;
	unsigned slots;
	uint64_t capacity;
	unsigned workers;
	unsigned depth;      /* queue depth per worker */
	size_t max_size;     /* message sizes 1 .. max_size */
	unsigned slices;
	bool pingpong;       /* wait for each release before the next slice */
	double min_pool_fraction;
};

static void run_fanout(const struct fanout_cfg *cfg)
{
	struct sv2shm_pool_options o = {0};
	o.capacity = cfg->capacity;
	o.slots = cfg->slots;
	o.policy = SV2SHM_POOL_FALLBACK;
	struct sv2shm_pool *p = NULL;
	assert_int_equal(sv2shm_pool_new(&o, &p), 0);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);

	struct worker *ws = calloc(cfg->workers, sizeof(*ws));
	uint8_t *msg = malloc(cfg->max_size);
	assert_non_null(ws);
	assert_non_null(msg);
	for (unsigned i = 0; i < cfg->workers; i++) {
		queue_init(&ws[i].q, cfg->depth);
		ws[i].rng = UINT64_C(0xfeed) + i * UINT64_C(7919) + cfg->slots;
		ws[i].max_delay_us = 200;
		ws[i].ack = cfg->pingpong;
		pthread_mutex_init(&ws[i].ack_mu, NULL);
		pthread_cond_init(&ws[i].ack_cv, NULL);
		assert_int_equal(pthread_create(&ws[i].th, NULL, worker_main, &ws[i]), 0);
	}

	uint64_t rng = UINT64_C(0xabcdef) ^ cfg->slots ^ cfg->capacity;
	uint64_t producer_errors = 0, kind_pool = 0, kind_system = 0;
	int first_error = 0;
	double t0 = now_s();
	for (unsigned seq = 0; seq < cfg->slices; seq++) {
		size_t len = rnd_range(&rng, 1, cfg->max_size);
		gen_message(seq, msg, len);
		/* One call or up to three chunks. */
		size_t done = 0;
		unsigned chunks = (unsigned)rnd_range(&rng, 1, 3);
		for (unsigned c = 0; c < chunks; c++) {
			size_t n = c + 1 == chunks ? len - done : rnd_range(&rng, 0, len - done);
			uint8_t *dst = sv2shm_buffer_get_writable(b, n);
			if (!dst) {
				if (!producer_errors)
					first_error = sv2shm_buffer_last_error(b);
				producer_errors++;
				break;
			}
			memcpy(dst, msg + done, n);
			done += n;
		}
		struct item it;
		memset(&it, 0, sizeof(it));
		it.seq = seq;
		it.len = len;
		if (sv2shm_buffer_get_data_owned(b, &it.s) != 0 || done != len) {
			producer_errors++;
			continue;
		}
		int kind = sv2shm_slice_kind(&it.s);
		kind_pool += kind == SV2SHM_SLICE_POOL;
		kind_system += kind == SV2SHM_SLICE_SYSTEM;
		struct worker *w = &ws[cfg->pingpong ? seq % cfg->workers : splitmix64(&rng) % cfg->workers];
		queue_push(&w->q, &it);
		if (cfg->pingpong) {
			pthread_mutex_lock(&w->ack_mu);
			while (w->acked < seq / cfg->workers + 1u)
				pthread_cond_wait(&w->ack_cv, &w->ack_mu);
			pthread_mutex_unlock(&w->ack_mu);
		}
	}
	for (unsigned i = 0; i < cfg->workers; i++) {
		struct item stop;
		memset(&stop, 0, sizeof(stop));
		stop.stop = true;
		queue_push(&ws[i].q, &stop);
	}
	uint64_t verified = 0, mismatched = 0, rel_err = 0, wpool = 0, wsys = 0;
	for (unsigned i = 0; i < cfg->workers; i++) {
		pthread_join(ws[i].th, NULL);
		verified += ws[i].verified;
		mismatched += ws[i].mismatched;
		rel_err += ws[i].release_errors;
		wpool += ws[i].pool_slices;
		wsys += ws[i].system_slices;
		if (ws[i].mismatched)
			fprintf(stderr, "%s: worker %u: %" PRIu64 " mismatches, first seq %" PRIu64 " at byte %zu\n",
				cfg->name, i, ws[i].mismatched, ws[i].first_bad_seq, ws[i].first_bad_byte);
		if (ws[i].release_errors)
			fprintf(stderr, "%s: worker %u: %" PRIu64 " release errors, first %d (%s)\n", cfg->name, i,
				ws[i].release_errors, ws[i].first_release_error,
				sv2shm_strerror(ws[i].first_release_error));
		queue_fini(&ws[i].q);
		pthread_mutex_destroy(&ws[i].ack_mu);
		pthread_cond_destroy(&ws[i].ack_cv);
	}
	double dt = now_s() - t0;
	struct sv2shm_pool_stats st;
	assert_int_equal(sv2shm_pool_stats(p, &st), 0);
	printf("%s: N=%u capacity=%" PRIu64 " workers=%u depth=%u sizes 1..%zu: %u slices in %.2f s, verified %" PRIu64
	       ", mismatched %" PRIu64 ", from_pool %" PRIu64 " from_system %" PRIu64 " (switches %" PRIu64
	       ", resets %" PRIu64 ", moves %" PRIu64 ")\n",
	       cfg->name, cfg->slots, cfg->capacity, cfg->workers, cfg->depth, cfg->max_size, cfg->slices, dt, verified,
	       mismatched, st.from_pool, st.from_system, st.mode_switches, st.resets, st.moves);
	if (producer_errors)
		fprintf(stderr, "%s: %" PRIu64 " producer errors, first %d\n", cfg->name, producer_errors, first_error);
	fflush(stdout);

	bool droppable = sv2shm_buffer_is_droppable(b);
	uint64_t mask = st.mask;
	int destroyed = sv2shm_pool_destroy(p);
	free(ws);
	free(msg);

	assert_int_equal(producer_errors, 0);
	assert_int_equal(mismatched, 0);
	assert_int_equal(rel_err, 0);
	assert_int_equal(verified, cfg->slices);
	assert_int_equal(wpool, kind_pool);
	assert_int_equal(wsys, kind_system);
	assert_int_equal(st.from_pool + st.from_system, cfg->slices);
	assert_int_equal(st.from_pool, kind_pool);
	assert_int_equal(st.from_system, kind_system);
	assert_int_equal(mask, 0);
	assert_true(droppable);
	assert_int_equal(destroyed, 0);
	/* Released on the workers, reused by the producer. */
	assert_true(st.from_pool > (uint64_t)cfg->slots);
	assert_true((double)st.from_pool >= cfg->min_pool_fraction * cfg->slices);
}

/* N=8: at most 3 queued + 3 held + 1 being written = 7 slices, so slots
 * never run out; out-of-order releases fragment the region a little. */
static void test_fanout_n8(void **state)
{
	(void)state;
	struct fanout_cfg c = {"fanout_n8", 8, 16 * 1024, 3, 1, 1024, env_uint("SV2SHM_THREADS_SLICES", 20000), false,
			       0.5};
	run_fanout(&c);
}

/* N=64 with 4 workers, up to 36 slices in flight. */
static void test_fanout_n64(void **state)
{
	(void)state;
	struct fanout_cfg c = {"fanout_n64", 64, 64 * 1024, 4, 8, 1024, env_uint("SV2SHM_THREADS_SLICES", 20000),
			       false, 0.5};
	run_fanout(&c);
}

/* N=8 with more slices in flight than slots and a tight region: many go to
 * system memory and are freed on the workers too. */
static void test_fanout_n8_overcommitted(void **state)
{
	(void)state;
	struct fanout_cfg c = {"fanout_n8_over", 8, 4096, 4, 4, 700, env_uint("SV2SHM_THREADS_SLICES", 20000), false,
			       0.0};
	run_fanout(&c);
}

/* One slice in flight at a time: each release (on a worker) must be visible
 * to the producer's next slice, so nothing falls to system memory. */
static void test_pingpong_reuse(void **state)
{
	(void)state;
	struct fanout_cfg c = {"pingpong", 8, 4096, 2, 1, 2048, 2000, true, 1.0};
	run_fanout(&c);
}

/* --- release race ------------------------------------------------------------ */

struct racer {
	pthread_t th;
	pthread_barrier_t *bar;
	struct sv2shm_slice copy; /* written by main between rounds */
	int result;
	unsigned rounds;
	_Atomic int *go; /* spin start, to make the two releases collide */
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;
	for (unsigned i = 0; i < r->rounds; i++) {
		pthread_barrier_wait(r->bar); /* copy is ready */
		for (unsigned spin = 0; atomic_load_explicit(r->go, memory_order_acquire) != (int)i + 1; spin++)
			if (spin > 200)
				sched_yield(); /* valgrind runs one thread at a time */
		r->result = sv2shm_slice_release(&r->copy);
		pthread_barrier_wait(r->bar); /* result is ready */
	}
	return NULL;
}

static void release_race(unsigned slots, unsigned rounds)
{
	struct sv2shm_pool_options o = {0};
	o.capacity = 512;
	o.slots = slots;
	o.policy = SV2SHM_POOL_FALLBACK;
	struct sv2shm_pool *p = NULL;
	assert_int_equal(sv2shm_pool_new(&o, &p), 0);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);

	pthread_barrier_t bar;
	assert_int_equal(pthread_barrier_init(&bar, NULL, 3), 0);
	_Atomic int go = 0;
	struct racer rc[2];
	memset(rc, 0, sizeof(rc));
	for (int i = 0; i < 2; i++) {
		rc[i].bar = &bar;
		rc[i].rounds = rounds;
		rc[i].go = &go;
		assert_int_equal(pthread_create(&rc[i].th, NULL, racer_main, &rc[i]), 0);
	}

	uint64_t rng = 0x7ace + slots;
	uint64_t bad_rounds = 0, ealready = 0, estale = 0, reused_same_slot = 0, refused_expected = 0;
	uint8_t msg[64];
	struct sv2shm_slice held;
	memset(&held, 0, sizeof(held));
	uint64_t held_seq = 0;
	for (unsigned round = 0; round < rounds; round++) {
		/* Sometimes keep another slice live across the round (slots > 1). */
		if (slots > 1 && sv2shm_slice_kind(&held) == SV2SHM_SLICE_NONE && (splitmix64(&rng) & 3u) == 0) {
			held_seq = UINT64_C(1) << 40 | round;
			gen_message(held_seq, msg, 24);
			assert_int_equal(sv2shm_buffer_write_all(b, msg, 24), 0);
			assert_int_equal(sv2shm_buffer_get_data_owned(b, &held), 0);
		}
		uint64_t seq = round;
		size_t len = rnd_range(&rng, 1, sizeof(msg));
		gen_message(seq, msg, len);
		assert_int_equal(sv2shm_buffer_write_all(b, msg, len), 0);
		struct sv2shm_slice s;
		assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
		bool is_pool = sv2shm_slice_kind(&s) == SV2SHM_SLICE_POOL;
		struct sv2shm_pool_stats before;
		sv2shm_pool_stats(p, &before);
		/* Only pool slices may be released twice (a SYSTEM copy would be
		 * a double free); the kind is POOL whenever a slot was free. */
		if (!is_pool) {
			bad_rounds++;
			fprintf(stderr, "race N=%u round %u: slice not from the pool (kind %d)\n", slots, round,
				sv2shm_slice_kind(&s));
			sv2shm_slice_release(&s);
			/* keep the racers in step: give them empty slices */
			memset(&s, 0, sizeof(s));
		}
		rc[0].copy = s;
		rc[1].copy = s;
		pthread_barrier_wait(&bar);
		atomic_store_explicit(&go, (int)round + 1, memory_order_release);

		/* While they race, write a new slice: with N=1 it reuses the slot
		 * as soon as the winning release is visible, so the losing release
		 * may be stale and must not free it. */
		struct sv2shm_slice x;
		uint64_t xseq = UINT64_C(1) << 41 | round;
		size_t xlen = rnd_range(&rng, 1, sizeof(msg));
		gen_message(xseq, msg, xlen);
		assert_int_equal(sv2shm_buffer_write_all(b, msg, xlen), 0);
		assert_int_equal(sv2shm_buffer_get_data_owned(b, &x), 0);
		int xkind = sv2shm_slice_kind(&x);
		if (slots == 1 && is_pool && xkind != SV2SHM_SLICE_POOL) {
			/* The winner's release was not seen yet: drop x, wait until
			 * the slot is free, and write x again — it takes the slot
			 * while the loser's release may still be on its way. */
			assert_int_equal(sv2shm_slice_release(&x), 0);
			double deadline = now_s() + 5.0;
			struct sv2shm_pool_stats w;
			for (;;) {
				sv2shm_pool_stats(p, &w);
				if (!(w.mask & 1u) || now_s() > deadline)
					break;
				sched_yield();
			}
			assert_int_equal(sv2shm_buffer_write_all(b, msg, xlen), 0);
			assert_int_equal(sv2shm_buffer_get_data_owned(b, &x), 0);
			xkind = sv2shm_slice_kind(&x);
			if (xkind != SV2SHM_SLICE_POOL) {
				bad_rounds++;
				fprintf(stderr, "race N=1 round %u: slot free (mask 0x%" PRIx64 ") but new slice kind %d\n",
					round, w.mask, xkind);
			}
		}

		pthread_barrier_wait(&bar);
		if (is_pool) {
			int r0 = rc[0].result, r1 = rc[1].result;
			int wins = (r0 == 0) + (r1 == 0);
			int loser = r0 == 0 ? r1 : r0;
			if (wins != 1 || (loser != -EALREADY && loser != -ESTALE)) {
				bad_rounds++;
				fprintf(stderr, "race N=%u round %u: results %d and %d\n", slots, round, r0, r1);
			}
			ealready += loser == -EALREADY;
			estale += loser == -ESTALE;
			refused_expected++;
			/* The winner's copy was cleared, the loser's kept. */
		} else if (rc[0].result != -EALREADY || rc[1].result != -EALREADY) {
			bad_rounds++;
		}
		/* Mask: the held slice and x (if a pool slice) are live, nothing else. */
		struct sv2shm_pool_stats st;
		sv2shm_pool_stats(p, &st);
		unsigned expect_live = (sv2shm_slice_kind(&held) == SV2SHM_SLICE_POOL) + (xkind == SV2SHM_SLICE_POOL);
		if (st.live != expect_live || (unsigned)__builtin_popcountll(st.mask) != expect_live ||
		    st.refused_releases != refused_expected) {
			bad_rounds++;
			char map[SV2SHM_MAX_SLOTS + 1];
			sv2shm_pool_slot_map(p, map, sizeof(map));
			fprintf(stderr,
				"race N=%u round %u: live %" PRIu64 " mask 0x%" PRIx64 " map %s, expected %u live; refused %" PRIu64
				" expected %" PRIu64 "\n",
				slots, round, st.live, st.mask, map, expect_live, st.refused_releases, refused_expected);
		}
		if (is_pool && xkind == SV2SHM_SLICE_POOL && x._slot == s._slot)
			reused_same_slot++;
		/* x and held keep their bytes; release them (x must still be ours). */
		if (check_message(xseq, x.data, xlen) != xlen || x.len != xlen) {
			bad_rounds++;
			fprintf(stderr, "race N=%u round %u: new slice bytes changed\n", slots, round);
		}
		if (sv2shm_slice_release(&x) != 0) {
			bad_rounds++;
			fprintf(stderr, "race N=%u round %u: the new slice was freed by a stale release\n", slots, round);
		}
		if (sv2shm_slice_kind(&held) != SV2SHM_SLICE_NONE && (splitmix64(&rng) & 1u)) {
			if (check_message(held_seq, held.data, 24) != 24 || sv2shm_slice_release(&held) != 0) {
				bad_rounds++;
				fprintf(stderr, "race N=%u round %u: held slice damaged\n", slots, round);
			}
		}
	}
	for (int i = 0; i < 2; i++)
		pthread_join(rc[i].th, NULL);
	pthread_barrier_destroy(&bar);
	if (sv2shm_slice_kind(&held) != SV2SHM_SLICE_NONE)
		assert_int_equal(sv2shm_slice_release(&held), 0);
	struct sv2shm_pool_stats st;
	sv2shm_pool_stats(p, &st);
	printf("release race N=%u: %u rounds, losers -EALREADY %" PRIu64 " -ESTALE %" PRIu64
	       ", new slice reused the raced slot %" PRIu64 " times, bad rounds %" PRIu64 ", from_pool %" PRIu64
	       " from_system %" PRIu64 "\n",
	       slots, rounds, ealready, estale, reused_same_slot, bad_rounds, st.from_pool, st.from_system);
	fflush(stdout);
	assert_int_equal(st.mask, 0);
	assert_true(sv2shm_buffer_is_droppable(b));
	assert_int_equal(sv2shm_pool_destroy(p), 0);
	assert_int_equal(bad_rounds, 0);
	assert_int_equal(ealready + estale, rounds);
}

static void test_release_race_n1(void **state)
{
	(void)state;
	release_race(1, env_uint("SV2SHM_THREADS_ROUNDS", 3000));
}

static void test_release_race_n8(void **state)
{
	(void)state;
	release_race(8, env_uint("SV2SHM_THREADS_ROUNDS", 3000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fanout_n8),
		cmocka_unit_test(test_fanout_n64),
		cmocka_unit_test(test_fanout_n8_overcommitted),
		cmocka_unit_test(test_pingpong_reuse),
		cmocka_unit_test(test_release_race_n1),
		cmocka_unit_test(test_release_race_n8),
	};
	return cmocka_run_group_tests_name("pool_threads", tests, NULL, NULL);
}
