/*
 * The seed crate's own pool tests (buffer_sv2 src/test.rs) and the three slot
 * diagrams of its README, in C against sv2shm's pool; then what the seed does
 * not test: 64 slots, refused releases, extreme capacities, destroy while
 * busy, leaving alloc mode, slices that move while being written,
 * danger_set_start, the FAIL policy and tracing.
 *
 * Random bytes come from a fixed-seed xorshift64, so a failure reproduces.
 * Every slice a test takes is kept in a `struct live` together with a copy of
 * the bytes it must hold; live_check() re-reads every live slice, checks that
 * the pool's slot mask is exactly the set of live pool slices and that no two
 * live pool slices overlap.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sv2shm/sv2shm.h"

/* ------------------------------------------------------------------------- */
/* Helpers                                                                    */
/* ------------------------------------------------------------------------- */

static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
	rng_state = seed ? seed : UINT64_C(0x9e3779b97f4a7c15);
}

/* xorshift64 (Marsaglia). */
static uint64_t rng_next(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return x;
}

static void rng_fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(rng_next() >> 56);
}

static struct sv2shm_pool *mkpool(uint64_t capacity, unsigned slots, int policy)
{
	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	o.capacity = capacity;
	o.slots = slots;
	o.policy = policy;
	struct sv2shm_pool *p = NULL;
	assert_int_equal(sv2shm_pool_new(&o, &p), 0);
	assert_non_null(p);
	return p;
}

static void destroy_pool(struct sv2shm_pool *p)
{
	assert_int_equal(sv2shm_pool_destroy(p), 0);
}

static struct sv2shm_pool_stats stats_of(const struct sv2shm_pool *p)
{
	struct sv2shm_pool_stats st;
	memset(&st, 0, sizeof(st));
	assert_int_equal(sv2shm_pool_stats(p, &st), 0);
	return st;
}

#define LIVE_MAX 160

/* The slices a test holds, in the order the test keeps them (a deque), with
 * the bytes each one must contain. */
struct live {
	struct sv2shm_slice s[LIVE_MAX];
	uint8_t *want[LIVE_MAX];
	size_t n;
};

/* Append `want[0..len)` to the slice being written through get_writable: in
 * one call when chunk is 0, else in calls of `chunk` bytes. */
static void write_bytes(struct sv2shm_buffer *b, const uint8_t *want, size_t len, size_t chunk)
{
	size_t done = 0, before = sv2shm_buffer_len(b);
	if (chunk == 0)
		chunk = len ? len : 1;
	while (done < len) {
		size_t n = len - done < chunk ? len - done : chunk;
		uint8_t *w = sv2shm_buffer_get_writable(b, n);
		assert_non_null(w);
		memcpy(w, want + done, n);
		done += n;
		assert_int_equal(sv2shm_buffer_len(b), before + done);
	}
}

/* Insert slice s (holding want, which l takes over) at position `at`. */
static size_t live_insert(struct live *l, const struct sv2shm_slice *s, uint8_t *want, size_t at)
{
	assert_true(l->n < LIVE_MAX);
	assert_true(at <= l->n);
	memmove(&l->s[at + 1], &l->s[at], (l->n - at) * sizeof(l->s[0]));
	memmove(&l->want[at + 1], &l->want[at], (l->n - at) * sizeof(l->want[0]));
	l->s[at] = *s;
	l->want[at] = want;
	l->n++;
	return at;
}

/* Write `len` fresh random bytes (in calls of `chunk` bytes, 0: one call),
 * take them as a slice, check it and keep it at position `at` of l.
 * Returns the slice's kind. */
static int take_chunked(struct live *l, struct sv2shm_buffer *b, size_t len, size_t chunk, size_t at)
{
	uint8_t *want = malloc(len ? len : 1);
	assert_non_null(want);
	rng_fill(want, len);
	write_bytes(b, want, len, chunk);
	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(s.len, len);
	assert_int_equal(sv2shm_buffer_len(b), 0);
	if (len) {
		assert_non_null(s.data);
		assert_memory_equal(s.data, want, len);
	}
	live_insert(l, &s, want, at);
	return sv2shm_slice_kind(&s);
}

static int take_back(struct live *l, struct sv2shm_buffer *b, size_t len)
{
	return take_chunked(l, b, len, 0, l->n);
}

static int take_front(struct live *l, struct sv2shm_buffer *b, size_t len)
{
	return take_chunked(l, b, len, 0, 0);
}

static void live_release(struct live *l, size_t i)
{
	assert_true(i < l->n);
	assert_int_equal(sv2shm_slice_release(&l->s[i]), 0);
	assert_int_equal(sv2shm_slice_kind(&l->s[i]), SV2SHM_SLICE_NONE);
	free(l->want[i]);
	memmove(&l->s[i], &l->s[i + 1], (l->n - i - 1) * sizeof(l->s[0]));
	memmove(&l->want[i], &l->want[i + 1], (l->n - i - 1) * sizeof(l->want[0]));
	l->n--;
}

static void live_pop_front(struct live *l)
{
	live_release(l, 0);
}

static void live_pop_back(struct live *l)
{
	assert_true(l->n > 0);
	live_release(l, l->n - 1);
}

/* Index in l of the live pool slice in slot `slot`. */
static size_t live_find_slot(const struct live *l, unsigned slot)
{
	for (size_t i = 0; i < l->n; i++)
		if (sv2shm_slice_kind(&l->s[i]) == SV2SHM_SLICE_POOL && l->s[i]._slot == slot)
			return i;
	fail_msg("no live pool slice in slot %u", slot);
	return 0;
}

static void live_release_slot(struct live *l, unsigned slot)
{
	live_release(l, live_find_slot(l, slot));
}

static size_t live_count(const struct live *l, int kind)
{
	size_t n = 0;
	for (size_t i = 0; i < l->n; i++)
		n += sv2shm_slice_kind(&l->s[i]) == kind;
	return n;
}

/* Every live slice still holds its bytes; with a pool: the slot mask is
 * exactly the live pool slices' slots, each slot's recorded range is its
 * slice, all pool slices lie in one region of `capacity` bytes and no two
 * overlap. */
static void live_check(const struct live *l, const struct sv2shm_pool *p)
{
	uint64_t mask = 0;
	const uint8_t *base = NULL;
	for (size_t i = 0; i < l->n; i++) {
		const struct sv2shm_slice *s = &l->s[i];
		int kind = sv2shm_slice_kind(s);
		assert_true(kind == SV2SHM_SLICE_POOL || kind == SV2SHM_SLICE_SYSTEM || kind == SV2SHM_SLICE_EMPTY);
		if (s->len)
			assert_memory_equal(s->data, l->want[i], s->len);
		if (kind != SV2SHM_SLICE_POOL || !p)
			continue;
		assert_ptr_equal(s->_owner, p);
		assert_true(s->_slot < SV2SHM_MAX_SLOTS);
		assert_false(mask & (UINT64_C(1) << s->_slot)); /* one slice per slot */
		mask |= UINT64_C(1) << s->_slot;
		uint64_t off = 0, len = 0;
		assert_int_equal(sv2shm_pool_slot_range(p, s->_slot, &off, &len), 1);
		assert_int_equal(len, s->len);
		if (!base)
			base = s->data - off;
		assert_ptr_equal(s->data - off, base);
	}
	if (!p)
		return;
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.mask, mask);
	assert_int_equal(st.live, (uint64_t)__builtin_popcountll(mask));
	for (size_t i = 0; i < l->n; i++) {
		if (sv2shm_slice_kind(&l->s[i]) != SV2SHM_SLICE_POOL)
			continue;
		uint64_t oi = 0, li = 0;
		assert_int_equal(sv2shm_pool_slot_range(p, l->s[i]._slot, &oi, &li), 1);
		assert_true(oi + li <= st.capacity);
		for (size_t j = i + 1; j < l->n; j++) {
			if (sv2shm_slice_kind(&l->s[j]) != SV2SHM_SLICE_POOL)
				continue;
			uint64_t oj = 0, lj = 0;
			assert_int_equal(sv2shm_pool_slot_range(p, l->s[j]._slot, &oj, &lj), 1);
			assert_true(oi + li <= oj || oj + lj <= oi);
		}
	}
}

