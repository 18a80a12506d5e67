/*
 * The buffer interface: code written only against `struct sv2shm_buffer *`
 * runs on a pool and on a system-memory buffer and sees the same results.
 * split_owned(): pieces in place (no copy), the rest kept, live bytes never
 * touched; a pool with no free slot under each policy; the sysbuf's shared,
 * reference-counted blocks.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sv2shm/sv2shm.h"

/* ------------------------------------------------------------------------- */
/* Buffer kinds under test                                                    */
/* ------------------------------------------------------------------------- */

enum kind { K_SYSBUF, K_POOL, K_POOL_EMPTY, K_POOL_64SLOTS, K_COUNT };

static const char *const kind_names[K_COUNT] = {"sysbuf", "pool(4096,8)", "pool(0,8)", "pool(65536,64)"};

struct testbuf {
	enum kind kind;
	struct sv2shm_sysbuf *sb;
	struct sv2shm_pool *pool;
	struct sv2shm_buffer *b;
};

static void tb_open(struct testbuf *t, enum kind k)
{
	memset(t, 0, sizeof(*t));
	t->kind = k;
	if (k == K_SYSBUF) {
		assert_int_equal(sv2shm_sysbuf_new(0, &t->sb), 0);
		t->b = sv2shm_sysbuf_buffer(t->sb);
	} else {
		struct sv2shm_pool_options o;
		memset(&o, 0, sizeof(o));
		o.capacity = k == K_POOL ? 4096 : k == K_POOL_EMPTY ? 0 : 65536;
		o.slots = k == K_POOL_64SLOTS ? 64 : 0;
		o.policy = SV2SHM_POOL_FALLBACK;
		assert_int_equal(sv2shm_pool_new(&o, &t->pool), 0);
		t->b = sv2shm_pool_buffer(t->pool);
	}
	assert_non_null(t->b);
}

static void tb_close(struct testbuf *t)
{
	if (t->sb)
		sv2shm_sysbuf_free(t->sb);
	if (t->pool) {
		assert_true(sv2shm_buffer_is_droppable(t->b));
		assert_int_equal(sv2shm_pool_destroy(t->pool), 0);
	}
	memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------------------- */
/* Generic code: only struct sv2shm_buffer * from here to the tests           */
/* ------------------------------------------------------------------------- */

/* Write msg with write_all, check it with get_data_by_ref, take it. */
static void put_message(struct sv2shm_buffer *b, const void *msg, size_t n, struct sv2shm_slice *out)
{
	size_t before = sv2shm_buffer_len(b);
	assert_int_equal(sv2shm_buffer_write_all(b, msg, n), 0);
	assert_int_equal(sv2shm_buffer_len(b), before + n);
	size_t vlen = 0;
	const uint8_t *v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	assert_non_null(v);
	assert_int_equal(vlen, before + n);
	if (n)
		assert_memory_equal(v + before, msg, n);
	memset(out, 0xcc, sizeof(*out));
	assert_int_equal(sv2shm_buffer_get_data_owned(b, out), 0);
	assert_int_equal(sv2shm_buffer_len(b), 0);
	assert_int_equal(out->len, before + n);
	if (before + n == 0) {
		assert_int_equal(sv2shm_slice_kind(out), SV2SHM_SLICE_EMPTY);
	} else {
		int k = sv2shm_slice_kind(out);
		assert_true(k == SV2SHM_SLICE_POOL || k == SV2SHM_SLICE_SYSTEM);
		assert_non_null(out->data);
		assert_memory_equal(out->data + before, msg, n);
	}
}

/* A tiny codec written against the interface: a 2-byte little-endian length
 * written through get_writable, then the body through write(). */
static void codec_encode(struct sv2shm_buffer *b, const uint8_t *body, uint16_t n, struct sv2shm_slice *out)
{
	uint8_t *h = sv2shm_buffer_get_writable(b, 2);
	assert_non_null(h);
	h[0] = (uint8_t)n;
	h[1] = (uint8_t)(n >> 8);
	assert_int_equal(sv2shm_buffer_write(b, body, n), (ssize_t)n);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, out), 0);
}

static size_t codec_decode(const struct sv2shm_slice *s, const uint8_t **body)
{
	assert_true(s->len >= 2);
	size_t n = (size_t)s->data[0] | ((size_t)s->data[1] << 8);
	assert_int_equal(s->len, n + 2);
	*body = s->data + 2;
	return n;
}

/* A transcript of everything observable while running a fixed script. */
struct transcript {
	uint8_t bytes[1 << 16];
	size_t n;
};

static void tr_put(struct transcript *t, const void *p, size_t n)
{
	assert_true(t->n + n <= sizeof(t->bytes));
	memcpy(t->bytes + t->n, p, n);
	t->n += n;
}

static void tr_int(struct transcript *t, long long v)
{
	tr_put(t, &v, sizeof(v));
}

static void tr_slice(struct transcript *t, const struct sv2shm_slice *s)
{
	tr_int(t, (long long)s->len);
	tr_int(t, sv2shm_slice_kind(s) == SV2SHM_SLICE_EMPTY);
	if (s->len)
		tr_put(t, s->data, s->len);
}

static void run_script(struct sv2shm_buffer *b, struct transcript *t)
{
	struct sv2shm_slice held[6];
	size_t vlen;
	const uint8_t *v;

	/* Several messages, kept live together. */
	static const char *const msgs[] = {"Hello", "", "Rust programming", "x",
					   "This message is larger than a small pool's remaining capacity......"};
	for (size_t i = 0; i < 5; i++) {
		put_message(b, msgs[i], strlen(msgs[i]), &held[i]);
		tr_slice(t, &held[i]);
	}
	/* Releasing out of order. */
	tr_int(t, sv2shm_slice_release(&held[2]));
	tr_int(t, sv2shm_slice_release(&held[0]));

	/* Piecewise writes and views. */
	uint8_t *w = sv2shm_buffer_get_writable(b, 3);
	assert_non_null(w);
	memcpy(w, "abc", 3);
	tr_int(t, (long long)sv2shm_buffer_write(b, "defgh", 5));
	tr_int(t, (long long)sv2shm_buffer_len(b));
	v = sv2shm_buffer_get_data_by_ref(b, 4, &vlen);
	tr_int(t, (long long)vlen);
	tr_put(t, v, vlen);
	v = sv2shm_buffer_get_data_by_ref(b, 100, &vlen);
	tr_int(t, (long long)vlen);
	tr_put(t, v, vlen);

	/* danger_set_start: checked, then applied. */
	tr_int(t, sv2shm_buffer_danger_set_start(b, 9));
	tr_int(t, sv2shm_buffer_last_error(b));
	tr_int(t, sv2shm_buffer_danger_set_start(b, 2));
	v = sv2shm_buffer_get_data_by_ref(b, 100, &vlen);
	tr_int(t, (long long)vlen);
	tr_put(t, v, vlen);
	tr_int(t, sv2shm_buffer_get_data_owned(b, &held[0]));
	tr_slice(t, &held[0]);
	tr_int(t, (long long)sv2shm_buffer_len(b));

	/* Empty take, twice. */
	tr_int(t, sv2shm_buffer_get_data_owned(b, &held[2]));
	tr_slice(t, &held[2]);
	tr_int(t, sv2shm_slice_release(&held[2]));
	tr_int(t, sv2shm_slice_release(&held[2]));

	/* A larger message written in many small pieces. */
	for (unsigned i = 0; i < 3000; i++) {
		uint8_t byte = (uint8_t)(i * 7u);
		tr_int(t, (long long)sv2shm_buffer_write(b, &byte, 1));
	}
	tr_int(t, sv2shm_buffer_get_data_owned(b, &held[5]));
	tr_slice(t, &held[5]);

	/* Release everything; double releases refused the same way. */
	for (size_t i = 0; i < 6; i++)
		if (i != 2)
			tr_int(t, sv2shm_slice_release(&held[i]));
	tr_int(t, sv2shm_slice_release(&held[1]));
	tr_int(t, sv2shm_slice_release(&held[5]));
	tr_int(t, sv2shm_buffer_is_droppable(b));
}

