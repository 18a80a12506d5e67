/*
 * The FIFO consumer property of the pool.
 *
 * A consumer releases slices in arrival order and keeps the L newest: after
 * taking slice k it releases slice k-L, so L slices stay live while the next
 * message is written. With L < N-1 and (L+2) * (largest message) <= capacity
 * every slice must come from the pool's region — none from system memory.
 *
 * For N = 8 and N = 64 and every L in 0 .. N-2 the test writes 2000 messages
 * (each in one or several get_writable() calls) for three size patterns
 * (constant max, random 1..max, alternating 1 / max) and three capacities
 * ((L+2)*max exactly, a little more, much more). It checks every slice's kind,
 * the bytes of every slice right after it is taken, at release time and
 * periodically while live, the counters, and that every slot is free at the
 * end. Any failure prints N, L, pattern, capacity and message index.
 *
 * The limit case shows that the slot bound is real: once the consumer holds
 * every slot while the next message is written, that message goes to system
 * memory (FALLBACK) or is refused with -EAGAIN (FAIL).
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sv2shm/sv2shm.h>

#define MESSAGES 2000u

/* --- deterministic PRNG (splitmix64) -------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static size_t rng_range(uint64_t *s, size_t lo, size_t hi)
{
	return lo + (size_t)(splitmix64(s) % (uint64_t)(hi - lo + 1u));
}

/* The bytes of message k: a stream derived from (salt, k) only, so that any
 * slice can be checked again later without keeping a copy. */
static void gen_message(uint64_t salt, uint64_t k, uint8_t *dst, size_t n)
{
	uint64_t s = salt * UINT64_C(0x100000001b3) ^ (k + 1u) * UINT64_C(0xd6e8feb86659fd93);
	size_t i = 0;
	while (i < n) {
		uint64_t x = splitmix64(&s);
		for (unsigned j = 0; j < 8 && i < n; j++, i++)
			dst[i] = (uint8_t)(x >> (8u * j));
	}
}

/* --- configurations ------------------------------------------------------- */

enum pattern { PAT_CONST, PAT_RANDOM, PAT_ALTERNATE, PAT_COUNT };
static const char *const pattern_names[PAT_COUNT] = {"const-max", "random-1..max", "alternate-1/max"};

enum capkind { CAP_EXACT, CAP_PLUS, CAP_LARGE, CAP_COUNT };
static const char *const capkind_names[CAP_COUNT] = {"exact", "plus-37", "x3+1"};

static uint64_t capacity_for(unsigned L, size_t max, int ck)
{
	uint64_t exact = (uint64_t)(L + 2u) * max;
	switch (ck) {
	case CAP_EXACT:
		return exact;
	case CAP_PLUS:
		return exact + 37u;
	default:
		return exact * 3u + 1u;
	}
}

static size_t message_size(int pat, uint64_t *rng, uint64_t k, size_t max)
{
	switch (pat) {
	case PAT_CONST:
		return max;
	case PAT_RANDOM:
		return rng_range(rng, 1, max);
	default:
		return (k & 1u) ? max : 1u;
	}
}

/* One FIFO run's parameters and outcome. */
struct fifo_case {
	unsigned n;      /* slots */
	unsigned L;      /* slices kept live */
	int pattern;
	int capkind;
	uint64_t capacity;
	size_t max;
	int policy;
	unsigned messages;
	/* outcome */
	struct sv2shm_pool_stats stats;
	unsigned system_slices; /* slices whose kind was SYSTEM */
	unsigned refused;       /* get_writable() refused (FAIL policy) */
	char why[256];          /* first failure, empty when none */
	unsigned fail_msg;      /* message index of the first failure */
};

__attribute__((format(printf, 4, 5))) static void fail_case(struct fifo_case *c, struct sv2shm_pool *p, unsigned k,
							     const char *fmt, ...);