static void live_release_all(struct live *l)
{
	while (l->n)
		live_pop_back(l);
}

/* The slot map now. */
static void map_of(const struct sv2shm_pool *p, char *buf, size_t size)
{
	int n = sv2shm_pool_slot_map(p, buf, size);
	assert_true(n > 0);
	assert_int_equal(strlen(buf), (size_t)n);
}

/* Print the map and mode as the seed's README draws them, then assert both. */
static void step(const struct sv2shm_pool *p, const char *want_map, int want_mode)
{
	char map[SV2SHM_MAX_SLOTS + 1];
	map_of(p, map, sizeof(map));
	int mode = sv2shm_pool_mode(p);
	printf("%s  %s\n", map, sv2shm_pool_mode_name(mode));
	fflush(stdout);
	assert_string_equal(map, want_map);
	assert_int_equal(mode, want_mode);
}

/* The map with every taken slot drawn as 'x' (for 64 slots, where the names
 * of claims past the 61st are a separate question, see
 * test_slot_map_names_past_61). */
static void pattern_of(const struct sv2shm_pool *p, char *buf, size_t size)
{
	map_of(p, buf, size);
	for (char *c = buf; *c; c++)
		if (*c != '-')
			*c = 'x';
}

static void step64(const struct sv2shm_pool *p, const char *want_pattern, int want_mode, bool print)
{
	char map[SV2SHM_MAX_SLOTS + 1], pat[SV2SHM_MAX_SLOTS + 1];
	map_of(p, map, sizeof(map));
	pattern_of(p, pat, sizeof(pat));
	int mode = sv2shm_pool_mode(p);
	if (print) {
		printf("%s  %s\n", map, sv2shm_pool_mode_name(mode));
		fflush(stdout);
	}
	assert_string_equal(pat, want_pattern);
	assert_int_equal(mode, want_mode);
}

/* The name the slot map gives the n-th claim, n = 1..61. */
static char claim_name(unsigned n)
{
	static const char names[] = "123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	assert_true(n >= 1 && n <= 61);
	return names[n - 1];
}

/* Pattern of 64 slots: taken[i] ? 'x' : '-'. */
static void pattern64(char out[SV2SHM_MAX_SLOTS + 1], unsigned first_taken, unsigned end_taken)
{
	for (unsigned i = 0; i < SV2SHM_MAX_SLOTS; i++)
		out[i] = (i >= first_taken && i < end_taken) ? 'x' : '-';
	out[SV2SHM_MAX_SLOTS] = '\0';
}

static void slot_at(const struct sv2shm_pool *p, unsigned slot, uint64_t want_off, uint64_t want_len)
{
	uint64_t off = 0, len = 0;
	assert_int_equal(sv2shm_pool_slot_range(p, slot, &off, &len), 1);
	assert_int_equal(off, want_off);
	assert_int_equal(len, want_len);
}

/* ------------------------------------------------------------------------- */
/* The seed's test.rs                                                         */
/* ------------------------------------------------------------------------- */

/* pool_capicity_without_alloc: 8 slices of 5 bytes in 8*5 bytes, FAIL
 * policy: all fit in the pool. */
static void test_pool_capacity_without_alloc(void **state)
{
	(void)state;
	rng_seed(1);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FAIL);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	for (unsigned i = 0; i < 8; i++) {
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
		assert_int_equal(l.s[i]._slot, i);
		slot_at(p, i, 5u * i, 5);
		live_check(&l, p);
	}
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.from_pool, 8);
	assert_int_equal(st.from_system, 0);
	assert_int_equal(st.mask, 0xffu);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_BACK);
	assert_false(sv2shm_buffer_is_droppable(b));
	live_release_all(&l);
	assert_true(sv2shm_buffer_is_droppable(b));
	destroy_pool(p);
}

/* it_drop: 100 times write 5 bytes, take, drop, in a 40-byte FAIL pool. */
static void test_it_drop(void **state)
{
	(void)state;
	rng_seed(2);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FAIL);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	for (unsigned i = 0; i < 100; i++) {
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
		/* Every slot is free each time: the pool restarts at 0, slot 0. */
		assert_int_equal(l.s[0]._slot, 0);
		slot_at(p, 0, 0, 5);
		live_check(&l, p);
		live_pop_front(&l);
		assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_BACK);
	}
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.from_pool, 100);
	assert_int_equal(st.from_system, 0);
	assert_int_equal(st.resets, 99);
	assert_int_equal(st.mask, 0);
	assert_int_equal(st.refused_releases, 0);
	destroy_pool(p);
}

/* alloc_more_than_pool_capacity: 18 live slices of 5 bytes in a 40-byte
 * FALLBACK pool: 8 from the pool, 10 from system memory. */
static void test_alloc_more_than_pool_capacity(void **state)
{
	(void)state;
	rng_seed(3);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	for (unsigned i = 0; i < 18; i++) {
		int kind = take_back(&l, b, 5);
		assert_int_equal(kind, i < 8 ? SV2SHM_SLICE_POOL : SV2SHM_SLICE_SYSTEM);
		assert_int_equal(sv2shm_pool_mode(p), i < 8 ? SV2SHM_MODE_BACK : SV2SHM_MODE_ALLOC);
		live_check(&l, p);
	}
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.from_pool, 8);
	assert_int_equal(st.from_system, 10);
	assert_int_equal(st.live, 8);
	assert_int_equal(live_count(&l, SV2SHM_SLICE_POOL), 8);
	assert_int_equal(live_count(&l, SV2SHM_SLICE_SYSTEM), 10);
	char map[16];
	map_of(p, map, sizeof(map));
	assert_string_equal(map, "12345678");
	live_release_all(&l);
	destroy_pool(p);
}

/* alloc_more_than_pool_capacity_2 (should_panic in the seed): with the FAIL
 * policy the 9th get_writable fails with -EAGAIN and changes nothing. */
static void test_alloc_more_than_pool_capacity_fail(void **state)
{
	(void)state;
	rng_seed(4);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FAIL);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	assert_int_equal(sv2shm_buffer_last_error(b), 0);
	assert_null(sv2shm_buffer_get_writable(b, 5));
	assert_int_equal(sv2shm_buffer_last_error(b), -EAGAIN);
	assert_int_equal(sv2shm_buffer_len(b), 0);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_BACK); /* never ALLOC with FAIL */
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.from_pool, 8);
	assert_int_equal(st.from_system, 0);
	char map[16];
	map_of(p, map, sizeof(map));
	assert_string_equal(map, "12345678");
	/* write_all reports the same error. */
	uint8_t x[5] = {1, 2, 3, 4, 5};
	assert_int_equal(sv2shm_buffer_write_all(b, x, sizeof(x)), -EAGAIN);
	live_check(&l, p);
	/* Nothing was written: taking gives an EMPTY slice. */
	struct sv2shm_slice e;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &e), 0);
	assert_int_equal(sv2shm_slice_kind(&e), SV2SHM_SLICE_EMPTY);
	assert_int_equal(e.len, 0);
	assert_int_equal(sv2shm_slice_release(&e), 0);
	/* A freed slot makes room again. */
	live_pop_back(&l);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	live_check(&l, p);
	live_release_all(&l);
	destroy_pool(p);
}

/* alloc_more_than_byte_capacity: capacity 1, 18 slices of 5 bytes all come
 * from system memory; alloc_more_than_byte_capacity_2: with FAIL, -EMSGSIZE. */