/* ------------------------------------------------------------------------- */
/* Tests                                                                      */
/* ------------------------------------------------------------------------- */

static void roundtrip_on(enum kind k)
{
	struct testbuf t;
	tb_open(&t, k);
	struct sv2shm_slice s;
	const char *msg = "Ciao, mundo!";
	put_message(t.b, msg, 12, &s);
	assert_int_equal(s.len, 12);
	assert_memory_equal(s.data, "Ciao, mundo!", 12);
	if (k == K_SYSBUF || k == K_POOL_EMPTY)
		assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_SYSTEM);
	else
		assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_POOL);
	if (t.pool)
		assert_false(sv2shm_buffer_is_droppable(t.b) && k != K_POOL_EMPTY);
	/* A second message while the first is live: no overlap, first intact. */
	struct sv2shm_slice s2;
	put_message(t.b, "second", 6, &s2);
	assert_memory_equal(s2.data, "second", 6);
	assert_memory_equal(s.data, "Ciao, mundo!", 12);
	assert_true(s2.data >= s.data + s.len || s2.data + s2.len <= s.data);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(sv2shm_slice_release(&s2), 0);
	assert_int_equal(sv2shm_slice_release(&s), -EALREADY);
	assert_true(sv2shm_buffer_is_droppable(t.b));
	tb_close(&t);
}

static void test_roundtrip_sysbuf(void **state)
{
	(void)state;
	roundtrip_on(K_SYSBUF);
}

static void test_roundtrip_pool(void **state)
{
	(void)state;
	roundtrip_on(K_POOL);
	roundtrip_on(K_POOL_EMPTY);
	roundtrip_on(K_POOL_64SLOTS);
}

/* The same script gives byte-identical transcripts on every buffer kind. */
static void test_same_results_everywhere(void **state)
{
	(void)state;
	struct transcript *ref = calloc(1, sizeof(*ref));
	struct transcript *got = calloc(1, sizeof(*got));
	assert_non_null(ref);
	assert_non_null(got);

	struct testbuf t;
	tb_open(&t, K_SYSBUF);
	run_script(t.b, ref);
	tb_close(&t);
	assert_true(ref->n > 3000);

	for (int k = K_POOL; k < K_COUNT; k++) {
		got->n = 0;
		tb_open(&t, (enum kind)k);
		run_script(t.b, got);
		if (t.pool) {
			struct sv2shm_pool_stats st;
			assert_int_equal(sv2shm_pool_stats(t.pool, &st), 0);
			/* 6 non-empty slices were taken; from where depends on the pool. */
			assert_int_equal(st.from_pool + st.from_system, 6);
			if (k == K_POOL_EMPTY)
				assert_int_equal(st.from_pool, 0);
			else
				assert_true(st.from_pool >= 4);
			assert_int_equal(st.live, 0);
			/* Double releases of pool slices are counted as refused. */
		}
		tb_close(&t);
		if (got->n != ref->n || memcmp(got->bytes, ref->bytes, ref->n) != 0)
			print_error("transcript of %s differs from sysbuf's\n", kind_names[k]);
		assert_int_equal(got->n, ref->n);
		assert_memory_equal(got->bytes, ref->bytes, ref->n);
	}
	free(ref);
	free(got);
}

/* A codec written against the interface encodes and decodes the same
 * messages on both buffers. */
static void test_generic_codec(void **state)
{
	(void)state;
	enum { N = 40 };
	uint8_t body[3000];
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (uint8_t)(i ^ (i >> 3));
	for (int k = 0; k < K_COUNT; k++) {
		struct testbuf t;
		tb_open(&t, (enum kind)k);
		struct sv2shm_slice s[N];
		for (size_t i = 0; i < N; i++) {
			uint16_t n = (uint16_t)((i * 151u) % sizeof(body));
			codec_encode(t.b, body, n, &s[i]);
			/* keep at most 5 live, like a decoder with a few frames in flight */
			if (i >= 5) {
				const uint8_t *got;
				size_t j = i - 5;
				size_t gn = codec_decode(&s[j], &got);
				assert_int_equal(gn, (j * 151u) % sizeof(body));
				assert_memory_equal(got, body, gn);
				assert_int_equal(sv2shm_slice_release(&s[j]), 0);
			}
		}
		for (size_t j = N - 5; j < N; j++) {
			const uint8_t *got;
			size_t gn = codec_decode(&s[j], &got);
			assert_int_equal(gn, (j * 151u) % sizeof(body));
			assert_memory_equal(got, body, gn);
			assert_int_equal(sv2shm_slice_release(&s[j]), 0);
		}
		tb_close(&t);
	}
}

/* A failed get_writable keeps the bytes written so far, on every kind. */
static void test_failure_keeps_bytes(void **state)
{
	(void)state;
	for (int k = 0; k < K_COUNT; k++) {
		struct testbuf t;
		tb_open(&t, (enum kind)k);
		assert_int_equal(sv2shm_buffer_write_all(t.b, "12345", 5), 0);
		assert_null(sv2shm_buffer_get_writable(t.b, SIZE_MAX));
		assert_int_equal(sv2shm_buffer_last_error(t.b), -EOVERFLOW);
		assert_int_equal(sv2shm_buffer_len(t.b), 5);
		size_t vlen;
		const uint8_t *v = sv2shm_buffer_get_data_by_ref(t.b, SIZE_MAX, &vlen);
		assert_int_equal(vlen, 5);
		assert_memory_equal(v, "12345", 5);
		struct sv2shm_slice s;
		assert_int_equal(sv2shm_buffer_get_data_owned(t.b, &s), 0);
		assert_int_equal(s.len, 5);
		assert_memory_equal(s.data, "12345", 5);
		assert_int_equal(sv2shm_slice_release(&s), 0);
		tb_close(&t);
	}

	/* A pool that may not fall back to system memory: 9 bytes can never fit
	 * in 8 (-EMSGSIZE, not a retryable -EAGAIN); the bytes are kept. */
	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	o.capacity = 8;
	o.policy = SV2SHM_POOL_FAIL;
	struct sv2shm_pool *p;
	assert_int_equal(sv2shm_pool_new(&o, &p), 0);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	assert_int_equal(sv2shm_buffer_write_all(b, "12345", 5), 0);
	assert_int_equal(sv2shm_buffer_write_all(b, "6789", 4), -EMSGSIZE);
	assert_int_equal(sv2shm_buffer_last_error(b), -EMSGSIZE);
	assert_int_equal(sv2shm_buffer_write(b, "6789", 4), -EMSGSIZE);
	assert_int_equal(sv2shm_buffer_len(b), 5);
	assert_int_equal(sv2shm_buffer_write_all(b, "678", 3), 0);
	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_POOL);
	assert_int_equal(s.len, 8);
	assert_memory_equal(s.data, "12345678", 8);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(sv2shm_pool_destroy(p), 0);
}

