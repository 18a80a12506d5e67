/*
 * The buffer interface: code written only against `struct sv2shm_buffer *`
 * runs on a pool and on a system-memory buffer and sees the same results.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	};
	return cmocka_run_group_tests_name("buffer_iface", tests, NULL, NULL);
}