static void test_alloc_more_than_byte_capacity(void **state)
{
	(void)state;
	rng_seed(5);
	struct sv2shm_pool *p = mkpool(1, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	for (unsigned i = 0; i < 18; i++) {
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_SYSTEM);
		assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_ALLOC);
	}
	live_check(&l, p);
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.from_pool, 0);
	assert_int_equal(st.from_system, 18);
	assert_int_equal(st.mask, 0);
	char map[16];
	map_of(p, map, sizeof(map));
	assert_string_equal(map, "--------");
	live_release_all(&l);
	destroy_pool(p);

	/* With FAIL a 5-byte slice can never fit 1 byte: -EMSGSIZE (not
	 * -EAGAIN, no release would help). A 1-byte slice fits, and a second
	 * one while the first is live is a full pool: -EAGAIN. */
	p = mkpool(1, 8, SV2SHM_POOL_FAIL);
	b = sv2shm_pool_buffer(p);
	assert_null(sv2shm_buffer_get_writable(b, 5));
	assert_int_equal(sv2shm_buffer_last_error(b), -EMSGSIZE);
	assert_int_equal(sv2shm_buffer_len(b), 0);
	assert_int_equal(take_back(&l, b, 1), SV2SHM_SLICE_POOL);
	assert_null(sv2shm_buffer_get_writable(b, 1));
	assert_int_equal(sv2shm_buffer_last_error(b), -EAGAIN);
	live_check(&l, p);
	live_release_all(&l);
	assert_int_equal(take_back(&l, b, 1), SV2SHM_SLICE_POOL);
	live_release_all(&l);
	destroy_pool(p);
}

/* back_front_back: 8 back slices; drop the first 3; 3 front slices (FRONT
 * mode each time); drop the last 3 back slices; 3 more go to the back. */
static void test_back_front_back(void **state)
{
	(void)state;
	rng_seed(6);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FAIL);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	for (unsigned i = 0; i < 8; i++) {
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
		assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_BACK);
	}
	live_pop_front(&l);
	live_pop_front(&l);
	live_pop_front(&l);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(take_front(&l, b, 5), SV2SHM_SLICE_POOL);
		assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_FRONT);
		assert_int_equal(l.s[0]._slot, i);
		slot_at(p, i, 5u * i, 5);
		live_check(&l, p);
	}
	char map[16];
	map_of(p, map, sizeof(map));
	assert_string_equal(map, "9ab45678");
	live_pop_back(&l);
	live_pop_back(&l);
	live_pop_back(&l);
	map_of(p, map, sizeof(map));
	assert_string_equal(map, "9ab45---");
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
		assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_BACK);
		assert_int_equal(l.s[l.n - 1]._slot, 5 + i);
		slot_at(p, 5 + i, 25 + 5u * i, 5);
		live_check(&l, p);
	}
	map_of(p, map, sizeof(map));
	assert_string_equal(map, "9ab45cde");
	assert_int_equal(stats_of(p).from_system, 0);
	live_release_all(&l);
	destroy_pool(p);
}

/* back_front_alloc: as above but FALLBACK, then 30 more slices: the pool is
 * full in both runs, so they go to system memory (no longer FRONT mode). */
static void test_back_front_alloc(void **state)
{
	(void)state;
	rng_seed(7);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	live_pop_front(&l);
	live_pop_front(&l);
	live_pop_front(&l);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(take_front(&l, b, 5), SV2SHM_SLICE_POOL);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_FRONT);
	for (unsigned i = 0; i < 30; i++)
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_SYSTEM);
	assert_int_not_equal(sv2shm_pool_mode(p), SV2SHM_MODE_FRONT);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_ALLOC);
	live_check(&l, p);
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.from_pool, 11);
	assert_int_equal(st.from_system, 30);
	char map[16];
	map_of(p, map, sizeof(map));
	assert_string_equal(map, "9ab45678");
	live_release_all(&l);
	destroy_pool(p);
}

/* back_alloc_back: 8 back, 30 alloc (kept at the front of the deque), drop
 * the last 3 pool slices: the next 3 go back to the pool in BACK mode. */
static void test_back_alloc_back(void **state)
{
	(void)state;
	rng_seed(8);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	for (unsigned i = 0; i < 30; i++)
		assert_int_equal(take_front(&l, b, 5), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_ALLOC);
	live_pop_back(&l);
	live_pop_back(&l);
	live_pop_back(&l);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
		assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_BACK);
		slot_at(p, 5 + i, 25 + 5u * i, 5);
	}
	live_check(&l, p);
	char map[16];
	map_of(p, map, sizeof(map));
	assert_string_equal(map, "123459ab");
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.from_pool, 11);
	assert_int_equal(st.from_system, 30);
	live_release_all(&l);
	destroy_pool(p);
}

/* back_alloc_front: 8 back, 30 alloc, drop the first 3 pool slices: the
 * next 3 go to the front of the region in FRONT mode. */
static void test_back_alloc_front(void **state)
{
	(void)state;
	rng_seed(9);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	for (unsigned i = 0; i < 30; i++)
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_SYSTEM);
	live_pop_front(&l);
	live_pop_front(&l);
	live_pop_front(&l);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
		assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_FRONT);
		slot_at(p, i, 5u * i, 5);
	}
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_FRONT);
	live_check(&l, p);
	char map[16];
	map_of(p, map, sizeof(map));
	assert_string_equal(map, "9ab45678");
	live_release_all(&l);
	destroy_pool(p);
}

/* Variable sizes (the seed's variable_sized_messages example, harder):
 * messages of 1..600 bytes written in random chunks, up to 8 kept live and
 * released in random order; every live slice is re-checked at each step. */
static void test_variable_sizes(void **state)
{
	(void)state;
	rng_seed(10);
	struct sv2shm_pool *p = mkpool(4096, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	bool seen[3] = {false, false, false};
	const unsigned rounds = 3000;
	for (unsigned i = 0; i < rounds; i++) {
		size_t len = 1 + (size_t)(rng_next() % 600);
		size_t chunk = 1 + (size_t)(rng_next() % len);
		take_chunked(&l, b, len, chunk, l.n);
		int mode = sv2shm_pool_mode(p);
		assert_true(mode >= 0 && mode <= 2);
		seen[mode] = true;
		/* A slice served in BACK or FRONT mode comes from the pool. */
		if (mode != SV2SHM_MODE_ALLOC)
			assert_int_equal(sv2shm_slice_kind(&l.s[l.n - 1]), SV2SHM_SLICE_POOL);
		else
			assert_int_equal(sv2shm_slice_kind(&l.s[l.n - 1]), SV2SHM_SLICE_SYSTEM);
		size_t keep = (size_t)(rng_next() % 9);
		while (l.n > keep)
			live_release(&l, (size_t)(rng_next() % l.n));
		live_check(&l, p);
	}
	struct sv2shm_pool_stats st = stats_of(p);
	printf("variable sizes: from_pool %llu from_system %llu moves %llu resets %llu switches %llu\n",
	       (unsigned long long)st.from_pool, (unsigned long long)st.from_system, (unsigned long long)st.moves,
	       (unsigned long long)st.resets, (unsigned long long)st.mode_switches);
	assert_int_equal(st.from_pool + st.from_system, rounds);
	assert_true(st.from_pool > rounds / 2);
	assert_true(seen[SV2SHM_MODE_BACK]);
	assert_true(seen[SV2SHM_MODE_FRONT]);
	/* With this seed some slices outgrow their place and some the pool. */
	assert_true(seen[SV2SHM_MODE_ALLOC]);
	assert_true(st.from_system > 0);
	assert_true(st.moves > 0);
	assert_true(st.resets > 0);
	live_release_all(&l);
	assert_int_equal(stats_of(p).mask, 0);
	destroy_pool(p);
}

/* ------------------------------------------------------------------------- */
/* The README's three diagrams, N = 8, capacity 8*5, slices of 5 bytes        */
/* ------------------------------------------------------------------------- */

static const char *const fill8[9] = {
	"--------", "1-------", "12------", "123-----", "1234----",
	"12345---", "123456--", "1234567-", "12345678",
};

static void fill_eight(struct sv2shm_pool *p, struct live *l)
{
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	step(p, fill8[0], SV2SHM_MODE_BACK);
	for (unsigned i = 1; i <= 8; i++) {
		assert_int_equal(take_back(l, b, 5), SV2SHM_SLICE_POOL);
		step(p, fill8[i], SV2SHM_MODE_BACK);
		live_check(l, p);
	}
}

/* Case 1: buffer pool exhaustion. */
static void test_readme_case1_exhaustion(void **state)
{
	(void)state;
	rng_seed(11);
	printf("Case 1: Buffer pool exhaustion\n");
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	fill_eight(p, &l);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_SYSTEM);
		step(p, "12345678", SV2SHM_MODE_ALLOC);
		live_check(&l, p);
	}
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.from_pool, 8);
	assert_int_equal(st.from_system, 3);
	live_release_all(&l);
	destroy_pool(p);
}