/* is_droppable: a pool is droppable only with no live slice; sysbuf always. */
static void test_is_droppable(void **state)
{
	(void)state;
	for (int k = 0; k < K_COUNT; k++) {
		struct testbuf t;
		tb_open(&t, (enum kind)k);
		assert_true(sv2shm_buffer_is_droppable(t.b));
		struct sv2shm_slice s;
		put_message(t.b, "abc", 3, &s);
		bool pool_slice = sv2shm_slice_kind(&s) == SV2SHM_SLICE_POOL;
		assert_int_equal(sv2shm_buffer_is_droppable(t.b), !pool_slice);
		assert_int_equal(pool_slice, k == K_POOL || k == K_POOL_64SLOTS);
		if (t.pool && pool_slice)
			assert_int_equal(sv2shm_pool_destroy(t.pool), -EBUSY);
		assert_int_equal(sv2shm_slice_release(&s), 0);
		assert_true(sv2shm_buffer_is_droppable(t.b));
		tb_close(&t);
	}
}

/* sv2shm_pool_from_buffer tells a pool's buffer from any other. */
static void test_pool_from_buffer(void **state)
{
	(void)state;
	struct testbuf s, p;
	tb_open(&s, K_SYSBUF);
	tb_open(&p, K_POOL);
	assert_null(sv2shm_pool_from_buffer(s.b));
	assert_null(sv2shm_pool_from_buffer(NULL));
	assert_ptr_equal(sv2shm_pool_from_buffer(p.b), p.pool);
	assert_ptr_equal(sv2shm_pool_buffer(sv2shm_pool_from_buffer(p.b)), p.b);
	assert_null(sv2shm_pool_buffer(NULL));
	tb_close(&s);
	tb_close(&p);
}

/* NULL arguments of the generic functions: errors, never crashes. */
static void test_null_arguments(void **state)
{
	(void)state;
	struct sv2shm_slice s;
	memset(&s, 0, sizeof(s));
	size_t vlen = 77;

	assert_int_equal(sv2shm_buffer_get_data_owned(NULL, &s), -EINVAL);
	assert_null(sv2shm_buffer_get_data_by_ref(NULL, 10, &vlen));
	assert_int_equal(sv2shm_buffer_len(NULL), 0);
	assert_int_equal(sv2shm_buffer_danger_set_start(NULL, 0), -EINVAL);
	assert_false(sv2shm_buffer_is_droppable(NULL));
	assert_int_equal(sv2shm_buffer_write(NULL, "a", 1), -EINVAL);
	assert_int_equal(sv2shm_buffer_write(NULL, NULL, 0), -EINVAL);
	assert_int_equal(sv2shm_buffer_write_all(NULL, "a", 1), -EINVAL);
	assert_int_equal(sv2shm_buffer_last_error(NULL), -EINVAL);
	assert_int_equal(sv2shm_slice_release(NULL), -EINVAL);
	assert_int_equal(sv2shm_slice_kind(NULL), SV2SHM_SLICE_NONE);
	assert_int_equal(sv2shm_slice_release(&s), -EALREADY); /* zeroed: kind NONE */

	for (int k = 0; k < K_COUNT; k++) {
		struct testbuf t;
		tb_open(&t, (enum kind)k);
		assert_int_equal(sv2shm_buffer_get_data_owned(t.b, NULL), -EINVAL);
		assert_int_equal(sv2shm_buffer_write(t.b, NULL, 3), -EINVAL);
		assert_int_equal(sv2shm_buffer_last_error(t.b), -EINVAL);
		assert_int_equal(sv2shm_buffer_write_all(t.b, NULL, 3), -EINVAL);
		assert_int_equal(sv2shm_buffer_write(t.b, NULL, 0), 0);
		assert_int_equal(sv2shm_buffer_len(t.b), 0);
		/* A view with no out_len. */
		assert_non_null(sv2shm_buffer_get_data_by_ref(t.b, 5, NULL));
		tb_close(&t);
	}

	/* Corrupt private fields: refused, not followed. */
	memset(&s, 0, sizeof(s));
	s._kind = 9;
	assert_int_equal(sv2shm_slice_release(&s), -EINVAL);
	s._kind = SV2SHM_SLICE_POOL;
	s._owner = NULL;
	assert_int_equal(sv2shm_slice_release(&s), -EINVAL);

	/* Pool constructor arguments. */
	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	struct sv2shm_pool *p = NULL;
	assert_int_equal(sv2shm_pool_new(NULL, &p), -EINVAL);
	assert_int_equal(sv2shm_pool_new(&o, NULL), -EINVAL);
	o.slots = 65;
	assert_int_equal(sv2shm_pool_new(&o, &p), -EINVAL);
	o.slots = 8;
	o.capacity = SV2SHM_POOL_MAX_CAPACITY + 1;
	assert_int_equal(sv2shm_pool_new(&o, &p), -EINVAL);
	o.capacity = 16;
	o.policy = 7;
	assert_int_equal(sv2shm_pool_new(&o, &p), -EINVAL);
	assert_null(p);
	assert_int_equal(sv2shm_pool_destroy(NULL), 0);
}

/* ------------------------------------------------------------------------- */
/* split_owned                                                                */
/* ------------------------------------------------------------------------- */

static void fill_pattern(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 131u + seed * 17u + (i >> 8) * 7u);
}

static bool disjoint(const struct sv2shm_slice *a, const struct sv2shm_slice *b)
{
	return a->len == 0 || b->len == 0 || a->data + a->len <= b->data || b->data + b->len <= a->data;
}

/* The bytes after the danger_set_start() index are exactly want[0..n). */
static const uint8_t *assert_view(struct sv2shm_buffer *b, const uint8_t *want, size_t n)
{
	size_t vlen = SIZE_MAX;
	const uint8_t *v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	assert_non_null(v);
	assert_int_equal(vlen, n);
	if (n)
		assert_memory_equal(v, want, n);
	return v;
}

