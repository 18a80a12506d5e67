/*
 * Unit tests of the system-memory buffer (the seed's BufferFromSystemMemory):
 * growth, get_data_owned handing the bytes away, views, danger_set_start,
 * is_droppable, write/write_all, the empty slice, release and overflow.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sv2shm/sv2shm.h"

/* Byte i of the test pattern: not periodic over small lengths. */
static uint8_t pat(size_t i)
{
	return (uint8_t)((i * 131u + (i >> 8) * 7u + 17u) & 0xffu);
}

static struct sv2shm_sysbuf *new_sysbuf(size_t hint)
{
	struct sv2shm_sysbuf *sb = NULL;
	assert_int_equal(sv2shm_sysbuf_new(hint, &sb), 0);
	assert_non_null(sb);
	return sb;
}

/* get_writable in many small steps: every step gives exactly `len` bytes
 * right after the previous ones, the length grows by len, and what was
 * written earlier survives every reallocation. */
static void test_get_writable_growth(void **state)
{
	(void)state;
	struct sv2shm_sysbuf *sb = new_sysbuf(0);
	struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);
	assert_non_null(b);
	assert_int_equal(sv2shm_buffer_len(b), 0);
	assert_int_equal(sv2shm_buffer_last_error(b), 0);

	size_t total = 0;
	for (unsigned step = 0; step < 20000; step++) {
		size_t len = step % 7; /* 0..6, zero-length requests included */
		uint8_t *w = sv2shm_buffer_get_writable(b, len);
		assert_non_null(w);
		for (size_t i = 0; i < len; i++)
			w[i] = pat(total + i);
		total += len;
		assert_int_equal(sv2shm_buffer_len(b), total);
		if (step % 997 == 0) {
			/* Everything written so far is still there, in order. */
			size_t vlen = 0;
			const uint8_t *v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
			assert_non_null(v);
			assert_int_equal(vlen, total);
			for (size_t i = 0; i < total; i++)
				assert_int_equal(v[i], pat(i));
		}
	}
	assert_int_equal(total, 59997);

	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(s.len, total);
	for (size_t i = 0; i < total; i++)
		assert_int_equal(s.data[i], pat(i));
	assert_int_equal(sv2shm_buffer_last_error(b), 0);
	assert_int_equal(sv2shm_slice_release(&s), 0);

	/* One large request after a small one. */
	uint8_t *w = sv2shm_buffer_get_writable(b, 3);
	assert_non_null(w);
	memcpy(w, "abc", 3);
	w = sv2shm_buffer_get_writable(b, 1u << 20);
	assert_non_null(w);
	memset(w, 0x5a, 1u << 20);
	assert_int_equal(sv2shm_buffer_len(b), 3 + (1u << 20));
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(s.len, 3 + (1u << 20));
	assert_memory_equal(s.data, "abc", 3);
	assert_int_equal(s.data[3], 0x5a);
	assert_int_equal(s.data[s.len - 1], 0x5a);
	assert_int_equal(sv2shm_slice_release(&s), 0);

	sv2shm_sysbuf_free(sb);
}

/* The hint preallocates, and the buffer still grows past it. */
static void test_hint(void **state)
{
	(void)state;
	struct sv2shm_sysbuf *sb = new_sysbuf(4096);
	struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);
	assert_int_equal(sv2shm_buffer_len(b), 0);
	for (size_t i = 0; i < 10000; i++) {
		uint8_t byte = pat(i);
		assert_int_equal(sv2shm_buffer_write(b, &byte, 1), 1);
	}
	assert_int_equal(sv2shm_buffer_len(b), 10000);
	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(s.len, 10000);
	for (size_t i = 0; i < 10000; i++)
		assert_int_equal(s.data[i], pat(i));
	assert_int_equal(sv2shm_slice_release(&s), 0);
	sv2shm_sysbuf_free(sb);

	/* Constructor errors and NULL handling. */
	assert_int_equal(sv2shm_sysbuf_new(0, NULL), -EINVAL);
	assert_null(sv2shm_sysbuf_buffer(NULL));
	sv2shm_sysbuf_free(NULL); /* no-op */
}

/* get_data_owned hands the bytes away as a SYSTEM slice: the buffer starts
 * an empty slice, later writes never touch the slice, and the slice outlives
 * the buffer itself. */