/* Case 2: buffer pool reset to remain in back mode. */
static void test_readme_case2_reset(void **state)
{
	(void)state;
	rng_seed(12);
	printf("Case 2: Buffer pool reset to remain in back mode\n");
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	fill_eight(p, &l);
	live_release_all(&l);
	step(p, "--------", SV2SHM_MODE_BACK);
	assert_int_equal(stats_of(p).resets, 0);
	assert_true(sv2shm_buffer_is_droppable(b));
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	step(p, "9-------", SV2SHM_MODE_BACK);
	assert_int_equal(stats_of(p).resets, 1);
	slot_at(p, 0, 0, 5); /* restarted at offset 0 */
	live_check(&l, p);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	step(p, "9a------", SV2SHM_MODE_BACK);
	slot_at(p, 1, 5, 5);
	live_check(&l, p);
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.resets, 1);
	assert_int_equal(st.from_pool, 10);
	assert_int_equal(st.from_system, 0);
	assert_int_equal(st.mode_switches, 0);
	live_release_all(&l);
	destroy_pool(p);
}

/* Case 3: back -> front -> back. Like the crate (unlike the README's
 * drawing) the first front slice takes slot 1. */
static void test_readme_case3_back_front_back(void **state)
{
	(void)state;
	rng_seed(13);
	printf("Case 3: Buffer pool switches from back to front to back modes\n");
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	fill_eight(p, &l);
	live_release_slot(&l, 0);
	live_release_slot(&l, 1);
	step(p, "--345678", SV2SHM_MODE_BACK);
	live_check(&l, p);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	step(p, "9-345678", SV2SHM_MODE_FRONT);
	slot_at(p, 0, 0, 5);
	live_check(&l, p);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	step(p, "9a345678", SV2SHM_MODE_FRONT);
	slot_at(p, 1, 5, 5);
	live_check(&l, p);
	live_release_slot(&l, 6);
	live_release_slot(&l, 7);
	step(p, "9a3456--", SV2SHM_MODE_FRONT);
	live_check(&l, p);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	step(p, "9a3456b-", SV2SHM_MODE_BACK);
	slot_at(p, 6, 30, 5);
	live_check(&l, p);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	step(p, "9a3456bc", SV2SHM_MODE_BACK);
	slot_at(p, 7, 35, 5);
	live_check(&l, p);
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.from_pool, 12);
	assert_int_equal(st.from_system, 0);
	assert_int_equal(st.mode_switches, 2);
	assert_int_equal(st.resets, 0);
	live_release_all(&l);
	destroy_pool(p);
}

/* ------------------------------------------------------------------------- */
/* 64 slots                                                                    */
/* ------------------------------------------------------------------------- */

/* 64 slices fill every slot in back mode, the 65th goes to system memory;
 * releasing everything resets the pool. */
static void test_n64_fill_alloc_reset(void **state)
{
	(void)state;
	rng_seed(14);
	struct sv2shm_pool *p = mkpool(64 * 5, 64, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	char want[SV2SHM_MAX_SLOTS + 1], map[SV2SHM_MAX_SLOTS + 1];
	pattern64(want, 0, 0);
	step64(p, want, SV2SHM_MODE_BACK, true);
	for (unsigned i = 0; i < 64; i++) {
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
		assert_int_equal(l.s[i]._slot, i);
		slot_at(p, i, 5u * i, 5);
		pattern64(want, 0, i + 1);
		step64(p, want, SV2SHM_MODE_BACK, i == 63);
		if (i < 61) {
			map_of(p, map, sizeof(map));
			assert_int_equal(map[i], claim_name(i + 1));
		}
	}
	live_check(&l, p);
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.mask, UINT64_MAX);
	assert_int_equal(st.live, 64);
	assert_int_equal(st.slots, 64);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_SYSTEM);
	step64(p, want, SV2SHM_MODE_ALLOC, true);
	live_check(&l, p);
	live_release_all(&l);
	pattern64(want, 0, 0);
	step64(p, want, SV2SHM_MODE_ALLOC, true);
	assert_int_equal(stats_of(p).resets, 0);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	pattern64(want, 0, 1);
	step64(p, want, SV2SHM_MODE_BACK, true);
	slot_at(p, 0, 0, 5);
	st = stats_of(p);
	assert_int_equal(st.resets, 1);
	assert_int_equal(st.from_pool, 65);
	assert_int_equal(st.from_system, 1);
	live_check(&l, p);
	live_release_all(&l);
	destroy_pool(p);
}

/* Back -> front -> back with 64 slots: drop the first 10, 10 front slices,
 * drop the last 10 back slices, 10 back slices again. */
static void test_n64_back_front_back(void **state)
{
	(void)state;
	rng_seed(15);
	struct sv2shm_pool *p = mkpool(64 * 5, 64, SV2SHM_POOL_FAIL);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	char want[SV2SHM_MAX_SLOTS + 1];
	for (unsigned i = 0; i < 64; i++)
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	for (unsigned i = 0; i < 10; i++)
		live_pop_front(&l);
	pattern64(want, 10, 64);
	step64(p, want, SV2SHM_MODE_BACK, true);
	for (unsigned i = 0; i < 10; i++) {
		assert_int_equal(take_front(&l, b, 5), SV2SHM_SLICE_POOL);
		assert_int_equal(l.s[0]._slot, i);
		slot_at(p, i, 5u * i, 5);
		pattern64(want, 0, 64);
		for (unsigned k = i + 1; k < 10; k++)
			want[k] = '-';
		step64(p, want, SV2SHM_MODE_FRONT, i == 0 || i == 9);
		live_check(&l, p);
	}
	/* Both runs full, every slot taken: FAIL policy refuses. */
	assert_null(sv2shm_buffer_get_writable(b, 5));
	assert_int_equal(sv2shm_buffer_last_error(b), -EAGAIN);
	for (unsigned i = 0; i < 10; i++)
		live_pop_back(&l);
	pattern64(want, 0, 54);
	step64(p, want, SV2SHM_MODE_FRONT, true);
	for (unsigned i = 0; i < 10; i++) {
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
		assert_int_equal(l.s[l.n - 1]._slot, 54 + i);
		slot_at(p, 54 + i, 5u * (54 + i), 5);
		pattern64(want, 0, 55 + i);
		step64(p, want, SV2SHM_MODE_BACK, i == 0 || i == 9);
		live_check(&l, p);
	}
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.mask, UINT64_MAX);
	assert_int_equal(st.from_pool, 84);
	assert_int_equal(st.from_system, 0);
	assert_int_equal(st.mode_switches, 2);
	live_release_all(&l);
	destroy_pool(p);
}

/* The slot map names the n-th claim '1'..'9', 'a'..'z', 'A'..'Z' and then,
 * as the header documents, wraps: claim 62 is '1' again. */