/* The kind a piece split off a fresh buffer of kind k has. */
static int split_kind(enum kind k)
{
	return k == K_SYSBUF || k == K_POOL_EMPTY ? SV2SHM_SLICE_SYSTEM : SV2SHM_SLICE_POOL;
}

static void split_pieces_on(enum kind k)
{
	struct testbuf t;
	tb_open(&t, k);
	enum { N = 300, BIG = 10000 };
	uint8_t msg[N];
	fill_pattern(msg, N, 1);
	assert_int_equal(sv2shm_buffer_write_all(t.b, msg, N), 0);
	const uint8_t *v0 = assert_view(t.b, msg, N);

	/* Three pieces, then the rest: each piece is where its bytes were
	 * written (no copy), and the rest stays right after it. */
	static const size_t cut[3] = {10, 100, 1};
	struct sv2shm_slice s[6];
	size_t off = 0;
	for (size_t i = 0; i < 3; i++) {
		memset(&s[i], 0xcc, sizeof(s[i]));
		assert_int_equal(sv2shm_buffer_split_owned(t.b, cut[i], &s[i]), 0);
		assert_int_equal(sv2shm_slice_kind(&s[i]), split_kind(k));
		assert_int_equal(s[i].len, cut[i]);
		assert_ptr_equal(s[i].data, v0 + off);
		assert_memory_equal(s[i].data, msg + off, cut[i]);
		off += cut[i];
		assert_int_equal(sv2shm_buffer_len(t.b), N - off);
		assert_ptr_equal(assert_view(t.b, msg + off, N - off), v0 + off);
	}
	assert_int_equal(sv2shm_buffer_get_data_owned(t.b, &s[3]), 0);
	assert_int_equal(sv2shm_slice_kind(&s[3]), split_kind(k));
	assert_int_equal(s[3].len, N - off);
	assert_ptr_equal(s[3].data, v0 + off);
	assert_memory_equal(s[3].data, msg + off, N - off);
	assert_int_equal(sv2shm_buffer_len(t.b), 0);
	if (t.pool && split_kind(k) == SV2SHM_SLICE_POOL)
		assert_false(sv2shm_buffer_is_droppable(t.b));

	/* Much more than a small pool holds (it falls back) and than the shared
	 * heap block holds (the sysbuf must write elsewhere), split again. */
	uint8_t *big = malloc(BIG);
	assert_non_null(big);
	fill_pattern(big, BIG, 2);
	assert_int_equal(sv2shm_buffer_write_all(t.b, big, BIG), 0);
	assert_int_equal(sv2shm_buffer_write_all(t.b, "xyz", 3), 0);
	assert_int_equal(sv2shm_buffer_split_owned(t.b, 5000, &s[4]), 0);
	assert_int_equal(s[4].len, 5000);
	assert_memory_equal(s[4].data, big, 5000);
	const uint8_t *v4 = sv2shm_buffer_get_data_by_ref(t.b, SIZE_MAX, NULL);
	assert_int_equal(sv2shm_buffer_get_data_owned(t.b, &s[5]), 0);
	assert_int_equal(s[5].len, BIG - 5000 + 3);
	assert_ptr_equal(s[5].data, v4);
	assert_ptr_equal(s[5].data, s[4].data + 5000); /* still no copy */
	assert_memory_equal(s[5].data, big + 5000, BIG - 5000);
	assert_memory_equal(s[5].data + BIG - 5000, "xyz", 3);
	if (k == K_SYSBUF) {
		assert_int_equal(sv2shm_slice_kind(&s[4]), SV2SHM_SLICE_SYSTEM);
		assert_int_equal(sv2shm_slice_kind(&s[5]), SV2SHM_SLICE_SYSTEM);
	}

	/* Nothing live changed, nothing overlaps. */
	off = 0;
	for (size_t i = 0; i < 4; i++) {
		assert_memory_equal(s[i].data, msg + off, s[i].len);
		off += s[i].len;
	}
	for (size_t i = 0; i < 6; i++)
		for (size_t j = i + 1; j < 6; j++)
			assert_true(disjoint(&s[i], &s[j]));

	if (t.pool) {
		struct sv2shm_pool_stats st;
		assert_int_equal(sv2shm_pool_stats(t.pool, &st), 0);
		assert_int_equal(st.from_pool + st.from_system, 6);
		uint64_t live = 0;
		for (size_t i = 0; i < 6; i++)
			live += sv2shm_slice_kind(&s[i]) == SV2SHM_SLICE_POOL;
		assert_int_equal(st.live, live);
		assert_int_equal(st.from_pool, live);
	}
	static const size_t order[6] = {2, 0, 5, 3, 1, 4};
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(sv2shm_slice_release(&s[order[i]]), 0);
	assert_int_equal(sv2shm_slice_release(&s[2]), -EALREADY);
	assert_true(sv2shm_buffer_is_droppable(t.b));
	free(big);
	tb_close(&t);
}

/* Pieces and rest: exact bytes, no copy, no overlap, live bytes stable. */
static void test_split_pieces(void **state)
{
	(void)state;
	for (int k = 0; k < K_COUNT; k++)
		split_pieces_on((enum kind)k);
}

/* split_owned counts from the danger_set_start() index; the rest starts at 0. */
static void test_split_honours_start(void **state)
{
	(void)state;
	static const char text[] = "####payload-one|payload-two";
	const size_t tn = sizeof(text) - 1;
	for (int k = 0; k < K_COUNT; k++) {
		struct testbuf t;
		tb_open(&t, (enum kind)k);
		assert_int_equal(sv2shm_buffer_write_all(t.b, text, tn), 0);
		const uint8_t *v0 = sv2shm_buffer_get_data_by_ref(t.b, SIZE_MAX, NULL);
		assert_int_equal(sv2shm_buffer_danger_set_start(t.b, 4), 0);
		struct sv2shm_slice a, b, c;
		/* 23 bytes after the start: 24 is one too many. */
		assert_int_equal(sv2shm_buffer_split_owned(t.b, 24, &a), -EINVAL);
		assert_int_equal(sv2shm_buffer_split_owned(t.b, 11, &a), 0);
		assert_int_equal(a.len, 11);
		assert_memory_equal(a.data, "payload-one", 11);
		assert_ptr_equal(a.data, v0 + 4);
		assert_int_equal(sv2shm_slice_kind(&a), split_kind((enum kind)k));
		/* The skipped prefix went with the piece: 12 bytes left, start 0. */
		assert_int_equal(sv2shm_buffer_len(t.b), 12);
		assert_ptr_equal(assert_view(t.b, (const uint8_t *)"|payload-two", 12), v0 + 15);
		if (t.pool && sv2shm_slice_kind(&a) == SV2SHM_SLICE_POOL) {
			uint64_t off, len;
			assert_int_equal(sv2shm_pool_slot_range(t.pool, a._slot, &off, &len), 1);
			assert_int_equal(len, 11);
		}
		assert_int_equal(sv2shm_buffer_danger_set_start(t.b, 1), 0);
		assert_int_equal(sv2shm_buffer_split_owned(t.b, 7, &b), 0);
		assert_int_equal(b.len, 7);
		assert_memory_equal(b.data, "payload", 7);
		assert_ptr_equal(b.data, v0 + 16);
		assert_int_equal(sv2shm_buffer_len(t.b), 4);
		assert_view(t.b, (const uint8_t *)"-two", 4);
		/* The rest with a start: get_data_owned skips it too. */
		assert_int_equal(sv2shm_buffer_danger_set_start(t.b, 1), 0);
		assert_int_equal(sv2shm_buffer_get_data_owned(t.b, &c), 0);
		assert_int_equal(c.len, 3);
		assert_memory_equal(c.data, "two", 3);
		assert_ptr_equal(c.data, v0 + 24);
		assert_memory_equal(a.data, "payload-one", 11);
		assert_memory_equal(b.data, "payload", 7);
		assert_int_equal(sv2shm_slice_release(&b), 0);
		assert_int_equal(sv2shm_slice_release(&a), 0);
		assert_int_equal(sv2shm_slice_release(&c), 0);
		tb_close(&t);
	}
}