static void test_get_data_owned_gives_away(void **state)
{
	(void)state;
	struct sv2shm_sysbuf *sb = new_sysbuf(0);
	struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);

	assert_int_equal(sv2shm_buffer_write_all(b, "hello", 5), 0);
	assert_int_equal(sv2shm_buffer_len(b), 5);
	struct sv2shm_slice s1;
	memset(&s1, 0xee, sizeof(s1));
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s1), 0);
	assert_int_equal(sv2shm_slice_kind(&s1), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(s1.len, 5);
	assert_non_null(s1.data);
	assert_memory_equal(s1.data, "hello", 5);

	/* The next slice starts empty. */
	assert_int_equal(sv2shm_buffer_len(b), 0);
	size_t vlen = 99;
	assert_non_null(sv2shm_buffer_get_data_by_ref(b, 100, &vlen));
	assert_int_equal(vlen, 0);

	/* Writing the next slice does not touch the first. */
	uint8_t *w = sv2shm_buffer_get_writable(b, 5);
	assert_non_null(w);
	memcpy(w, "WORLD", 5);
	assert_true(w < s1.data || w >= s1.data + s1.len);
	assert_int_equal(sv2shm_buffer_write_all(b, "!!", 2), 0);
	struct sv2shm_slice s2;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s2), 0);
	assert_int_equal(sv2shm_slice_kind(&s2), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(s2.len, 7);
	assert_memory_equal(s2.data, "WORLD!!", 7);
	assert_ptr_not_equal(s1.data, s2.data);
	assert_memory_equal(s1.data, "hello", 5);

	/* The holder may write its slice (AsMut). */
	s1.data[0] = 'j';
	assert_memory_equal(s1.data, "jello", 5);
	assert_memory_equal(s2.data, "WORLD!!", 7);

	/* The slices are independent of the buffer: free it first. */
	sv2shm_sysbuf_free(sb);
	assert_memory_equal(s1.data, "jello", 5);
	assert_memory_equal(s2.data, "WORLD!!", 7);

	assert_int_equal(sv2shm_slice_release(&s1), 0);
	assert_int_equal(sv2shm_slice_kind(&s1), SV2SHM_SLICE_NONE);
	assert_null(s1.data);
	assert_int_equal(s1.len, 0);
	/* A second release of the same struct is refused. */
	assert_int_equal(sv2shm_slice_release(&s1), -EALREADY);
	assert_int_equal(sv2shm_slice_release(&s2), 0);
}

/* get_data_by_ref: views of the first min(len, len()) bytes. */
static void test_get_data_by_ref(void **state)
{
	(void)state;
	struct sv2shm_sysbuf *sb = new_sysbuf(0);
	struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);

	/* Empty buffer: a non-NULL, empty view. */
	size_t vlen = 12345;
	assert_non_null(sv2shm_buffer_get_data_by_ref(b, 0, &vlen));
	assert_int_equal(vlen, 0);
	vlen = 12345;
	assert_non_null(sv2shm_buffer_get_data_by_ref(b, 10, &vlen));
	assert_int_equal(vlen, 0);

	assert_int_equal(sv2shm_buffer_write_all(b, "0123456789", 10), 0);
	uint8_t *v = sv2shm_buffer_get_data_by_ref(b, 4, &vlen);
	assert_non_null(v);
	assert_int_equal(vlen, 4);
	assert_memory_equal(v, "0123", 4);
	v = sv2shm_buffer_get_data_by_ref(b, 10, &vlen);
	assert_int_equal(vlen, 10);
	assert_memory_equal(v, "0123456789", 10);
	v = sv2shm_buffer_get_data_by_ref(b, 1000, &vlen);
	assert_int_equal(vlen, 10);
	assert_memory_equal(v, "0123456789", 10);
	v = sv2shm_buffer_get_data_by_ref(b, 0, &vlen);
	assert_non_null(v);
	assert_int_equal(vlen, 0);
	/* out_len may be NULL. */
	v = sv2shm_buffer_get_data_by_ref(b, 3, NULL);
	assert_non_null(v);
	assert_memory_equal(v, "012", 3);

	/* A view does not take anything and does not change len(). */
	assert_int_equal(sv2shm_buffer_len(b), 10);
	/* Writing through the view changes what get_data_owned hands out. */
	v[0] = 'X';
	assert_int_equal(sv2shm_buffer_write_all(b, "ab", 2), 0);
	v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	assert_int_equal(vlen, 12);
	assert_memory_equal(v, "X123456789ab", 12);

	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(s.len, 12);
	assert_memory_equal(s.data, "X123456789ab", 12);
	assert_int_equal(sv2shm_slice_release(&s), 0);

	assert_null(sv2shm_buffer_get_data_by_ref(NULL, 1, &vlen));
	sv2shm_sysbuf_free(sb);
}