static void test_slot_map_names_past_61(void **state)
{
	(void)state;
	rng_seed(16);
	struct sv2shm_pool *p = mkpool(5, 1, SV2SHM_POOL_FAIL);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	char map[4], drawn[63];
	for (unsigned n = 1; n <= 62; n++) {
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
		map_of(p, map, sizeof(map));
		drawn[n] = map[0];
		live_release_all(&l);
	}
	assert_int_equal(sv2shm_pool_slot_map(p, map, 1), -ENOSPC);
	assert_int_equal(sv2shm_pool_slot_map(NULL, map, sizeof(map)), -EINVAL);
	assert_int_equal(sv2shm_pool_slot_map(p, NULL, 8), -EINVAL);
	destroy_pool(p);
	/* Asserted after the pool is gone, so a failure leaks nothing. */
	for (unsigned n = 1; n <= 62; n++) {
		char want = n <= 61 ? claim_name(n) : claim_name(n - 61);
		if (drawn[n] != want)
			print_error("claim %u drawn '%c', the header documents '%c'\n", n, drawn[n], want);
		assert_int_equal(drawn[n], want);
	}
}

/* ------------------------------------------------------------------------- */
/* Refused releases                                                           */
/* ------------------------------------------------------------------------- */

static void assert_refused(struct sv2shm_slice *s, int want, const struct live *l, const struct sv2shm_pool *p,
			   uint64_t refused_before, uint64_t counted)
{
	uint64_t mask = stats_of(p).mask;
	struct sv2shm_slice copy = *s;
	assert_int_equal(sv2shm_slice_release(s), want);
	/* A refused release leaves the struct and the pool alone. */
	assert_memory_equal(&copy, s, sizeof(copy));
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.mask, mask);
	assert_int_equal(st.refused_releases, refused_before + counted);
	live_check(l, p);
}

static void test_refused_releases(void **state)
{
	(void)state;
	rng_seed(17);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};

	/* A live neighbour whose bytes must survive everything below. */
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL); /* slot 0 */
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL); /* slot 1 */
	assert_int_equal(l.s[1]._slot, 1);
	struct sv2shm_slice copy = l.s[1];
	live_pop_back(&l); /* releases slot 1 through the original */

	/* Double release through a copy: -EALREADY, counted. */
	assert_refused(&copy, -EALREADY, &l, p, 0, 1);
	assert_refused(&copy, -EALREADY, &l, p, 1, 1);

	/* The released original is zeroed: -EALREADY (it names no pool, so the
	 * pool cannot count it). */
	struct sv2shm_slice zero;
	memset(&zero, 0, sizeof(zero));
	assert_int_equal(sv2shm_slice_kind(&zero), SV2SHM_SLICE_NONE);
	assert_refused(&zero, -EALREADY, &l, p, 2, 0);

	/* Slot 1 reused by a new slice: the old copy is stale. */
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	assert_int_equal(l.s[1]._slot, 1);
	assert_int_not_equal(l.s[1]._gen, copy._gen);
	assert_refused(&copy, -ESTALE, &l, p, 2, 1);
	/* ... and stays stale after the new slice is released too. */
	struct sv2shm_slice copy2 = l.s[1];
	live_pop_back(&l);
	assert_refused(&copy, -ESTALE, &l, p, 3, 1);
	assert_refused(&copy2, -EALREADY, &l, p, 4, 1);

	/* NULL. */
	assert_int_equal(sv2shm_slice_release(NULL), -EINVAL);
	assert_int_equal(stats_of(p).mask, 1u);

	/* Corrupt private fields: slot out of range, unknown kind. */
	struct sv2shm_slice bad = l.s[0];
	uint64_t refused = stats_of(p).refused_releases;
	bad._slot = 8;
	assert_int_equal(sv2shm_slice_release(&bad), -EINVAL);
	bad._slot = 63;
	assert_int_equal(sv2shm_slice_release(&bad), -EINVAL);
	bad._slot = 64;
	assert_int_equal(sv2shm_slice_release(&bad), -EINVAL);
	bad._slot = UINT16_MAX;
	assert_int_equal(sv2shm_slice_release(&bad), -EINVAL);
	bad = l.s[0];
	bad._kind = 7;
	assert_int_equal(sv2shm_slice_release(&bad), -EINVAL);
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.mask, 1u);
	assert_true(st.refused_releases >= refused);
	live_check(&l, p);

	/* The slot-0 slice itself was never disturbed: its release works once. */
	copy = l.s[0];
	live_pop_front(&l);
	st = stats_of(p);
	assert_int_equal(st.mask, 0);
	assert_int_equal(sv2shm_slice_release(&copy), -EALREADY);
	assert_true(sv2shm_buffer_is_droppable(b));
	destroy_pool(p);
}

/* ------------------------------------------------------------------------- */
/* Capacities and options                                                     */
/* ------------------------------------------------------------------------- */

static void test_capacity_zero(void **state)
{
	(void)state;
	rng_seed(18);
	struct sv2shm_pool *p = mkpool(0, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	assert_int_equal(stats_of(p).capacity, 0);
	for (unsigned i = 0; i < 20; i++) {
		assert_int_equal(take_back(&l, b, 1 + i % 7), SV2SHM_SLICE_SYSTEM);
		assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_ALLOC);
	}
	/* An empty slice owns nothing. */
	assert_non_null(sv2shm_buffer_get_writable(b, 0));
	struct sv2shm_slice e;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &e), 0);
	assert_int_equal(sv2shm_slice_kind(&e), SV2SHM_SLICE_EMPTY);
	assert_int_equal(e.len, 0);
	assert_int_equal(sv2shm_slice_release(&e), 0);
	live_check(&l, p);
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.from_pool, 0);
	assert_int_equal(st.from_system, 20);
	assert_int_equal(st.mask, 0);
	char map[16];
	map_of(p, map, sizeof(map));
	assert_string_equal(map, "--------");
	/* System slices do not keep the pool alive and outlive it. */
	assert_true(sv2shm_buffer_is_droppable(b));
	destroy_pool(p);
	live_check(&l, NULL);
	live_release_all(&l);

	/* With FAIL, a zero-capacity pool serves nothing but empty slices:
	 * every non-empty slice is larger than the whole pool (-EMSGSIZE). */
	p = mkpool(0, 8, SV2SHM_POOL_FAIL);
	b = sv2shm_pool_buffer(p);
	assert_null(sv2shm_buffer_get_writable(b, 1));
	assert_int_equal(sv2shm_buffer_last_error(b), -EMSGSIZE);
	assert_int_equal(sv2shm_buffer_len(b), 0);
	assert_non_null(sv2shm_buffer_get_writable(b, 0));
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &e), 0);
	assert_int_equal(sv2shm_slice_kind(&e), SV2SHM_SLICE_EMPTY);
	assert_int_equal(sv2shm_slice_release(&e), 0);
	destroy_pool(p);
}

static void test_capacity_one(void **state)
{
	(void)state;
	rng_seed(19);
	struct sv2shm_pool *p = mkpool(1, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	assert_int_equal(take_back(&l, b, 1), SV2SHM_SLICE_POOL);
	slot_at(p, 0, 0, 1);
	assert_int_equal(take_back(&l, b, 1), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_ALLOC);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_SYSTEM);
	live_check(&l, p);
	live_pop_front(&l);
	assert_int_equal(take_back(&l, b, 1), SV2SHM_SLICE_POOL);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_BACK);
	slot_at(p, 0, 0, 1);
	live_check(&l, p);
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.from_pool, 2);
	assert_int_equal(st.from_system, 2);
	live_release_all(&l);
	destroy_pool(p);
}

static void test_capacity_max(void **state)
{
	(void)state;
	rng_seed(20);
	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	o.capacity = SV2SHM_POOL_MAX_CAPACITY;
	struct sv2shm_pool *p = NULL;
	int r = sv2shm_pool_new(&o, &p);
	assert_true(r == 0 || r == -ENOMEM);
	if (r == -ENOMEM) {
		printf("capacity 2^32: -ENOMEM (accepted)\n");
		assert_null(p);
		return;
	}
	assert_non_null(p);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.capacity, SV2SHM_POOL_MAX_CAPACITY);
	assert_int_equal(st.slots, 8);
	assert_int_equal(take_back(&l, b, (size_t)1 << 20), SV2SHM_SLICE_POOL);
	assert_int_equal(take_chunked(&l, b, 70000, 4096, l.n), SV2SHM_SLICE_POOL);
	slot_at(p, 0, 0, (uint64_t)1 << 20);
	slot_at(p, 1, (uint64_t)1 << 20, 70000);
	live_check(&l, p);
	live_release_all(&l);
	destroy_pool(p);
}