/* Bad n: -EINVAL, and nothing changes; n == what is left is get_data_owned. */
static void test_split_invalid(void **state)
{
	(void)state;
	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_split_owned(NULL, 1, &s), -EINVAL);
	for (int k = 0; k < K_COUNT; k++) {
		struct testbuf t;
		tb_open(&t, (enum kind)k);
		assert_int_equal(sv2shm_buffer_split_owned(t.b, 1, NULL), -EINVAL);
		/* Nothing written: no n is valid. */
		assert_int_equal(sv2shm_buffer_split_owned(t.b, 1, &s), -EINVAL);
		assert_int_equal(sv2shm_buffer_split_owned(t.b, 0, &s), -EINVAL);
		assert_int_equal(sv2shm_buffer_len(t.b), 0);

		assert_int_equal(sv2shm_buffer_write_all(t.b, "0123456789", 10), 0);
		static const size_t bad[] = {0, 11, 12, SIZE_MAX / 2, SIZE_MAX};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			assert_int_equal(sv2shm_buffer_split_owned(t.b, bad[i], &s), -EINVAL);
			assert_int_equal(sv2shm_buffer_last_error(t.b), -EINVAL);
			assert_int_equal(sv2shm_buffer_len(t.b), 10);
			assert_view(t.b, (const uint8_t *)"0123456789", 10);
		}
		if (t.pool) {
			struct sv2shm_pool_stats st;
			assert_int_equal(sv2shm_pool_stats(t.pool, &st), 0);
			assert_int_equal(st.from_pool + st.from_system, 0);
		}
		/* With a start of 4, 6 bytes are left: 7 is too many. */
		assert_int_equal(sv2shm_buffer_danger_set_start(t.b, 4), 0);
		assert_int_equal(sv2shm_buffer_split_owned(t.b, 7, &s), -EINVAL);
		assert_int_equal(sv2shm_buffer_len(t.b), 10);
		assert_view(t.b, (const uint8_t *)"456789", 6);
		/* All of it: the same as get_data_owned (the buffer is empty after). */
		assert_int_equal(sv2shm_buffer_split_owned(t.b, 6, &s), 0);
		assert_int_equal(s.len, 6);
		assert_memory_equal(s.data, "456789", 6);
		assert_int_equal(sv2shm_slice_kind(&s), split_kind((enum kind)k));
		assert_int_equal(sv2shm_buffer_len(t.b), 0);
		assert_int_equal(sv2shm_buffer_split_owned(t.b, 1, &s), -EINVAL); /* s untouched: still live */
		assert_int_equal(s.len, 6);
		assert_int_equal(sv2shm_buffer_danger_set_start(t.b, 0), 0);
		assert_int_equal(sv2shm_slice_release(&s), 0);
		tb_close(&t);
	}
}

/* A FAIL pool with every slot live: a piece (or the rest) gets no slot:
 * -EAGAIN, and every byte stays; a release lets it through, in place. */
static void test_split_pool_fail(void **state)
{
	(void)state;
	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	o.capacity = 4096;
	o.slots = 2;
	o.policy = SV2SHM_POOL_FAIL;
	struct sv2shm_pool *p;
	assert_int_equal(sv2shm_pool_new(&o, &p), 0);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	uint8_t msg[30];
	fill_pattern(msg, sizeof(msg), 4);
	assert_int_equal(sv2shm_buffer_write_all(b, msg, 30), 0);
	const uint8_t *v0 = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, NULL);
	struct sv2shm_slice a, bb, c, d;
	assert_int_equal(sv2shm_buffer_split_owned(b, 10, &a), 0);
	assert_int_equal(sv2shm_buffer_split_owned(b, 10, &bb), 0);
	assert_int_equal(sv2shm_slice_kind(&a), SV2SHM_SLICE_POOL);
	assert_int_equal(sv2shm_slice_kind(&bb), SV2SHM_SLICE_POOL);
	assert_ptr_equal(bb.data, v0 + 10);

	/* Both slots live. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(sv2shm_buffer_split_owned(b, 5, &c), -EAGAIN);
	assert_int_equal(sv2shm_buffer_last_error(b), -EAGAIN);
	assert_int_equal(sv2shm_slice_kind(&c), SV2SHM_SLICE_NONE);
	assert_int_equal(sv2shm_buffer_len(b), 10);
	assert_ptr_equal(assert_view(b, msg + 20, 10), v0 + 20);
	assert_int_equal(sv2shm_buffer_split_owned(b, 10, &c), -EAGAIN);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &c), -EAGAIN);
	assert_int_equal(sv2shm_buffer_len(b), 10);
	assert_ptr_equal(assert_view(b, msg + 20, 10), v0 + 20);
	struct sv2shm_pool_stats st;
	assert_int_equal(sv2shm_pool_stats(p, &st), 0);
	assert_int_equal(st.from_pool, 2);
	assert_int_equal(st.from_system, 0);
	assert_int_equal(st.live, 2);
	assert_false(sv2shm_buffer_is_droppable(b));

	/* Free the newest (the end of the run, right before the rest). */
	assert_memory_equal(bb.data, msg + 10, 10);
	assert_int_equal(sv2shm_slice_release(&bb), 0);
	assert_int_equal(sv2shm_buffer_split_owned(b, 5, &c), 0);
	assert_int_equal(sv2shm_slice_kind(&c), SV2SHM_SLICE_POOL);
	assert_ptr_equal(c.data, v0 + 20);
	assert_memory_equal(c.data, msg + 20, 5);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &d), -EAGAIN);
	assert_ptr_equal(assert_view(b, msg + 25, 5), v0 + 25);
	/* Free the oldest: the rest is claimed where it is. */
	assert_int_equal(sv2shm_slice_release(&a), 0);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &d), 0);
	assert_int_equal(sv2shm_slice_kind(&d), SV2SHM_SLICE_POOL);
	assert_int_equal(d.len, 5);
	assert_ptr_equal(d.data, v0 + 25);
	assert_memory_equal(d.data, msg + 25, 5);
	assert_memory_equal(c.data, msg + 20, 5);
	assert_int_equal(sv2shm_buffer_len(b), 0);
	assert_int_equal(sv2shm_pool_destroy(p), -EBUSY);
	assert_int_equal(sv2shm_slice_release(&c), 0);
	assert_int_equal(sv2shm_slice_release(&d), 0);
	assert_int_equal(sv2shm_pool_stats(p, &st), 0);
	assert_int_equal(st.from_pool, 4);
	assert_int_equal(st.from_system, 0);
	assert_int_equal(st.refused_releases, 0);
	assert_int_equal(st.live, 0);

	/* A rest with no slot is not a live slice: the pool can be destroyed. */
	assert_int_equal(sv2shm_buffer_write_all(b, msg, 30), 0);
	assert_int_equal(sv2shm_buffer_split_owned(b, 12, &a), 0);
	assert_int_equal(sv2shm_slice_release(&a), 0);
	assert_int_equal(sv2shm_buffer_len(b), 18);
	assert_true(sv2shm_buffer_is_droppable(b));
	assert_int_equal(sv2shm_pool_destroy(p), 0);
}