/* len() counts what was written to the current slice only. */
static void test_len(void **state)
{
	(void)state;
	struct sv2shm_sysbuf *sb = new_sysbuf(16);
	struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);
	assert_int_equal(sv2shm_buffer_len(b), 0);
	assert_non_null(sv2shm_buffer_get_writable(b, 0));
	assert_int_equal(sv2shm_buffer_len(b), 0);
	assert_non_null(sv2shm_buffer_get_writable(b, 7));
	assert_int_equal(sv2shm_buffer_len(b), 7);
	assert_non_null(sv2shm_buffer_get_writable(b, 100));
	assert_int_equal(sv2shm_buffer_len(b), 107);
	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(s.len, 107);
	assert_int_equal(sv2shm_buffer_len(b), 0);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(sv2shm_buffer_len(NULL), 0);
	sv2shm_sysbuf_free(sb);
}

/* danger_set_start: checked, skips bytes in views and in the taken slice,
 * reset by get_data_owned. */
static void test_danger_set_start(void **state)
{
	(void)state;
	struct sv2shm_sysbuf *sb = new_sysbuf(0);
	struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);

	/* On an empty buffer only 0 is valid. */
	assert_int_equal(sv2shm_buffer_danger_set_start(b, 0), 0);
	assert_int_equal(sv2shm_buffer_danger_set_start(b, 1), -EINVAL);
	assert_int_equal(sv2shm_buffer_last_error(b), -EINVAL);

	assert_int_equal(sv2shm_buffer_write_all(b, "0123456789", 10), 0);
	assert_int_equal(sv2shm_buffer_danger_set_start(b, 4), 0);
	assert_int_equal(sv2shm_buffer_len(b), 10);
	size_t vlen;
	uint8_t *v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	assert_int_equal(vlen, 6);
	assert_memory_equal(v, "456789", 6);
	v = sv2shm_buffer_get_data_by_ref(b, 2, &vlen);
	assert_int_equal(vlen, 2);
	assert_memory_equal(v, "45", 2);

	/* index > len() is refused and changes nothing. */
	assert_int_equal(sv2shm_buffer_danger_set_start(b, 11), -EINVAL);
	assert_int_equal(sv2shm_buffer_last_error(b), -EINVAL);
	assert_int_equal(sv2shm_buffer_danger_set_start(b, SIZE_MAX), -EINVAL);
	v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	assert_int_equal(vlen, 6);
	assert_memory_equal(v, "456789", 6);

	/* More bytes after the start was set are part of the slice. */
	assert_int_equal(sv2shm_buffer_write_all(b, "AB", 2), 0);
	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(s.len, 8);
	assert_memory_equal(s.data, "456789AB", 8);

	/* Reset to 0 by get_data_owned. */
	assert_int_equal(sv2shm_buffer_write_all(b, "xyz", 3), 0);
	v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	assert_int_equal(vlen, 3);
	assert_memory_equal(v, "xyz", 3);

	/* index == len(): nothing left to hand out -> an EMPTY slice. */
	assert_int_equal(sv2shm_buffer_danger_set_start(b, 3), 0);
	v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	assert_non_null(v);
	assert_int_equal(vlen, 0);
	struct sv2shm_slice e;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &e), 0);
	assert_int_equal(sv2shm_slice_kind(&e), SV2SHM_SLICE_EMPTY);
	assert_int_equal(e.len, 0);
	assert_int_equal(sv2shm_buffer_len(b), 0);
	assert_int_equal(sv2shm_slice_release(&e), 0);

	/* The start was reset too. */
	assert_int_equal(sv2shm_buffer_write_all(b, "q", 1), 0);
	v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	assert_int_equal(vlen, 1);
	assert_int_equal(v[0], 'q');
	struct sv2shm_slice q;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &q), 0);
	assert_int_equal(q.len, 1);
	assert_int_equal(q.data[0], 'q');

	/* The slice taken with a start is still correct and releasable. */
	assert_memory_equal(s.data, "456789AB", 8);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(sv2shm_slice_release(&q), 0);

	assert_int_equal(sv2shm_buffer_danger_set_start(NULL, 0), -EINVAL);
	sv2shm_sysbuf_free(sb);
}

/* is_droppable is always true for the system-memory buffer. */
static void test_is_droppable(void **state)
{
	(void)state;
	struct sv2shm_sysbuf *sb = new_sysbuf(0);
	struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);
	assert_true(sv2shm_buffer_is_droppable(b));
	assert_int_equal(sv2shm_buffer_write_all(b, "abc", 3), 0);
	assert_true(sv2shm_buffer_is_droppable(b));
	struct sv2shm_slice s[4];
	for (int i = 0; i < 4; i++) {
		assert_int_equal(sv2shm_buffer_write_all(b, "abc", 3), 0);
		assert_int_equal(sv2shm_buffer_get_data_owned(b, &s[i]), 0);
		assert_true(sv2shm_buffer_is_droppable(b));
	}
	assert_int_equal(s[0].len, 6);
	assert_int_equal(s[1].len, 3);
	for (int i = 0; i < 4; i++)
		assert_int_equal(sv2shm_slice_release(&s[i]), 0);
	assert_true(sv2shm_buffer_is_droppable(b));
	assert_false(sv2shm_buffer_is_droppable(NULL));
	sv2shm_sysbuf_free(sb);
}