static void test_options(void **state)
{
	(void)state;
	struct sv2shm_pool_options o;
	struct sv2shm_pool *p = NULL;
	struct sv2shm_pool *const sentinel = (struct sv2shm_pool *)(uintptr_t)0x1;

	memset(&o, 0, sizeof(o));
	o.capacity = SV2SHM_POOL_MAX_CAPACITY + 1;
	p = sentinel;
	assert_int_equal(sv2shm_pool_new(&o, &p), -EINVAL);
	assert_ptr_equal(p, sentinel);
	o.capacity = UINT64_MAX;
	assert_int_equal(sv2shm_pool_new(&o, &p), -EINVAL);

	memset(&o, 0, sizeof(o));
	o.capacity = 40;
	o.slots = 65;
	assert_int_equal(sv2shm_pool_new(&o, &p), -EINVAL);
	o.slots = UINT32_MAX;
	assert_int_equal(sv2shm_pool_new(&o, &p), -EINVAL);
	o.slots = 8;
	o.policy = 99;
	assert_int_equal(sv2shm_pool_new(&o, &p), -EINVAL);
	o.policy = -1;
	assert_int_equal(sv2shm_pool_new(&o, &p), -EINVAL);
	o.policy = SV2SHM_POOL_FALLBACK;
	assert_int_equal(sv2shm_pool_new(NULL, &p), -EINVAL);
	assert_int_equal(sv2shm_pool_new(&o, NULL), -EINVAL);
	assert_ptr_equal(p, sentinel);

	/* slots 0 means 8. */
	p = mkpool(40, 0, SV2SHM_POOL_FALLBACK);
	assert_ptr_equal(sv2shm_pool_from_buffer(sv2shm_pool_buffer(p)), p);
	struct sv2shm_sysbuf *sb = NULL;
	assert_int_equal(sv2shm_sysbuf_new(0, &sb), 0);
	assert_null(sv2shm_pool_from_buffer(sv2shm_sysbuf_buffer(sb)));
	sv2shm_sysbuf_free(sb);
	assert_null(sv2shm_pool_from_buffer(NULL));
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.slots, SV2SHM_DEFAULT_SLOTS);
	assert_int_equal(st.capacity, 40);
	char map[SV2SHM_MAX_SLOTS + 1];
	assert_int_equal(sv2shm_pool_slot_map(p, map, sizeof(map)), 8);
	assert_string_equal(map, "--------");
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_BACK);
	destroy_pool(p);

	/* 1 and 64 slots are the limits. */
	p = mkpool(40, 1, SV2SHM_POOL_FALLBACK);
	assert_int_equal(sv2shm_pool_slot_map(p, map, sizeof(map)), 1);
	destroy_pool(p);
	p = mkpool(40, 64, SV2SHM_POOL_FALLBACK);
	assert_int_equal(sv2shm_pool_slot_map(p, map, sizeof(map)), 64);
	destroy_pool(p);

	/* NULL handles. */
	assert_int_equal(sv2shm_pool_mode(NULL), -EINVAL);
	assert_null(sv2shm_pool_buffer(NULL));
	assert_int_equal(sv2shm_pool_destroy(NULL), 0);
	assert_int_equal(sv2shm_pool_stats(NULL, &st), -EINVAL);
	assert_string_equal(sv2shm_pool_mode_name(SV2SHM_MODE_BACK), "BACK MODE");
	assert_string_equal(sv2shm_pool_mode_name(SV2SHM_MODE_FRONT), "FRONT MODE");
	assert_string_equal(sv2shm_pool_mode_name(SV2SHM_MODE_ALLOC), "ALLOC MODE");
	assert_string_equal(sv2shm_pool_mode_name(3), "?");
}

/* ------------------------------------------------------------------------- */
/* Destroy, leaving alloc mode, moves, danger_set_start, FAIL                  */
/* ------------------------------------------------------------------------- */

static void test_destroy_busy(void **state)
{
	(void)state;
	rng_seed(21);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	assert_true(sv2shm_buffer_is_droppable(b));
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	assert_false(sv2shm_buffer_is_droppable(b));
	assert_int_equal(sv2shm_pool_destroy(p), -EBUSY);
	/* Nothing was freed: the slice reads back, the pool still works. */
	live_check(&l, p);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	live_check(&l, p);
	live_pop_front(&l);
	assert_false(sv2shm_buffer_is_droppable(b));
	assert_int_equal(sv2shm_pool_destroy(p), -EBUSY);
	live_check(&l, p);
	live_pop_front(&l);
	assert_true(sv2shm_buffer_is_droppable(b));
	/* A slice being written does not make the pool busy; destroy discards
	 * it (pool memory here). */
	assert_non_null(sv2shm_buffer_get_writable(b, 3));
	assert_true(sv2shm_buffer_is_droppable(b));
	assert_int_equal(sv2shm_pool_destroy(p), 0);

	/* Same with a slice being written in system memory (no leak). */
	p = mkpool(4, 8, SV2SHM_POOL_FALLBACK);
	b = sv2shm_pool_buffer(p);
	assert_non_null(sv2shm_buffer_get_writable(b, 100));
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_ALLOC);
	assert_true(sv2shm_buffer_is_droppable(b));
	assert_int_equal(sv2shm_pool_destroy(p), 0);
}

/* After the pool filled up and a slice went to system memory, freeing pool
 * slices brings the next slice back to the pool. */
static void test_leave_alloc_mode(void **state)
{
	(void)state;
	rng_seed(22);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_ALLOC);
	/* Free the oldest pool slice: room at the front. */
	live_pop_front(&l);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	assert_int_not_equal(sv2shm_pool_mode(p), SV2SHM_MODE_ALLOC);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_FRONT);
	slot_at(p, 0, 0, 5);
	live_check(&l, p);
	/* Full again -> system; then free the newest back slice: room at the back. */
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_ALLOC);
	live_release_slot(&l, 7);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_BACK);
	slot_at(p, 7, 35, 5);
	live_check(&l, p);
	/* Full again -> system; free every pool slice: the pool restarts. */
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_SYSTEM);
	for (size_t i = l.n; i-- > 0;)
		if (sv2shm_slice_kind(&l.s[i]) == SV2SHM_SLICE_POOL)
			live_release(&l, i);
	uint64_t resets = stats_of(p).resets;
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_BACK);
	assert_int_equal(stats_of(p).resets, resets + 1);
	slot_at(p, 0, 0, 5);
	live_check(&l, p);
	live_release_all(&l);
	destroy_pool(p);
}

/* A first message larger than the capacity goes to system memory; the next
 * small one comes from the pool (the seed would stay in alloc mode). */
static void test_oversized_then_pool(void **state)
{
	(void)state;
	rng_seed(23);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	assert_int_equal(take_back(&l, b, 100), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_ALLOC);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_BACK);
	slot_at(p, 0, 0, 5);
	/* Written in small pieces, an oversized message also ends in system
	 * memory and the next one is back in the pool. */
	assert_int_equal(take_chunked(&l, b, 41, 3, l.n), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_BACK);
	slot_at(p, 1, 5, 5);
	live_check(&l, p);
	struct sv2shm_pool_stats st = stats_of(p);
	assert_int_equal(st.from_pool, 2);
	assert_int_equal(st.from_system, 2);
	live_release_all(&l);
	destroy_pool(p);
}

/* Write `want` one byte per get_writable call, checking at each step that
 * everything written so far reads back. */