static int64_t elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (int64_t)(t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

struct late_release {
	struct sv2shm_slice *s;
	unsigned delay_ms;
	int rc;
};

static void *late_release_main(void *arg)
{
	struct late_release *lr = arg;
	usleep(lr->delay_ms * 1000u);
	lr->rc = sv2shm_slice_release(lr->s);
	return NULL;
}

/* SV2SHM_POOL_WAIT: no slot within wait_timeout_ms is -ETIMEDOUT (bytes
 * kept); a release during the wait lets the split through. */
static void test_split_pool_wait(void **state)
{
	(void)state;
	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	o.capacity = 4096;
	o.slots = 1;
	o.policy = SV2SHM_POOL_WAIT;
	o.wait_timeout_ms = 40;
	o.wait_spin_us = SV2SHM_SPIN_NONE;
	struct sv2shm_pool *p;
	assert_int_equal(sv2shm_pool_new(&o, &p), 0);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	uint8_t msg[20];
	fill_pattern(msg, sizeof(msg), 5);
	assert_int_equal(sv2shm_buffer_write_all(b, msg, 20), 0);
	struct sv2shm_slice a, c;
	assert_int_equal(sv2shm_buffer_split_owned(b, 10, &a), 0);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(sv2shm_buffer_split_owned(b, 5, &c), -ETIMEDOUT);
	int64_t ms = elapsed_ms(&t0);
	assert_true(ms >= 39);
	assert_true(ms < 2000);
	assert_int_equal(sv2shm_buffer_last_error(b), -ETIMEDOUT);
	assert_int_equal(sv2shm_buffer_len(b), 10);
	assert_ptr_equal(assert_view(b, msg + 10, 10), a.data + 10);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &c), -ETIMEDOUT);
	assert_int_equal(sv2shm_buffer_len(b), 10);
	assert_memory_equal(a.data, msg, 10);
	struct sv2shm_pool_stats st;
	assert_int_equal(sv2shm_pool_stats(p, &st), 0);
	assert_true(st.waits >= 2);
	assert_int_equal(st.from_pool, 1);
	assert_int_equal(sv2shm_slice_release(&a), 0);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &c), 0);
	assert_memory_equal(c.data, msg + 10, 10);
	assert_int_equal(sv2shm_slice_release(&c), 0);
	assert_int_equal(sv2shm_pool_destroy(p), 0);

	/* A long timeout; another thread releases the only slice after 30 ms. */
	o.wait_timeout_ms = 10000;
	assert_int_equal(sv2shm_pool_new(&o, &p), 0);
	b = sv2shm_pool_buffer(p);
	assert_int_equal(sv2shm_buffer_write_all(b, msg, 20), 0);
	assert_int_equal(sv2shm_buffer_split_owned(b, 10, &a), 0);
	const uint8_t *a_data = a.data;
	struct late_release lr = {&a, 30, -1};
	pthread_t th;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(pthread_create(&th, NULL, late_release_main, &lr), 0);
	assert_int_equal(sv2shm_buffer_split_owned(b, 5, &c), 0);
	ms = elapsed_ms(&t0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(lr.rc, 0);
	assert_true(ms >= 20);
	assert_true(ms < 5000);
	assert_int_equal(sv2shm_slice_kind(&c), SV2SHM_SLICE_POOL);
	assert_ptr_equal(c.data, a_data + 10); /* in place, no copy */
	assert_memory_equal(c.data, msg + 10, 5);
	assert_ptr_equal(assert_view(b, msg + 15, 5), a_data + 15);
	assert_int_equal(sv2shm_slice_release(&c), 0);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &c), 0);
	assert_memory_equal(c.data, msg + 15, 5);
	assert_int_equal(sv2shm_slice_release(&c), 0);
	assert_int_equal(sv2shm_pool_destroy(p), 0);
}

/* SV2SHM_POOL_FALLBACK with no free slot: the piece is copied to system
 * memory; the rest stays in place in the region. */
static void test_split_pool_fallback(void **state)
{
	(void)state;
	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	o.capacity = 4096;
	o.slots = 1;
	o.policy = SV2SHM_POOL_FALLBACK;
	struct sv2shm_pool *p;
	assert_int_equal(sv2shm_pool_new(&o, &p), 0);
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	uint8_t msg[40];
	fill_pattern(msg, sizeof(msg), 6);
	assert_int_equal(sv2shm_buffer_write_all(b, msg, 40), 0);
	const uint8_t *v0 = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, NULL);
	struct sv2shm_slice a, c, d, e, f;
	assert_int_equal(sv2shm_buffer_split_owned(b, 10, &a), 0);
	assert_int_equal(sv2shm_slice_kind(&a), SV2SHM_SLICE_POOL);
	assert_ptr_equal(a.data, v0);

	assert_int_equal(sv2shm_buffer_split_owned(b, 5, &c), 0);
	assert_int_equal(sv2shm_slice_kind(&c), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(c.len, 5);
	assert_memory_equal(c.data, msg + 10, 5);
	assert_true(c.data + 5 <= v0 || c.data >= v0 + 4096); /* a copy, outside the region */
	assert_int_equal(sv2shm_buffer_len(b), 25);
	assert_ptr_equal(assert_view(b, msg + 15, 25), v0 + 15);
	struct sv2shm_pool_stats st;
	assert_int_equal(sv2shm_pool_stats(p, &st), 0);
	assert_int_equal(st.from_pool, 1);
	assert_int_equal(st.from_system, 1);

	/* The rest, still without a slot: copied as well. */
	assert_int_equal(sv2shm_buffer_split_owned(b, 5, &d), 0);
	assert_int_equal(sv2shm_slice_kind(&d), SV2SHM_SLICE_SYSTEM);
	assert_memory_equal(d.data, msg + 15, 5);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &e), 0);
	assert_int_equal(sv2shm_slice_kind(&e), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(e.len, 20);
	assert_memory_equal(e.data, msg + 20, 20);
	assert_memory_equal(a.data, msg, 10);
	assert_memory_equal(c.data, msg + 10, 5);
	assert_int_equal(sv2shm_pool_stats(p, &st), 0);
	assert_int_equal(st.from_pool, 1);
	assert_int_equal(st.from_system, 3);
	assert_int_equal(st.live, 1);

	/* Once the slot is free again, the pool serves from its region. */
	assert_int_equal(sv2shm_slice_release(&a), 0);
	assert_int_equal(sv2shm_buffer_write_all(b, msg, 40), 0);
	assert_int_equal(sv2shm_buffer_split_owned(b, 30, &f), 0);
	assert_int_equal(sv2shm_slice_kind(&f), SV2SHM_SLICE_POOL);
	assert_memory_equal(f.data, msg, 30);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &a), 0);
	assert_int_equal(sv2shm_slice_kind(&a), SV2SHM_SLICE_SYSTEM);
	assert_memory_equal(a.data, msg + 30, 10);
	assert_int_equal(sv2shm_slice_release(&c), 0);
	assert_int_equal(sv2shm_slice_release(&d), 0);
	assert_int_equal(sv2shm_slice_release(&e), 0);
	assert_int_equal(sv2shm_slice_release(&f), 0);
	assert_int_equal(sv2shm_slice_release(&a), 0);
	assert_int_equal(sv2shm_pool_destroy(p), 0);
}