/* write / write_all (the seed's Write trait). */
static void test_write(void **state)
{
	(void)state;
	struct sv2shm_sysbuf *sb = new_sysbuf(0);
	struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);

	assert_int_equal(sv2shm_buffer_write(b, "abc", 3), 3);
	assert_int_equal(sv2shm_buffer_write(b, "", 0), 0);
	assert_int_equal(sv2shm_buffer_write(b, NULL, 0), 0);
	assert_int_equal(sv2shm_buffer_write_all(b, "defg", 4), 0);
	assert_int_equal(sv2shm_buffer_write_all(b, NULL, 0), 0);
	assert_int_equal(sv2shm_buffer_len(b), 7);

	/* A big write takes every byte at once. */
	size_t big = 3u << 20;
	uint8_t *src = malloc(big);
	assert_non_null(src);
	for (size_t i = 0; i < big; i++)
		src[i] = pat(i);
	assert_int_equal(sv2shm_buffer_write(b, src, big), (ssize_t)big);
	assert_int_equal(sv2shm_buffer_len(b), 7 + big);

	/* Bad arguments: refused, nothing written. */
	assert_int_equal(sv2shm_buffer_write(b, NULL, 5), -EINVAL);
	assert_int_equal(sv2shm_buffer_last_error(b), -EINVAL);
	assert_int_equal(sv2shm_buffer_write_all(b, NULL, 5), -EINVAL);
	assert_int_equal(sv2shm_buffer_write(NULL, "a", 1), -EINVAL);
	assert_int_equal(sv2shm_buffer_write_all(NULL, "a", 1), -EINVAL);
	assert_int_equal(sv2shm_buffer_len(b), 7 + big);

	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(s.len, 7 + big);
	assert_memory_equal(s.data, "abcdefg", 7);
	assert_memory_equal(s.data + 7, src, big);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	free(src);
	sv2shm_sysbuf_free(sb);
}

/* Nothing written: get_data_owned gives an EMPTY slice, releasable (no-op)
 * exactly once. */
static void test_empty_get_data_owned(void **state)
{
	(void)state;
	struct sv2shm_sysbuf *sb = new_sysbuf(64);
	struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);
	struct sv2shm_slice s;
	memset(&s, 0xa5, sizeof(s));
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_EMPTY);
	assert_int_equal(s.len, 0);
	assert_null(s.data);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_NONE);
	assert_int_equal(sv2shm_slice_release(&s), -EALREADY);

	/* Again after a real slice, and twice in a row. */
	assert_int_equal(sv2shm_buffer_write_all(b, "z", 1), 0);
	struct sv2shm_slice r, e1, e2;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &r), 0);
	assert_int_equal(sv2shm_slice_kind(&r), SV2SHM_SLICE_SYSTEM);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &e1), 0);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &e2), 0);
	assert_int_equal(sv2shm_slice_kind(&e1), SV2SHM_SLICE_EMPTY);
	assert_int_equal(sv2shm_slice_kind(&e2), SV2SHM_SLICE_EMPTY);
	assert_int_equal(e1.len + e2.len, 0);
	assert_int_equal(sv2shm_slice_release(&e1), 0);
	assert_int_equal(sv2shm_slice_release(&e2), 0);
	assert_int_equal(sv2shm_slice_release(&r), 0);

	/* The buffer still works afterwards. */
	assert_int_equal(sv2shm_buffer_write_all(b, "after", 5), 0);
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &r), 0);
	assert_int_equal(r.len, 5);
	assert_memory_equal(r.data, "after", 5);
	assert_int_equal(sv2shm_slice_release(&r), 0);

	assert_int_equal(sv2shm_buffer_get_data_owned(b, NULL), -EINVAL);
	assert_int_equal(sv2shm_buffer_get_data_owned(NULL, &r), -EINVAL);
	sv2shm_slice_release(&r); /* r is NONE: -EALREADY, harmless */
	sv2shm_sysbuf_free(sb);
}

/* Release frees each slice's block (valgrind / ASan check the leaks): many
 * slices of many sizes, released out of order, some after the buffer is gone. */