static void write_bytewise(struct sv2shm_buffer *b, const uint8_t *want, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++) {
		uint8_t *w = sv2shm_buffer_get_writable(b, 1);
		assert_non_null(w);
		*w = want[i];
		size_t vlen = 0;
		const uint8_t *v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
		assert_int_equal(vlen, i + 1);
		assert_memory_equal(v, want, i + 1);
	}
}

/* A slice that outgrows its place while being written moves (front -> back,
 * back -> offset 0, pool -> system memory) and keeps its bytes. */
static void test_grow_moves(void **state)
{
	(void)state;
	rng_seed(24);
	struct sv2shm_pool *p = mkpool(60, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL);  /* A: slot 0, [0,5) */
	assert_int_equal(take_back(&l, b, 30), SV2SHM_SLICE_POOL); /* B: slot 1, [5,35) */
	assert_int_equal(take_back(&l, b, 25), SV2SHM_SLICE_POOL); /* C: slot 2, [35,60) */
	const uint8_t *region = l.s[0].data;
	live_release_slot(&l, 0);

	/* D starts in the front (room 5: below B). */
	uint8_t d[300];
	rng_fill(d, sizeof(d));
	write_bytewise(b, d, 0, 5);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_FRONT);
	assert_ptr_equal(sv2shm_buffer_get_data_by_ref(b, 0, NULL), region);
	assert_int_equal(stats_of(p).moves, 0);
	/* C goes: D's 6th byte does not fit the front, it moves to the back. */
	live_release_slot(&l, 2);
	write_bytewise(b, d, 5, 25);
	assert_int_equal(stats_of(p).moves, 1);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_BACK);
	assert_ptr_equal(sv2shm_buffer_get_data_by_ref(b, 0, NULL), region + 35);
	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_POOL);
	assert_int_equal(s.len, 25);
	assert_memory_equal(s.data, d, 25);
	uint8_t *dw = malloc(25);
	assert_non_null(dw);
	memcpy(dw, d, 25);
	live_insert(&l, &s, dw, l.n);
	slot_at(p, s._slot, 35, 25);
	live_check(&l, p);

	/* E starts in the front again, then outgrows the whole pool: system
	 * memory, bytes kept (a move to system memory is not a pool move). */
	rng_fill(d, sizeof(d));
	write_bytewise(b, d, 0, 5);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_FRONT);
	write_bytewise(b, d, 5, sizeof(d));
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_ALLOC);
	assert_int_equal(stats_of(p).moves, 1);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(s.len, sizeof(d));
	assert_memory_equal(s.data, d, sizeof(d));
	uint8_t *ew = malloc(sizeof(d));
	assert_non_null(ew);
	memcpy(ew, d, sizeof(d));
	live_insert(&l, &s, ew, l.n);
	live_check(&l, p);
	live_release_all(&l);

	/* Overlapping move: F is written at [5,25) after A; A goes; F grows past
	 * the end: every slot free, the pool restarts and F slides to 0. */
	assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL); /* restarts at 0 */
	slot_at(p, 0, 0, 5);
	rng_fill(d, sizeof(d));
	write_bytes(b, d, 20, 4);
	assert_ptr_equal(sv2shm_buffer_get_data_by_ref(b, 0, NULL), region + 5);
	live_pop_front(&l);
	uint64_t resets = stats_of(p).resets;
	write_bytes(b, d + 20, 40, 0); /* 20 + 40 = 60 > 55 left: move */
	assert_int_equal(stats_of(p).moves, 2);
	assert_int_equal(stats_of(p).resets, resets + 1);
	assert_ptr_equal(sv2shm_buffer_get_data_by_ref(b, 0, NULL), region);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_POOL);
	assert_int_equal(s.len, 60);
	assert_memory_equal(s.data, d, 60);
	slot_at(p, s._slot, 0, 60);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	destroy_pool(p);
}

/* danger_set_start(i): the taken slice starts at byte i (pool and system
 * memory); the index is checked and reset by get_data_owned. */
static void test_danger_set_start(void **state)
{
	(void)state;
	rng_seed(25);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FALLBACK);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	uint8_t d[100];
	rng_fill(d, sizeof(d));

	write_bytes(b, d, 10, 0);
	assert_int_equal(sv2shm_buffer_danger_set_start(b, 11), -EINVAL);
	assert_int_equal(sv2shm_buffer_danger_set_start(NULL, 0), -EINVAL);
	assert_int_equal(sv2shm_buffer_danger_set_start(b, 3), 0);
	size_t vlen = 0;
	const uint8_t *v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	assert_int_equal(vlen, 7);
	assert_memory_equal(v, d + 3, 7);
	v = sv2shm_buffer_get_data_by_ref(b, 2, &vlen);
	assert_int_equal(vlen, 2);
	assert_memory_equal(v, d + 3, 2);
	struct sv2shm_slice s1;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s1), 0);
	assert_int_equal(sv2shm_slice_kind(&s1), SV2SHM_SLICE_POOL);
	assert_int_equal(s1.len, 7);
	assert_memory_equal(s1.data, d + 3, 7);
	/* The slot's range is the slice's bytes, [3,10); the 3 skipped bytes
	 * stay reserved (the next slice starts at 10). */
	slot_at(p, s1._slot, 3, 7);

	/* A length overflow fails and keeps what was written. */
	write_bytes(b, d, 2, 0);
	assert_null(sv2shm_buffer_get_writable(b, SIZE_MAX));
	assert_int_equal(sv2shm_buffer_last_error(b), -EOVERFLOW);
	assert_int_equal(sv2shm_buffer_len(b), 2);
	assert_int_equal(sv2shm_buffer_danger_set_start(b, 2), 0);
	struct sv2shm_slice s0;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s0), 0);
	assert_int_equal(sv2shm_slice_kind(&s0), SV2SHM_SLICE_EMPTY);
	assert_int_equal(sv2shm_slice_release(&s0), 0);

	/* Reset to 0 for the next slice. */
	write_bytes(b, d + 10, 5, 0);
	struct sv2shm_slice s2;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s2), 0);
	assert_int_equal(s2.len, 5);
	assert_memory_equal(s2.data, d + 10, 5);
	slot_at(p, s2._slot, 10, 5);

	/* Start == len: an empty slice, and the pool still works after it. */
	write_bytes(b, d, 4, 0);
	assert_int_equal(sv2shm_buffer_danger_set_start(b, 4), 0);
	struct sv2shm_slice s3;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s3), 0);
	assert_int_equal(s3.len, 0);
	assert_int_equal(sv2shm_slice_kind(&s3), SV2SHM_SLICE_EMPTY);
	assert_int_equal(sv2shm_slice_release(&s3), 0);
	assert_int_equal(stats_of(p).mask, 3u);

	/* System memory: a 60-byte slice starting at byte 17. */
	write_bytes(b, d, 60, 7);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_ALLOC);
	assert_int_equal(sv2shm_buffer_danger_set_start(b, 17), 0);
	struct sv2shm_slice s4;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s4), 0);
	assert_int_equal(sv2shm_slice_kind(&s4), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(s4.len, 43);
	assert_memory_equal(s4.data, d + 17, 43);

	assert_memory_equal(s1.data, d + 3, 7);
	assert_memory_equal(s2.data, d + 10, 5);
	assert_int_equal(sv2shm_slice_release(&s4), 0);
	assert_int_equal(sv2shm_slice_release(&s1), 0);
	assert_int_equal(sv2shm_slice_release(&s2), 0);
	destroy_pool(p);
}

/* FAIL policy: a failing get_writable keeps the bytes already written, and
 * the slice completes once room is freed. */