/* The sysbuf: pieces share the heap block; growth with pieces live moves
 * the rest elsewhere, growth with none live reuses the block. */
static void test_split_sysbuf_growth(void **state)
{
	(void)state;
	struct sv2shm_sysbuf *sb;
	assert_int_equal(sv2shm_sysbuf_new(0, &sb), 0);
	struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);
	uint8_t m1[40], m2[1000], m3[5000];
	fill_pattern(m1, sizeof(m1), 7);
	fill_pattern(m2, sizeof(m2), 8);
	fill_pattern(m3, sizeof(m3), 9);
	struct sv2shm_slice a, bb, c;

	assert_int_equal(sv2shm_buffer_write_all(b, m1, 40), 0);
	assert_int_equal(sv2shm_buffer_split_owned(b, 10, &a), 0);
	/* Grows while a shares the block. */
	assert_int_equal(sv2shm_buffer_write_all(b, m2, 1000), 0);
	assert_memory_equal(a.data, m1, 10);
	assert_int_equal(sv2shm_buffer_len(b), 1030);
	size_t vlen;
	const uint8_t *v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	assert_int_equal(vlen, 1030);
	assert_memory_equal(v, m1 + 10, 30);
	assert_memory_equal(v + 30, m2, 1000);
	assert_true(disjoint(&a, &(struct sv2shm_slice){.data = (uint8_t *)v, .len = 1030}));
	assert_int_equal(sv2shm_buffer_split_owned(b, 30, &bb), 0);
	assert_memory_equal(bb.data, m1 + 10, 30);
	assert_ptr_equal(bb.data, v);
	assert_int_equal(sv2shm_slice_release(&a), 0);
	assert_memory_equal(bb.data, m1 + 10, 30);
	assert_int_equal(sv2shm_slice_release(&bb), 0);
	/* The block is the buffer's alone now: it grows in place. */
	assert_int_equal(sv2shm_buffer_write_all(b, m3, 5000), 0);
	v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	assert_int_equal(vlen, 6000);
	assert_memory_equal(v, m2, 1000);
	assert_memory_equal(v + 1000, m3, 5000);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &c), 0);
	assert_int_equal(c.len, 6000);
	assert_memory_equal(c.data, m2, 1000);
	assert_memory_equal(c.data + 1000, m3, 5000);
	assert_int_equal(sv2shm_slice_release(&c), 0);
	sv2shm_sysbuf_free(sb);
}

/* The sysbuf's pieces outlive sv2shm_sysbuf_free(), and the block is freed
 * exactly once whatever the order of the releases (ASan checks both). */
static void test_split_sysbuf_outlives(void **state)
{
	(void)state;
	static const unsigned perms[6][4] = {{0, 1, 2, 3}, {0, 2, 1, 3}, {1, 0, 2, 3},
					     {1, 2, 0, 3}, {2, 0, 1, 3}, {2, 1, 0, 3}};
	uint8_t msg[100];
	fill_pattern(msg, sizeof(msg), 10);
	for (unsigned variant = 0; variant < 3; variant++) {
		for (unsigned pi = 0; pi < 6; pi++) {
			struct sv2shm_sysbuf *sb;
			/* variant 0: no hint; 1: a hint; 2: the rest taken too. */
			assert_int_equal(sv2shm_sysbuf_new(variant == 1 ? 4096 : 0, &sb), 0);
			struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);
			assert_int_equal(sv2shm_buffer_write_all(b, msg, 100), 0);
			struct sv2shm_slice s[4];
			memset(s, 0, sizeof(s));
			assert_int_equal(sv2shm_buffer_split_owned(b, 10, &s[0]), 0);
			assert_int_equal(sv2shm_buffer_split_owned(b, 20, &s[1]), 0);
			assert_int_equal(sv2shm_buffer_split_owned(b, 30, &s[2]), 0);
			unsigned n = 3;
			if (variant == 2) {
				assert_int_equal(sv2shm_buffer_get_data_owned(b, &s[3]), 0);
				n = 4;
			}
			sv2shm_sysbuf_free(sb);
			assert_memory_equal(s[0].data, msg, 10);
			assert_memory_equal(s[1].data, msg + 10, 20);
			assert_memory_equal(s[2].data, msg + 30, 30);
			if (n == 4)
				assert_memory_equal(s[3].data, msg + 60, 40);
			for (unsigned i = 0; i < 4; i++) {
				unsigned j = perms[pi][i];
				if (j >= n)
					continue;
				/* The others are still readable. */
				for (unsigned q = 0; q < n; q++)
					if (sv2shm_slice_kind(&s[q]) != SV2SHM_SLICE_NONE)
						assert_int_equal(s[q].data[0], msg[q == 0 ? 0 : q == 1 ? 10 : q == 2 ? 30 : 60]);
				assert_int_equal(sv2shm_slice_release(&s[j]), 0);
			}
		}
	}
	/* Free the sysbuf with nothing split off and bytes pending, too. */
	struct sv2shm_sysbuf *sb;
	assert_int_equal(sv2shm_sysbuf_new(0, &sb), 0);
	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_write_all(sv2shm_sysbuf_buffer(sb), msg, 100), 0);
	assert_int_equal(sv2shm_buffer_split_owned(sv2shm_sysbuf_buffer(sb), 99, &s), 0);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	sv2shm_sysbuf_free(sb);
}

/*
 * One small piece kept live while more is written and split off (a reader
 * handing out frames while the consumer holds the last one): the block the
 * sysbuf writes into must be sized by what it holds, not by how much went
 * through it. At any time here 1000 bytes are live and 10 pending.
 */