static void fail_case(struct fifo_case *c, struct sv2shm_pool *p, unsigned k, const char *fmt, ...)
{
	if (c->why[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	c->fail_msg = k;
	char map[SV2SHM_MAX_SLOTS + 1] = "";
	if (p)
		sv2shm_pool_slot_map(p, map, sizeof(map));
	fprintf(stderr,
		"FIFO FAILURE: N=%u L=%u pattern=%s capacity=%" PRIu64 " (%s, max=%zu) policy=%s message=%u: %s\n"
		"  slot map %s  mode %s\n",
		c->n, c->L, pattern_names[c->pattern], c->capacity, capkind_names[c->capkind], c->max,
		c->policy == SV2SHM_POOL_FAIL ? "FAIL" : "FALLBACK", k, c->why, map,
		p ? sv2shm_pool_mode_name(sv2shm_pool_mode(p)) : "?");
}

/* Check the bytes of slice k against what was written. */
static bool slice_intact(const struct sv2shm_slice *s, uint64_t salt, uint64_t k, size_t expect_len, uint8_t *scratch)
{
	if (s->len != expect_len || s->data == NULL)
		return false;
	gen_message(salt, k, scratch, expect_len);
	return memcmp(s->data, scratch, expect_len) == 0;
}

/*
 * Run one FIFO case. Returns true when every check passed. For the property
 * cases (expect_pool) every slice must be a POOL slice; otherwise the kinds
 * are only counted.
 */
static bool run_fifo(struct fifo_case *c, bool expect_pool)
{
	struct sv2shm_pool_options o = {0};
	o.capacity = c->capacity;
	o.slots = c->n;
	o.policy = c->policy;
	struct sv2shm_pool *p = NULL;
	int r = sv2shm_pool_new(&o, &p);
	if (r != 0) {
		fail_case(c, NULL, 0, "sv2shm_pool_new returned %d", r);
		return false;
	}
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	struct sv2shm_slice *sl = calloc(c->messages, sizeof(*sl));
	size_t *lens = calloc(c->messages, sizeof(*lens));
	uint8_t *msg = malloc(c->max);
	uint8_t *scratch = malloc(c->max);
	if (!sl || !lens || !msg || !scratch) {
		fail_case(c, p, 0, "out of memory in the test");
		goto out;
	}
	uint64_t salt = ((uint64_t)c->n << 48) ^ ((uint64_t)c->L << 32) ^ ((uint64_t)c->pattern << 24) ^
			((uint64_t)c->capkind << 16) ^ c->max;
	uint64_t rng = salt ^ UINT64_C(0x5eed);

	for (unsigned k = 0; k < c->messages; k++) {
		size_t len = message_size(c->pattern, &rng, k, c->max);
		lens[k] = len;
		gen_message(salt, k, msg, len);

		/* One call, or 2..4 chunks (some possibly empty). */
		size_t cuts[5];
		unsigned chunks = (splitmix64(&rng) & 1u) ? 1u : (unsigned)rng_range(&rng, 2, 4);
		cuts[0] = 0;
		cuts[chunks] = len;
		for (unsigned i = 1; i < chunks; i++)
			cuts[i] = rng_range(&rng, 0, len);
		for (unsigned i = 1; i < chunks; i++) /* sort the inner cuts */
			for (unsigned j = i + 1; j < chunks; j++)
				if (cuts[j] < cuts[i]) {
					size_t t = cuts[i];
					cuts[i] = cuts[j];
					cuts[j] = t;
				}
		bool refused = false;
		for (unsigned i = 0; i < chunks; i++) {
			size_t n = cuts[i + 1] - cuts[i];
			uint8_t *w = sv2shm_buffer_get_writable(b, n);
			if (!w) {
				int e = sv2shm_buffer_last_error(b);
				if (c->policy == SV2SHM_POOL_FAIL && e == -EAGAIN && !expect_pool) {
					refused = true;
					break;
				}
				fail_case(c, p, k, "get_writable(%zu) of chunk %u/%u failed: %d", n, i + 1, chunks, e);
				goto out;
			}
			memcpy(w, msg + cuts[i], n);
		}
		if (refused) {
			/* FAIL policy: the bytes written so far are kept; discard
			 * them by skipping all of them and taking an EMPTY slice. */
			c->refused++;
			sv2shm_buffer_danger_set_start(b, sv2shm_buffer_len(b));
			r = sv2shm_buffer_get_data_owned(b, &sl[k]);
			if (r != 0 || sv2shm_slice_kind(&sl[k]) != SV2SHM_SLICE_EMPTY) {
				fail_case(c, p, k, "dropping a refused message: r=%d kind=%d", r, sv2shm_slice_kind(&sl[k]));
				goto out;
			}
			lens[k] = 0;
		} else {
			if (sv2shm_buffer_len(b) != len) {
				fail_case(c, p, k, "len() is %zu after writing %zu bytes", sv2shm_buffer_len(b), len);
				goto out;
			}
			r = sv2shm_buffer_get_data_owned(b, &sl[k]);
			if (r != 0) {
				fail_case(c, p, k, "get_data_owned returned %d", r);
				goto out;
			}
			int kind = sv2shm_slice_kind(&sl[k]);
			if (kind == SV2SHM_SLICE_SYSTEM)
				c->system_slices++;
			if (expect_pool && kind != SV2SHM_SLICE_POOL) {
				fail_case(c, p, k, "slice of %zu bytes has kind %d, expected POOL (%d)", len, kind,
					  SV2SHM_SLICE_POOL);
				goto out;
			}
			if (!slice_intact(&sl[k], salt, k, len, scratch)) {
				fail_case(c, p, k, "bytes of the new slice differ from what was written");
				goto out;
			}
		}

		/* Release slice k-L, checking it first. */
		if (k >= c->L) {
			unsigned old = k - c->L;
			if (lens[old] && !slice_intact(&sl[old], salt, old, lens[old], scratch)) {
				fail_case(c, p, k, "slice %u (%zu bytes) changed before its release", old, lens[old]);
				goto out;
			}
			r = sv2shm_slice_release(&sl[old]);
			if (r != 0) {
				fail_case(c, p, k, "release of slice %u returned %d", old, r);
				goto out;
			}
		}

		/* Every 61 messages, check all live slices. */
		if (k % 61u == 60u) {
			unsigned first = k >= c->L ? k - c->L + 1u : 0u;
			for (unsigned j = first; j <= k; j++)
				if (lens[j] && !slice_intact(&sl[j], salt, j, lens[j], scratch)) {
					fail_case(c, p, k, "live slice %u (%zu bytes) changed", j, lens[j]);
					goto out;
				}
		}
	}

	/* Release what is left, checking it. */
	{
		unsigned first = c->messages >= c->L ? c->messages - c->L : 0u;
		for (unsigned j = first; j < c->messages; j++) {
			if (lens[j] && !slice_intact(&sl[j], salt, j, lens[j], scratch)) {
				fail_case(c, p, c->messages, "slice %u changed before its final release", j);
				goto out;
			}
			r = sv2shm_slice_release(&sl[j]);
			if (r != 0) {
				fail_case(c, p, c->messages, "final release of slice %u returned %d", j, r);
				goto out;
			}
		}
	}
	sv2shm_pool_stats(p, &c->stats);
	if (c->stats.mask != 0 || c->stats.live != 0 || !sv2shm_buffer_is_droppable(b)) {
		fail_case(c, p, c->messages, "after the last release mask=0x%" PRIx64 " live=%" PRIu64, c->stats.mask,
			  c->stats.live);
		goto out;
	}
	{
		char map[SV2SHM_MAX_SLOTS + 1];
		int ns = sv2shm_pool_slot_map(p, map, sizeof(map));
		if (ns != (int)c->n || strspn(map, "-") != c->n) {
			fail_case(c, p, c->messages, "slot map after the last release is \"%s\" (ret %d)", map, ns);
			goto out;
		}
	}
	{
		uint64_t taken = c->messages - c->refused;
		if (c->stats.from_pool + c->stats.from_system != taken || c->stats.from_system != c->system_slices) {
			fail_case(c, p, c->messages,
				  "counters: from_pool=%" PRIu64 " from_system=%" PRIu64 ", expected %" PRIu64
				  " slices, %u of them SYSTEM",
				  c->stats.from_pool, c->stats.from_system, taken, c->system_slices);
			goto out;
		}
	}
	if (expect_pool && c->stats.from_system != 0)
		fail_case(c, p, c->messages, "from_system=%" PRIu64 ", expected 0", c->stats.from_system);

out:
	if (p) {
		/* After an early failure some slices may still be live. */
		for (unsigned j = 0; sl && j < c->messages; j++)
			if (sv2shm_slice_kind(&sl[j]) != SV2SHM_SLICE_NONE)
				(void)sv2shm_slice_release(&sl[j]);
		r = sv2shm_pool_destroy(p);
		if (r != 0)
			fail_case(c, NULL, c->messages, "sv2shm_pool_destroy returned %d", r);
	}
	free(sl);
	free(lens);
	free(msg);
	free(scratch);
	return c->why[0] == '\0';
}

/* --- property tests -------------------------------------------------------- */

static void fifo_property(unsigned n, size_t max)
{
	unsigned failures = 0;
	printf("FIFO N=%u max=%zu, %u messages per run, %d patterns x %d capacities per L\n", n, max, MESSAGES,
	       PAT_COUNT, CAP_COUNT);
	printf("  %3s %10s %12s %8s %8s %7s\n", "L", "from_pool", "from_system", "switches", "resets", "moves");
	for (unsigned L = 0; L + 2u <= n; L++) {
		uint64_t pool = 0, sys = 0, sw = 0, resets = 0, moves = 0;
		for (int pat = 0; pat < PAT_COUNT; pat++) {
			for (int ck = 0; ck < CAP_COUNT; ck++) {
				struct fifo_case c;
				memset(&c, 0, sizeof(c));
				c.n = n;
				c.L = L;
				c.pattern = pat;
				c.capkind = ck;
				c.max = max;
				c.capacity = capacity_for(L, max, ck);
				c.policy = SV2SHM_POOL_FALLBACK;
				c.messages = MESSAGES;
				if (!run_fifo(&c, true))
					failures++;
				pool += c.stats.from_pool;
				sys += c.stats.from_system;
				sw += c.stats.mode_switches;
				resets += c.stats.resets;
				moves += c.stats.moves;
			}
		}
		printf("  %3u %10" PRIu64 " %12" PRIu64 " %8" PRIu64 " %8" PRIu64 " %7" PRIu64 "\n", L, pool, sys, sw,
		       resets, moves);
	}
	fflush(stdout);
	assert_int_equal(failures, 0);
}

static void test_fifo_n8(void **state)
{
	(void)state;
	fifo_property(8, 300);
}

static void test_fifo_n64(void **state)
{
	(void)state;
	fifo_property(64, 97);
}

/* The smallest cases: N = 2 (L = 0) and N = 3 (L = 0, 1) with messages of at
 * most 1..3 bytes in exactly (L+2)*max bytes. (N = 1 has no L < N-1.) */
static void test_fifo_small(void **state)
{
	(void)state;
	unsigned failures = 0;
	for (unsigned n = 2; n <= 3; n++)
		for (unsigned L = 0; L + 2u <= n; L++)
			for (int pat = 0; pat < PAT_COUNT; pat++)
				for (size_t max = 1; max <= 3; max++) {
					struct fifo_case c;
					memset(&c, 0, sizeof(c));
					c.n = n;
					c.L = L;
					c.pattern = pat;
					c.capkind = CAP_EXACT;
					c.max = max;
					c.capacity = capacity_for(L, max, CAP_EXACT);
					c.messages = MESSAGES;
					if (!run_fifo(&c, true))
						failures++;
				}
	assert_int_equal(failures, 0);
}

/* --- the limit ------------------------------------------------------------- */

/*
 * Hold every slot while the next message is written: with L = N slices live
 * after each release, the message after them finds no free slot. Under
 * FALLBACK it must come from system memory; under FAIL get_writable() must
 * refuse it with -EAGAIN. Capacity is ample, so only the slots limit.
 */
static void test_fifo_limit_every_slot_held(void **state)
{
	(void)state;
	static const unsigned ns[] = {1, 2, 8, 64};
	for (unsigned i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		unsigned n = ns[i];
		struct fifo_case c;
		memset(&c, 0, sizeof(c));
		c.n = n;
		c.L = n; /* n live while the next is written: every slot held */
		c.pattern = PAT_CONST;
		c.capkind = CAP_LARGE;
		c.max = 50;
		c.capacity = capacity_for(c.L, c.max, CAP_LARGE);
		c.policy = SV2SHM_POOL_FALLBACK;
		c.messages = MESSAGES;
		bool ok = run_fifo(&c, false);
		printf("limit N=%u L=%u FALLBACK: from_pool=%" PRIu64 " from_system=%" PRIu64 "\n", n, c.L,
		       c.stats.from_pool, c.stats.from_system);
		assert_true(ok);
		assert_true(c.stats.from_system > 0);
		/* In steady state one message in L+1 finds every slot held. */
		assert_true(c.stats.from_system >= MESSAGES / (n + 1u) - 1u);

		memset(&c, 0, sizeof(c));
		c.n = n;
		c.L = n;
		c.pattern = PAT_CONST;
		c.capkind = CAP_LARGE;
		c.max = 50;
		c.capacity = capacity_for(c.L, c.max, CAP_LARGE);
		c.policy = SV2SHM_POOL_FAIL;
		c.messages = MESSAGES;
		ok = run_fifo(&c, false);
		printf("limit N=%u L=%u FAIL: from_pool=%" PRIu64 " refused=%u\n", n, c.L, c.stats.from_pool, c.refused);
		assert_true(ok);
		assert_int_equal(c.stats.from_system, 0);
		assert_true(c.refused > 0);
	}
}

/*
 * The boundary of the slot bound: with L = N-1 live after each release, the
 * next message uses the last free slot, so (capacity (L+2)*max permitting)
 * every slice still comes from the pool. Recorded so that the bound of the
 * property (L < N-1) is known to be conservative by one.
 */
static void test_fifo_boundary_l_n_minus_1(void **state)
{
	(void)state;
	static const unsigned ns[] = {1, 2, 8, 64};
	unsigned failures = 0;
	for (unsigned i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		uint64_t pool = 0, sys = 0;
		for (int pat = 0; pat < PAT_COUNT; pat++) {
			struct fifo_case c;
			memset(&c, 0, sizeof(c));
			c.n = ns[i];
			c.L = ns[i] - 1u;
			c.pattern = pat;
			c.capkind = CAP_EXACT;
			c.max = 64;
			c.capacity = capacity_for(c.L, c.max, CAP_EXACT);
			c.messages = MESSAGES;
			if (!run_fifo(&c, true))
				failures++;
			pool += c.stats.from_pool;
			sys += c.stats.from_system;
		}
		printf("boundary N=%u L=%u: from_pool=%" PRIu64 " from_system=%" PRIu64 "\n", ns[i], ns[i] - 1u, pool,
		       sys);
	}
	assert_int_equal(failures, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo_n8),
		cmocka_unit_test(test_fifo_n64),
		cmocka_unit_test(test_fifo_small),
		cmocka_unit_test(test_fifo_limit_every_slot_held),
		cmocka_unit_test(test_fifo_boundary_l_n_minus_1),
	};
	return cmocka_run_group_tests_name("pool_fifo", tests, NULL, NULL);
}