static void test_release_frees(void **state)
{
	(void)state;
	enum { N = 300 };
	struct sv2shm_slice *s = calloc(N, sizeof(*s));
	assert_non_null(s);
	struct sv2shm_sysbuf *sb = new_sysbuf(0);
	struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);
	for (size_t i = 0; i < N; i++) {
		size_t len = (i * 37u) % 5000u;
		uint8_t *w = sv2shm_buffer_get_writable(b, len);
		assert_non_null(w);
		for (size_t j = 0; j < len; j++)
			w[j] = pat(i + j);
		assert_int_equal(sv2shm_buffer_get_data_owned(b, &s[i]), 0);
		assert_int_equal(sv2shm_slice_kind(&s[i]), len ? SV2SHM_SLICE_SYSTEM : SV2SHM_SLICE_EMPTY);
		assert_int_equal(s[i].len, len);
	}
	/* Release the odd ones now, the even ones after the buffer is freed. */
	for (size_t i = 1; i < N; i += 2) {
		for (size_t j = 0; j < s[i].len; j++)
			assert_int_equal(s[i].data[j], pat(i + j));
		assert_int_equal(sv2shm_slice_release(&s[i]), 0);
	}
	/* A partially written slice is discarded with the buffer. */
	assert_non_null(sv2shm_buffer_get_writable(b, 777));
	sv2shm_sysbuf_free(sb);
	for (size_t i = 0; i < N; i += 2) {
		for (size_t j = 0; j < s[i].len; j++)
			assert_int_equal(s[i].data[j], pat(i + j));
		assert_int_equal(sv2shm_slice_release(&s[i]), 0);
	}
	for (size_t i = 0; i < N; i++)
		assert_int_equal(sv2shm_slice_release(&s[i]), -EALREADY);
	free(s);

	assert_int_equal(sv2shm_slice_release(NULL), -EINVAL);
	assert_int_equal(sv2shm_slice_kind(NULL), SV2SHM_SLICE_NONE);
}

/* get_writable(SIZE_MAX) after 1 byte would overflow the length: NULL,
 * -EOVERFLOW, and the byte written so far is kept. */
static void test_overflow(void **state)
{
	(void)state;
	struct sv2shm_sysbuf *sb = new_sysbuf(0);
	struct sv2shm_buffer *b = sv2shm_sysbuf_buffer(sb);
	assert_int_equal(sv2shm_buffer_write_all(b, "k", 1), 0);
	assert_null(sv2shm_buffer_get_writable(b, SIZE_MAX));
	assert_int_equal(sv2shm_buffer_last_error(b), -EOVERFLOW);
	assert_int_equal(sv2shm_buffer_len(b), 1);
	size_t vlen;
	uint8_t *v = sv2shm_buffer_get_data_by_ref(b, SIZE_MAX, &vlen);
	assert_int_equal(vlen, 1);
	assert_int_equal(v[0], 'k');

	/* A write longer than SSIZE_MAX cannot be reported: -EOVERFLOW. */
	static const uint8_t dummy[1] = {0};
	assert_int_equal(sv2shm_buffer_write(b, dummy, SIZE_MAX), -EOVERFLOW);
	assert_int_equal(sv2shm_buffer_write_all(b, dummy, (size_t)SSIZE_MAX + 1u), -EOVERFLOW);
	assert_int_equal(sv2shm_buffer_len(b), 1);

	/* Still usable afterwards. */
	assert_int_equal(sv2shm_buffer_write_all(b, "lm", 2), 0);
	struct sv2shm_slice s;
	assert_int_equal(sv2shm_buffer_get_data_owned(b, &s), 0);
	assert_int_equal(s.len, 3);
	assert_memory_equal(s.data, "klm", 3);
	assert_int_equal(sv2shm_slice_release(&s), 0);

	/* With nothing written, SIZE_MAX does not overflow the length but
	 * cannot be allocated either; that path is not exercised here because
	 * sanitizer allocators abort on such requests by default. */
	sv2shm_sysbuf_free(sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_writable_growth),
		cmocka_unit_test(test_hint),
		cmocka_unit_test(test_get_data_owned_gives_away),
		cmocka_unit_test(test_get_data_by_ref),
		cmocka_unit_test(test_len),
		cmocka_unit_test(test_danger_set_start),
		cmocka_unit_test(test_is_droppable),
		cmocka_unit_test(test_write),
		cmocka_unit_test(test_empty_get_data_owned),
		cmocka_unit_test(test_release_frees),
		cmocka_unit_test(test_overflow),
	};
	return cmocka_run_group_tests_name("sysbuf", tests, NULL, NULL);
}