static void test_split_sysbuf_room_bounded(void **state)
{
	(void)state;
	enum { ROUNDS = 4000, CHUNK = 1000, KEEP = 10 };
	struct sv2shm_sysbuf *sb;
	assert_int_equal(sv2shm_sysbuf_new(0, &sb), 0);
	struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);
	uint8_t chunk[CHUNK], want[CHUNK];
	struct sv2shm_slice held;
	memset(&held, 0, sizeof(held));
	size_t max_room = 0;
	for (unsigned i = 0; i < ROUNDS; i++) {
		fill_pattern(chunk, CHUNK, i);
		if (i) {
			/* The piece: the KEEP bytes left from the last round, then
			 * the first CHUNK - KEEP bytes of this one. */
			memcpy(want, sv2shm_buffer_get_data_by_ref(b, KEEP, NULL), KEEP);
			memcpy(want + KEEP, chunk, CHUNK - KEEP);
		}
		assert_int_equal(sv2shm_buffer_write_all(b, chunk, CHUNK), 0);
		if (b->_room > max_room)
			max_room = b->_room;
		struct sv2shm_slice s;
		assert_int_equal(sv2shm_buffer_split_owned(b, sv2shm_buffer_len(b) - KEEP, &s), 0);
		if (i) {
			assert_int_equal(s.len, CHUNK);
			assert_memory_equal(s.data, want, CHUNK);
			assert_int_equal(sv2shm_slice_release(&held), 0);
		}
		held = s;
		assert_view(b, chunk + CHUNK - KEEP, KEEP);
	}
	assert_int_equal(sv2shm_slice_release(&held), 0);
	sv2shm_sysbuf_free(sb);
	print_message("sysbuf room after %u rounds of %u bytes, one piece live: up to %zu bytes\n", ROUNDS, CHUNK,
		      max_room);
	assert_true(max_room <= 64 * 1024);
}

/* A script of splits: byte-identical transcripts on every buffer kind. */
static void run_split_script(struct sv2shm_buffer *b, struct transcript *t)
{
	enum { N = 5000 };
	static uint8_t bytes[N];
	fill_pattern(bytes, N, 11);
	struct sv2shm_slice s[8];
	memset(s, 0, sizeof(s));

	tr_int(t, sv2shm_buffer_write_all(b, bytes, 1000));
	tr_int(t, sv2shm_buffer_split_owned(b, 1, &s[0]));
	tr_int(t, sv2shm_buffer_split_owned(b, 99, &s[1]));
	tr_int(t, sv2shm_buffer_split_owned(b, 400, &s[2]));
	tr_int(t, (long long)sv2shm_buffer_len(b));
	tr_int(t, sv2shm_buffer_split_owned(b, 0, &s[3]));
	tr_int(t, sv2shm_buffer_split_owned(b, 501, &s[3]));
	tr_int(t, sv2shm_buffer_last_error(b));
	tr_int(t, (long long)sv2shm_buffer_len(b));
	tr_int(t, sv2shm_buffer_danger_set_start(b, 100));
	tr_int(t, sv2shm_buffer_split_owned(b, 50, &s[3]));
	tr_int(t, (long long)sv2shm_buffer_len(b));
	tr_int(t, sv2shm_buffer_write_all(b, bytes + 1000, 4000));
	tr_int(t, sv2shm_buffer_split_owned(b, 4000, &s[4]));
	tr_int(t, sv2shm_buffer_get_data_owned(b, &s[5]));
	tr_int(t, (long long)sv2shm_buffer_len(b));
	tr_int(t, sv2shm_slice_release(&s[1]));
	tr_int(t, sv2shm_slice_release(&s[4]));
	tr_int(t, sv2shm_buffer_write_all(b, "0123456789", 10));
	tr_int(t, sv2shm_buffer_split_owned(b, 10, &s[6]));
	tr_int(t, (long long)sv2shm_buffer_len(b));
	tr_int(t, sv2shm_buffer_write_all(b, "ab", 2));
	tr_int(t, sv2shm_buffer_split_owned(b, 1, &s[7]));
	tr_int(t, sv2shm_buffer_danger_set_start(b, 1));
	tr_int(t, sv2shm_buffer_split_owned(b, 1, &s[1]));
	tr_int(t, sv2shm_buffer_get_data_owned(b, &s[4]));
	for (size_t i = 0; i < 8; i++)
		tr_slice(t, &s[i]);
	for (size_t i = 0; i < 8; i++)
		tr_int(t, sv2shm_slice_release(&s[i]));
	tr_int(t, sv2shm_slice_release(&s[0]));
	tr_int(t, sv2shm_buffer_is_droppable(b));
}

static void test_split_same_results_everywhere(void **state)
{
	(void)state;
	struct transcript *ref = calloc(1, sizeof(*ref));
	struct transcript *got = calloc(1, sizeof(*got));
	assert_non_null(ref);
	assert_non_null(got);
	struct testbuf t;
	tb_open(&t, K_SYSBUF);
	run_split_script(t.b, ref);
	tb_close(&t);
	/* s0..s7 at the end hold 1 + 0 + 400 + 50 + 0 + 350 + 10 + 1 bytes (s1
	 * released, s4 EMPTY), plus 8 bytes per recorded value. */
	assert_true(ref->n > 812 + 8 * 40);
	for (int k = K_POOL; k < K_COUNT; k++) {
		got->n = 0;
		tb_open(&t, (enum kind)k);
		run_split_script(t.b, got);
		tb_close(&t);
		if (got->n != ref->n || memcmp(got->bytes, ref->bytes, ref->n) != 0)
			print_error("split transcript of %s differs from sysbuf's\n", kind_names[k]);
		assert_int_equal(got->n, ref->n);
		assert_memory_equal(got->bytes, ref->bytes, ref->n);
	}
	free(ref);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_sysbuf),
		cmocka_unit_test(test_roundtrip_pool),
		cmocka_unit_test(test_same_results_everywhere),
		cmocka_unit_test(test_generic_codec),
		cmocka_unit_test(test_failure_keeps_bytes),
		cmocka_unit_test(test_is_droppable),
		cmocka_unit_test(test_pool_from_buffer),
		cmocka_unit_test(test_null_arguments),
		cmocka_unit_test(test_split_pieces),
		cmocka_unit_test(test_split_honours_start),
		cmocka_unit_test(test_split_invalid),
		cmocka_unit_test(test_split_pool_fail),
		cmocka_unit_test(test_split_pool_wait),
		cmocka_unit_test(test_split_pool_fallback),
		cmocka_unit_test(test_split_sysbuf_growth),
		cmocka_unit_test(test_split_sysbuf_outlives),
		cmocka_unit_test(test_split_sysbuf_room_bounded),
		cmocka_unit_test(test_split_same_results_everywhere),
	};
	return cmocka_run_group_tests_name("buffer_iface", tests, NULL, NULL);
}