static void test_fail_keeps_written(void **state)
{
	(void)state;
	rng_seed(26);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FAIL);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	for (unsigned i = 0; i < 6; i++)
		assert_int_equal(take_back(&l, b, 5), SV2SHM_SLICE_POOL); /* [0,30) */
	uint8_t d[40];
	rng_fill(d, sizeof(d));
	write_bytes(b, d, 8, 0); /* [30,38) */
	assert_null(sv2shm_buffer_get_writable(b, 8));
	assert_int_equal(sv2shm_buffer_last_error(b), -EAGAIN);
	assert_int_equal(sv2shm_buffer_len(b), 8);
	/* Growing past the whole capacity can never succeed: -EMSGSIZE. */
	assert_null(sv2shm_buffer_get_writable(b, 33));
	assert_int_equal(sv2shm_buffer_last_error(b), -EMSGSIZE);
	assert_int_equal(sv2shm_buffer_len(b), 8);
	size_t vlen = 0;
	const uint8_t *v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	assert_int_equal(vlen, 8);
	assert_memory_equal(v, d, 8);
	live_check(&l, p);
	/* Free the first three slices: 15 bytes of front room — still too
	 * little for 16 bytes, then 20 bytes when the 4th goes. */
	live_pop_front(&l);
	live_pop_front(&l);
	live_pop_front(&l);
	assert_null(sv2shm_buffer_get_writable(b, 8));
	assert_int_equal(sv2shm_buffer_last_error(b), -EAGAIN);
	assert_int_equal(sv2shm_buffer_len(b), 8);
	live_pop_front(&l);
	uint8_t *w = sv2shm_buffer_get_writable(b, 8);
	assert_non_null(w);
	memcpy(w, d + 8, 8);
	assert_int_equal(sv2shm_pool_mode(p), SV2SHM_MODE_FRONT);
	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(s.len, 16);
	assert_memory_equal(s.data, d, 16);
	slot_at(p, s._slot, 0, 16);
	assert_int_equal(stats_of(p).moves, 1);
	uint8_t *sw = malloc(16);
	assert_non_null(sw);
	memcpy(sw, d, 16);
	live_insert(&l, &s, sw, 0);
	live_check(&l, p);
	live_release_all(&l);
	destroy_pool(p);
}

/* ------------------------------------------------------------------------- */
/* Tracing                                                                     */
/* ------------------------------------------------------------------------- */

struct trace_log {
	struct sv2shm_trace_record rec[64];
	unsigned n;
	const struct sv2shm_pool *pool;
	bool wrong_pool;
};

static void record_trace(const struct sv2shm_pool *p, const struct sv2shm_trace_record *rec, void *user)
{
	struct trace_log *t = user;
	if (p != t->pool)
		t->wrong_pool = true;
	if (t->n < 64)
		t->rec[t->n] = *rec;
	t->n++;
}

static void expect_rec(const struct trace_log *t, unsigned i, int event, int slot, uint64_t a, uint64_t b)
{
	assert_true(i < t->n);
	const struct sv2shm_trace_record *r = &t->rec[i];
	if (r->event != event || r->slot != slot || r->a != a || r->b != b)
		print_error("trace record %u: event %d slot %d a %llu b %llu, want %d %d %llu %llu\n", i, r->event,
			    r->slot, (unsigned long long)r->a, (unsigned long long)r->b, event, slot,
			    (unsigned long long)a, (unsigned long long)b);
	assert_int_equal(r->event, event);
	assert_int_equal(r->slot, slot);
	assert_int_equal(r->a, a);
	assert_int_equal(r->b, b);
	if (i > 0)
		assert_true(r->time_ns >= t->rec[i - 1].time_ns);
}

static void test_trace(void **state)
{
	(void)state;
	rng_seed(27);
	struct sv2shm_pool *p = mkpool(8 * 5, 8, SV2SHM_POOL_FALLBACK);
	static struct trace_log t;
	memset(&t, 0, sizeof(t));
	t.pool = p;
	assert_int_equal(sv2shm_pool_set_trace(NULL, record_trace, &t), -EINVAL);
	if (!sv2shm_trace_enabled()) {
		assert_int_equal(sv2shm_pool_set_trace(p, record_trace, &t), -ENOTSUP);
		destroy_pool(p);
		skip();
		return;
	}
	assert_int_equal(sv2shm_pool_set_trace(p, record_trace, &t), 0);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct live l = {.n = 0};
	for (unsigned i = 0; i < 8; i++)
		take_back(&l, b, 5);
	for (unsigned i = 0; i < 8; i++)
		expect_rec(&t, i, SV2SHM_TRACE_CLAIM, (int)i, 5u * i, 5);
	assert_int_equal(t.n, 8);
	/* 9th: BACK -> ALLOC, from system memory. */
	take_back(&l, b, 5);
	expect_rec(&t, 8, SV2SHM_TRACE_MODE, -1, SV2SHM_MODE_BACK, SV2SHM_MODE_ALLOC);
	expect_rec(&t, 9, SV2SHM_TRACE_SYSTEM, -1, 0, 5);
	assert_int_equal(t.n, 10);
	/* Release the oldest pool slice; the next goes to the front. */
	live_pop_front(&l);
	expect_rec(&t, 10, SV2SHM_TRACE_RELEASE, 0, 0, 5);
	take_back(&l, b, 5);
	expect_rec(&t, 11, SV2SHM_TRACE_MODE, -1, SV2SHM_MODE_ALLOC, SV2SHM_MODE_FRONT);
	expect_rec(&t, 12, SV2SHM_TRACE_CLAIM, 0, 0, 5);
	assert_int_equal(t.n, 13);
	/* A refused release is not traced as a release. */
	struct sv2shm_slice copy = l.s[l.n - 1];
	live_pop_back(&l);
	expect_rec(&t, 13, SV2SHM_TRACE_RELEASE, 0, 0, 5);
	assert_int_equal(sv2shm_slice_release(&copy), -EALREADY);
	assert_int_equal(t.n, 14);
	/* Release everything (7 pool slices, 1 system): then a reset. */
	live_release_all(&l);
	assert_int_equal(t.n, 21);
	for (unsigned i = 14; i < 21; i++)
		assert_int_equal(t.rec[i].event, SV2SHM_TRACE_RELEASE);
	take_back(&l, b, 5);
	expect_rec(&t, 21, SV2SHM_TRACE_RESET, -1, 0, 0);
	expect_rec(&t, 22, SV2SHM_TRACE_MODE, -1, SV2SHM_MODE_FRONT, SV2SHM_MODE_BACK);
	expect_rec(&t, 23, SV2SHM_TRACE_CLAIM, 0, 0, 5);
	assert_int_equal(t.n, 24);
	assert_false(t.wrong_pool);
	live_release_all(&l);
	/* Back to stderr. */
	assert_int_equal(sv2shm_pool_set_trace(p, NULL, NULL), 0);
	destroy_pool(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool_capacity_without_alloc),
		cmocka_unit_test(test_it_drop),
		cmocka_unit_test(test_alloc_more_than_pool_capacity),
		cmocka_unit_test(test_alloc_more_than_pool_capacity_fail),
		cmocka_unit_test(test_alloc_more_than_byte_capacity),
		cmocka_unit_test(test_back_front_back),
		cmocka_unit_test(test_back_front_alloc),
		cmocka_unit_test(test_back_alloc_back),
		cmocka_unit_test(test_back_alloc_front),
		cmocka_unit_test(test_variable_sizes),
		cmocka_unit_test(test_readme_case1_exhaustion),
		cmocka_unit_test(test_readme_case2_reset),
		cmocka_unit_test(test_readme_case3_back_front_back),
		cmocka_unit_test(test_n64_fill_alloc_reset),
		cmocka_unit_test(test_n64_back_front_back),
		cmocka_unit_test(test_slot_map_names_past_61),
		cmocka_unit_test(test_refused_releases),
		cmocka_unit_test(test_capacity_zero),
		cmocka_unit_test(test_capacity_one),
		cmocka_unit_test(test_capacity_max),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_destroy_busy),
		cmocka_unit_test(test_leave_alloc_mode),
		cmocka_unit_test(test_oversized_then_pool),
		cmocka_unit_test(test_grow_moves),
		cmocka_unit_test(test_danger_set_start),
		cmocka_unit_test(test_fail_keeps_written),
		cmocka_unit_test(test_trace),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
