/*
 * The Sv2 frame decoder on both buffer kinds: streams of random frames
 * decoded from memory in random chunks (and one byte at a time), from a pipe
 * written by a thread, from a socketpair written by a forked child, and from a
 * non-blocking pipe; malformed streams; zero-length payloads; a full pool
 * under the FAIL policy. Bulk reads: many frames per read(), split off the
 * buffer without a copy (and their counts, sv2shm_frame_decoder_stats()),
 * no free slot under each policy, feed() and read_fd() handing over to each
 * other; the real Sv2 frames of ../shared/sv2-frames as one stream, cut at
 * every byte, in 1..7-byte pieces, truncated.
 *
 * The random streams are reproducible: the seed is printed, and
 * SV2SHM_TEST_SEED=<n> replays one.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sv2shm/sv2shm.h"

#define HDR SV2SHM_FRAME_HEADER_SIZE
#define MAX_LEN 70000u

static uint64_t g_seed = 0x5eed5a2;

/* ------------------------------------------------------------------------- */
/* Random numbers (splitmix64)                                                */
/* ------------------------------------------------------------------------- */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static size_t rnd_range(struct rng *r, size_t lo, size_t hi)
{
	return lo + (size_t)(rnd(r) % (uint64_t)(hi - lo + 1));
}

/* A chunk size: mostly small, sometimes large. */
static size_t rnd_chunk(struct rng *r, size_t max)
{
	size_t top;
	switch (rnd(r) % 10) {
	case 0: case 1: case 2:
		top = 8;
		break;
	case 3: case 4: case 5:
		top = 100;
		break;
	case 6: case 7: case 8:
		top = 10000;
		break;
	default:
		top = 200000;
		break;
	}
	if (top > max)
		top = max;
	return rnd_range(r, 1, top);
}

/* ------------------------------------------------------------------------- */
/* Streams of encoded frames                                                  */
/* ------------------------------------------------------------------------- */

struct expect {
	uint16_t ext;
	uint8_t type;
	uint32_t len;
	size_t off; /* of the header in the stream */
};

struct stream {
	uint8_t *bytes;
	size_t size;
	struct expect *f;
	size_t n;
};

static uint32_t rnd_len(struct rng *r)
{
	switch (rnd(r) % 20) {
	case 0: case 1: case 2: case 3:
		return 0;
	case 4: case 5: case 6: case 7: case 8: case 9: case 10: case 11:
		return (uint32_t)rnd_range(r, 1, 100);
	case 12: case 13: case 14: case 15: case 16:
		return (uint32_t)rnd_range(r, 101, 5000);
	default:
		return (uint32_t)rnd_range(r, 5001, MAX_LEN);
	}
}

/* n random frames; the first ones pin the edges (0, 1, MAX_LEN, channel bit). */
static void stream_make(struct stream *s, size_t n, uint64_t seed)
{
	struct rng r = {seed};
	s->f = calloc(n, sizeof(*s->f));
	assert_non_null(s->f);
	s->n = n;
	size_t size = 0;
	for (size_t i = 0; i < n; i++) {
		struct expect *e = &s->f[i];
		e->ext = (uint16_t)rnd(&r);
		e->type = (uint8_t)rnd(&r);
		e->len = rnd_len(&r);
		if (i == 0)
			e->len = 0;
		if (i == 1) {
			e->len = MAX_LEN;
			e->ext |= SV2SHM_FRAME_CHANNEL_BIT;
		}
		if (i == 2) {
			e->len = 1;
			e->ext &= (uint16_t)~SV2SHM_FRAME_CHANNEL_BIT;
		}
		e->off = size;
		size += HDR + e->len;
	}
	s->bytes = malloc(size ? size : 1);
	assert_non_null(s->bytes);
	s->size = size;
	for (size_t i = 0; i < n; i++) {
		struct expect *e = &s->f[i];
		assert_int_equal(sv2shm_frame_header_encode(s->bytes + e->off, e->ext, e->type, e->len), 0);
		for (size_t j = 0; j < e->len; j++)
			s->bytes[e->off + HDR + j] = (uint8_t)rnd(&r);
	}
}

/* A stream of explicit frames: lens[i] payload bytes each. */
static void stream_of(struct stream *s, const uint32_t *lens, size_t n, uint64_t seed)
{
	stream_make(s, n, seed);
	struct rng r = {seed ^ 0xabcdef};
	size_t size = 0;
	for (size_t i = 0; i < n; i++) {
		s->f[i].len = lens[i];
		s->f[i].off = size;
		size += HDR + lens[i];
	}
	free(s->bytes);
	s->bytes = malloc(size ? size : 1);
	assert_non_null(s->bytes);
	s->size = size;
	for (size_t i = 0; i < n; i++) {
		struct expect *e = &s->f[i];
		assert_int_equal(sv2shm_frame_header_encode(s->bytes + e->off, e->ext, e->type, e->len), 0);
		for (size_t j = 0; j < e->len; j++)
			s->bytes[e->off + HDR + j] = (uint8_t)rnd(&r);
	}
}

static void stream_free(struct stream *s)
{
	free(s->bytes);
	free(s->f);
	memset(s, 0, sizeof(*s));
}

/* ------------------------------------------------------------------------- */
/* Buffer kinds                                                               */
/* ------------------------------------------------------------------------- */

enum kind { K_SYSBUF, K_POOL_BIG, K_POOL_SMALL, K_POOL_FAIL };

static const char *const kind_names[] = {"sysbuf", "pool(1MiB,8,fallback)", "pool(100000,4,fallback)",
					 "pool(200000,4,FAIL)"};

static enum kind kinds[] = {K_SYSBUF, K_POOL_BIG, K_POOL_SMALL, K_POOL_FAIL};

struct testbuf {
	enum kind kind;
	struct sv2shm_sysbuf *sb;
	struct sv2shm_pool *pool;
	struct sv2shm_buffer *b;
};

static void pool_open(struct testbuf *t, uint64_t cap, unsigned slots, int policy)
{
	memset(t, 0, sizeof(*t));
	t->kind = policy == SV2SHM_POOL_FAIL ? K_POOL_FAIL : K_POOL_BIG;
	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	o.capacity = cap;
	o.slots = slots;
	o.policy = policy;
	assert_int_equal(sv2shm_pool_new(&o, &t->pool), 0);
	t->b = sv2shm_pool_buffer(t->pool);
	assert_non_null(t->b);
}

static void tb_open(struct testbuf *t, enum kind k)
{
	switch (k) {
	case K_SYSBUF:
		memset(t, 0, sizeof(*t));
		assert_int_equal(sv2shm_sysbuf_new(0, &t->sb), 0);
		t->b = sv2shm_sysbuf_buffer(t->sb);
		break;
	case K_POOL_BIG:
		pool_open(t, 1u << 20, 8, SV2SHM_POOL_FALLBACK);
		break;
	case K_POOL_SMALL:
		pool_open(t, 100000, 4, SV2SHM_POOL_FALLBACK);
		break;
	case K_POOL_FAIL:
		pool_open(t, 200000, 4, SV2SHM_POOL_FAIL);
		break;
	}
	t->kind = k;
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
/* A consumer: checks each decoded frame and holds a few of them live         */
/* ------------------------------------------------------------------------- */

#define MAX_HELD 16

struct consumer {
	const struct stream *s;
	const struct testbuf *tb;
	struct rng rng;
	size_t next; /* index of the next expected frame */
	size_t max_held;
	struct sv2shm_frame held[MAX_HELD]; /* oldest first */
	size_t held_idx[MAX_HELD];
	size_t nheld;
	size_t n_pool, n_system, n_eagain;
	int failed;
};

static void consumer_init(struct consumer *c, const struct stream *s, const struct testbuf *tb, size_t max_held,
			  uint64_t seed)
{
	memset(c, 0, sizeof(*c));
	c->s = s;
	c->tb = tb;
	c->rng.s = seed;
	c->max_held = max_held;
}

static int fail_at(struct consumer *c, size_t idx, const char *what)
{
	if (!c->failed)
		print_error("frame %zu: %s\n", idx, what);
	c->failed = 1;
	return -1;
}

/* Every field and every byte of frame `idx`. */
static int frame_matches(struct consumer *c, size_t idx, const struct sv2shm_frame *f)
{
	const struct expect *e = &c->s->f[idx];
	if (f->extension_type != e->ext)
		return fail_at(c, idx, "extension_type");
	if (f->channel_msg != ((e->ext & SV2SHM_FRAME_CHANNEL_BIT) != 0))
		return fail_at(c, idx, "channel_msg");
	if (f->msg_type != e->type)
		return fail_at(c, idx, "msg_type");
	if (f->msg_length != e->len)
		return fail_at(c, idx, "msg_length");
	if (f->slice.len != HDR + (size_t)e->len)
		return fail_at(c, idx, "slice length is not header + payload");
	if (!f->slice.data || memcmp(f->slice.data, c->s->bytes + e->off, HDR + (size_t)e->len) != 0)
		return fail_at(c, idx, "slice bytes differ from the encoded frame");
	int k = sv2shm_slice_kind(&f->slice);
	if (c->tb->sb && k != SV2SHM_SLICE_SYSTEM)
		return fail_at(c, idx, "sysbuf frame is not a SYSTEM slice");
	if (k != SV2SHM_SLICE_SYSTEM && k != SV2SHM_SLICE_POOL)
		return fail_at(c, idx, "bad slice kind");
	if (c->tb->kind == K_POOL_FAIL && k != SV2SHM_SLICE_POOL)
		return fail_at(c, idx, "FAIL pool served system memory");
	return 0;
}

static int consumer_release(struct consumer *c, size_t i)
{
	/* A live slice's bytes never change. */
	if (frame_matches(c, c->held_idx[i], &c->held[i]) < 0)
		return -1;
	if (sv2shm_slice_release(&c->held[i].slice) != 0)
		return fail_at(c, c->held_idx[i], "release failed");
	memmove(&c->held[i], &c->held[i + 1], (c->nheld - i - 1) * sizeof(c->held[0]));
	memmove(&c->held_idx[i], &c->held_idx[i + 1], (c->nheld - i - 1) * sizeof(c->held_idx[0]));
	c->nheld--;
	return 0;
}

static int consumer_release_all(struct consumer *c)
{
	int r = 0;
	while (c->nheld)
		if (consumer_release(c, 0) < 0) {
			/* Still free what is held, so that a failure does not cascade. */
			sv2shm_slice_release(&c->held[0].slice);
			memmove(&c->held[0], &c->held[1], (c->nheld - 1) * sizeof(c->held[0]));
			memmove(&c->held_idx[0], &c->held_idx[1], (c->nheld - 1) * sizeof(c->held_idx[0]));
			c->nheld--;
			r = -1;
		}
	return r;
}

/* A frame came out of the decoder: check it, hold it, maybe release one. */
static int consumer_take(struct consumer *c, struct sv2shm_frame *f)
{
	if (c->next >= c->s->n) {
		sv2shm_slice_release(&f->slice);
		return fail_at(c, c->next, "more frames than were sent");
	}
	size_t idx = c->next++;
	if (frame_matches(c, idx, f) < 0) {
		sv2shm_slice_release(&f->slice);
		return -1;
	}
	if (sv2shm_slice_kind(&f->slice) == SV2SHM_SLICE_POOL)
		c->n_pool++;
	else
		c->n_system++;
	c->held[c->nheld] = *f;
	c->held_idx[c->nheld] = idx;
	c->nheld++;
	memset(f, 0, sizeof(*f));
	while (c->nheld > c->max_held || (c->nheld && rnd(&c->rng) % 3 == 0))
		if (consumer_release(c, (size_t)(rnd(&c->rng) % c->nheld)) < 0)
			return -1;
	return 0;
}

/* The buffer said -EAGAIN: legal only for a FAIL pool; free the oldest. */
static int consumer_on_eagain(struct consumer *c)
{
	c->n_eagain++;
	if (c->tb->kind != K_POOL_FAIL)
		return fail_at(c, c->next, "-EAGAIN from a buffer that falls back");
	if (!c->nheld)
		return fail_at(c, c->next, "-EAGAIN with no slice live");
	return consumer_release(c, 0);
}

/* Checks after a whole stream: every frame seen, counters consistent. */
static void consumer_finish(struct consumer *c, struct sv2shm_pool_stats *before)
{
	assert_int_equal(consumer_release_all(c), 0);
	assert_int_equal(c->failed, 0);
	assert_int_equal(c->next, c->s->n);
	assert_int_equal(c->n_pool + c->n_system, c->s->n);
	if (c->tb->pool) {
		struct sv2shm_pool_stats st;
		assert_int_equal(sv2shm_pool_stats(c->tb->pool, &st), 0);
		assert_int_equal(st.from_pool - before->from_pool, c->n_pool);
		assert_int_equal(st.from_system - before->from_system, c->n_system);
		assert_int_equal(st.live, 0);
		assert_int_equal(st.refused_releases, 0);
	} else {
		assert_int_equal(c->n_pool, 0);
	}
	if (c->tb->kind == K_POOL_FAIL)
		assert_int_equal(c->n_system, 0);
	else
		assert_int_equal(c->n_eagain, 0);
}

static void stats_of(const struct testbuf *tb, struct sv2shm_pool_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (tb->pool)
		assert_int_equal(sv2shm_pool_stats(tb->pool, st), 0);
}

/* ------------------------------------------------------------------------- */
/* Decoding loops                                                             */
/* ------------------------------------------------------------------------- */

/* Feed the stream from memory in chunks of rnd_chunk(max_chunk) bytes (1 for
 * max_chunk == 1). */
static void decode_memory(struct sv2shm_frame_decoder *d, struct consumer *c, struct rng *r, size_t max_chunk)
{
	const struct stream *s = c->s;
	size_t pos = 0;
	while (pos < s->size && !c->failed) {
		size_t chunk = max_chunk == 1 ? 1 : rnd_chunk(r, max_chunk);
		if (chunk > s->size - pos)
			chunk = s->size - pos;
		const uint8_t *p = s->bytes + pos;
		size_t left = chunk;
		bool retry = false;
		/* After -EAGAIN the kept header is retried even with no input left
		 * (a zero-length frame may end the stream). */
		while ((left || retry) && !c->failed) {
			retry = false;
			size_t used = SIZE_MAX;
			struct sv2shm_frame f;
			memset(&f, 0, sizeof(f));
			int rc = sv2shm_frame_decoder_feed(d, p, left, &used, &f);
			if (used > left) {
				fail_at(c, c->next, "feed consumed more than it was given");
				break;
			}
			p += used;
			left -= used;
			if (rc == 1) {
				consumer_take(c, &f);
			} else if (rc == 0) {
				if (left != 0)
					fail_at(c, c->next, "feed returned 0 with input left");
				if (!sv2shm_frame_decoder_in_frame(d))
					fail_at(c, c->next, "feed returned 0 but the decoder is not in a frame");
			} else if (rc == -EAGAIN) {
				if (!sv2shm_frame_decoder_in_frame(d))
					fail_at(c, c->next, "-EAGAIN lost the partial frame");
				consumer_on_eagain(c);
				retry = true;
			} else {
				print_error("feed: %s\n", sv2shm_strerror(rc));
				fail_at(c, c->next, "feed failed");
			}
		}
		pos += chunk;
	}
	if (!c->failed && sv2shm_frame_decoder_in_frame(d))
		fail_at(c, c->next, "decoder still in a frame at the end of the stream");
}

/* read_fd until the stream ends; returns the final code (expect -ENODATA).
 * For a non-blocking fd, returns 0 when the fd is drained. */
static int decode_fd(struct sv2shm_frame_decoder *d, struct consumer *c, int fd)
{
	for (;;) {
		struct sv2shm_frame f;
		memset(&f, 0, sizeof(f));
		int rc = sv2shm_frame_decoder_read_fd(d, fd, &f);
		if (rc == 1) {
			if (consumer_take(c, &f) < 0)
				return -1000;
		} else if (rc == -EAGAIN) {
			if (consumer_on_eagain(c) < 0)
				return -1000;
		} else {
			return rc;
		}
	}
}

/* Write bytes to fd in random pieces; returns 0 or -errno. */
static int write_pieces(int fd, const uint8_t *bytes, size_t size, uint64_t seed, size_t max_piece)
{
	struct rng r = {seed};
	size_t pos = 0;
	while (pos < size) {
		size_t piece = rnd_chunk(&r, max_piece);
		if (piece > size - pos)
			piece = size - pos;
		while (piece) {
			ssize_t n = write(fd, bytes + pos, piece);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			pos += (size_t)n;
			piece -= (size_t)n;
		}
		if (rnd(&r) % 4 == 0)
			sched_yield(); /* let the reader see partial frames */
	}
	return 0;
}

/* Write everything, blocking. */
static void write_full(int fd, const void *p, size_t n)
{
	assert_int_equal(write_pieces(fd, p, n, 1, n ? n : 1), 0);
}

/* ------------------------------------------------------------------------- */
/* Random streams                                                             */
/* ------------------------------------------------------------------------- */

/* (a) memory, random-size chunks. */
static void test_stream_memory_chunks(void **state)
{
	(void)state;
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		uint64_t seed = g_seed + ki;
		struct stream s;
		stream_make(&s, 400, seed);
		struct testbuf tb;
		tb_open(&tb, kinds[ki]);
		struct sv2shm_pool_stats before;
		stats_of(&tb, &before);
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
		struct consumer c;
		consumer_init(&c, &s, &tb, 6, seed * 3);
		struct rng r = {seed * 7};
		decode_memory(d, &c, &r, 200000);
		if (c.failed)
			print_error("kind %s, seed %" PRIu64 "\n", kind_names[kinds[ki]], seed);
		consumer_finish(&c, &before);
		if (kinds[ki] == K_POOL_FAIL)
			assert_true(c.n_eagain > 0); /* the FAIL path was exercised */
		if (kinds[ki] == K_POOL_SMALL)
			assert_true(c.n_system > 0 && c.n_pool > 0);
		sv2shm_frame_decoder_free(d);
		tb_close(&tb);
		stream_free(&s);
	}
}

/* (a) memory, one byte at a time, with in_frame() checked at every byte. */
static void test_stream_memory_bytewise(void **state)
{
	(void)state;
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		uint64_t seed = g_seed + 100 + ki;
		struct stream s;
		stream_make(&s, 120, seed);
		struct testbuf tb;
		tb_open(&tb, kinds[ki]);
		struct sv2shm_pool_stats before;
		stats_of(&tb, &before);
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, MAX_LEN, &d), 0);
		assert_false(sv2shm_frame_decoder_in_frame(d));
		struct consumer c;
		consumer_init(&c, &s, &tb, 5, seed);

		/* By hand for the first frames: in_frame follows the bytes. */
		size_t pos = 0;
		for (size_t fi = 0; fi < 3 && !c.failed; fi++) {
			const struct expect *e = &s.f[fi];
			for (size_t j = 0; j < HDR + e->len; j++) {
				size_t used = 9;
				struct sv2shm_frame f;
				int rc = sv2shm_frame_decoder_feed(d, s.bytes + pos, 1, &used, &f);
				pos++;
				assert_int_equal(used, 1);
				if (j + 1 == HDR + e->len) {
					assert_int_equal(rc, 1);
					assert_false(sv2shm_frame_decoder_in_frame(d));
					assert_int_equal(consumer_take(&c, &f), 0);
				} else {
					assert_int_equal(rc, 0);
					assert_true(sv2shm_frame_decoder_in_frame(d));
				}
			}
		}
		/* The rest of the stream, one byte per call (none when retrying a
		 * header the pool refused). */
		bool pending = false;
		while ((pos < s.size || pending) && !c.failed) {
			size_t n = pos < s.size ? 1 : 0;
			size_t used = 9;
			struct sv2shm_frame f;
			int rc = sv2shm_frame_decoder_feed(d, s.bytes + pos, n, &used, &f);
			assert_true(used <= n);
			pos += used;
			bool was_pending = pending;
			pending = false;
			if (rc == -EAGAIN) {
				assert_int_equal(consumer_on_eagain(&c), 0);
				pending = true;
				continue;
			}
			/* A retried zero-length frame completes without the new byte. */
			if (!(was_pending && rc == 1))
				assert_int_equal(used, n);
			if (rc == 1)
				consumer_take(&c, &f);
			else
				assert_int_equal(rc, 0);
		}
		if (c.failed)
			print_error("kind %s, seed %" PRIu64 "\n", kind_names[kinds[ki]], seed);
		assert_false(sv2shm_frame_decoder_in_frame(d));
		consumer_finish(&c, &before);
		sv2shm_frame_decoder_free(d);
		tb_close(&tb);
		stream_free(&s);
	}
}

/* (b) a pipe written in random pieces by a thread; blocking read_fd. */
struct writer_arg {
	int fd;
	const uint8_t *bytes;
	size_t size;
	uint64_t seed;
	int err;
};

static void *writer_main(void *arg)
{
	struct writer_arg *w = arg;
	w->err = write_pieces(w->fd, w->bytes, w->size, w->seed, 100000);
	close(w->fd);
	return NULL;
}

static void test_stream_pipe_thread(void **state)
{
	(void)state;
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		uint64_t seed = g_seed + 200 + ki;
		struct stream s;
		stream_make(&s, 300, seed);
		struct testbuf tb;
		tb_open(&tb, kinds[ki]);
		struct sv2shm_pool_stats before;
		stats_of(&tb, &before);
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
		struct consumer c;
		consumer_init(&c, &s, &tb, 6, seed);

		int p[2];
		assert_int_equal(pipe(p), 0);
		struct writer_arg w = {p[1], s.bytes, s.size, seed, 0};
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
		int rc = decode_fd(d, &c, p[0]);
		close(p[0]); /* a writer still writing (after a failure) gets EPIPE */
		assert_int_equal(pthread_join(th, NULL), 0);
		if (c.failed || rc != -ENODATA)
			print_error("kind %s, seed %" PRIu64 ", rc %d\n", kind_names[kinds[ki]], seed, rc);
		assert_int_equal(w.err, 0);
		assert_int_equal(rc, -ENODATA);
		assert_false(sv2shm_frame_decoder_in_frame(d));
		consumer_finish(&c, &before);
		/* Clean end is sticky but harmless. */
		struct sv2shm_frame f;
		int q[2];
		assert_int_equal(pipe(q), 0);
		close(q[1]);
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, q[0], &f), -ENODATA);
		close(q[0]);
		sv2shm_frame_decoder_free(d);
		tb_close(&tb);
		stream_free(&s);
	}
}

/* (b) a socketpair written in random pieces by a forked child. */
static void test_stream_socketpair_fork(void **state)
{
	(void)state;
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		uint64_t seed = g_seed + 300 + ki;
		struct stream s;
		stream_make(&s, 300, seed);
		struct testbuf tb;
		tb_open(&tb, kinds[ki]);
		struct sv2shm_pool_stats before;
		stats_of(&tb, &before);
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
		struct consumer c;
		consumer_init(&c, &s, &tb, 6, seed);

		int sv[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		fflush(NULL);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(sv[0]);
			int r = write_pieces(sv[1], s.bytes, s.size, seed, 100000);
			close(sv[1]);
			_exit(r == 0 ? 0 : 1);
		}
		close(sv[1]);
		int rc = decode_fd(d, &c, sv[0]);
		close(sv[0]);
		int status = 0;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (c.failed || rc != -ENODATA)
			print_error("kind %s, seed %" PRIu64 ", rc %d\n", kind_names[kinds[ki]], seed, rc);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		assert_int_equal(rc, -ENODATA);
		consumer_finish(&c, &before);
		sv2shm_frame_decoder_free(d);
		tb_close(&tb);
		stream_free(&s);
	}
}

/* (c) a non-blocking pipe: read_fd returns 0 when no data is there. */
static void test_stream_nonblocking(void **state)
{
	(void)state;
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		uint64_t seed = g_seed + 400 + ki;
		struct stream s;
		stream_make(&s, 250, seed);
		struct testbuf tb;
		tb_open(&tb, kinds[ki]);
		struct sv2shm_pool_stats before;
		stats_of(&tb, &before);
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
		struct consumer c;
		consumer_init(&c, &s, &tb, 6, seed);
		int p[2];
		assert_int_equal(pipe2(p, O_NONBLOCK), 0);
		struct sv2shm_frame f;

		/* Nothing written yet. */
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 0);
		assert_false(sv2shm_frame_decoder_in_frame(d));

		/* Frame 1 (MAX_LEN payload) by hand: 2 header bytes, 4 more, part of
		 * the payload, the rest. */
		const struct expect *e1 = &s.f[1];
		size_t pos = 0;
		write_full(p[1], s.bytes, HDR); /* frame 0: empty payload */
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 1);
		assert_int_equal(consumer_take(&c, &f), 0);
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 0);
		pos = e1->off;
		write_full(p[1], s.bytes + pos, 2);
		pos += 2;
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 0);
		assert_true(sv2shm_frame_decoder_in_frame(d));
		write_full(p[1], s.bytes + pos, 4);
		pos += 4;
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 0);
		assert_true(sv2shm_frame_decoder_in_frame(d));
		write_full(p[1], s.bytes + pos, 30000);
		pos += 30000;
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 0);
		assert_true(sv2shm_frame_decoder_in_frame(d));
		write_full(p[1], s.bytes + pos, MAX_LEN - 30000);
		pos += MAX_LEN - 30000;
		assert_int_equal(pos, s.f[2].off);
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 1);
		assert_int_equal(consumer_take(&c, &f), 0);
		assert_false(sv2shm_frame_decoder_in_frame(d));
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 0);

		/* The rest: write what the pipe takes, drain with read_fd until it
		 * says 0 (no data), repeat. */
		int p1_flags = fcntl(p[1], F_GETFL);
		assert_true(p1_flags >= 0);
		assert_int_equal(fcntl(p[1], F_SETFL, p1_flags | O_NONBLOCK), 0);
		struct rng r = {seed * 5};
		size_t zeros = 0;
		while (pos < s.size && !c.failed) {
			size_t piece = rnd_chunk(&r, 65536);
			if (piece > s.size - pos)
				piece = s.size - pos;
			ssize_t n = write(p[1], s.bytes + pos, piece);
			if (n < 0)
				assert_int_equal(errno, EAGAIN);
			else
				pos += (size_t)n;
			int rc = decode_fd(d, &c, p[0]);
			assert_int_equal(rc, 0);
			zeros++;
			/* Drained: a further call reads nothing. */
			char probe;
			assert_int_equal(read(p[0], &probe, 1), -1);
			assert_int_equal(errno, EAGAIN);
		}
		assert_true(zeros > 10);
		close(p[1]);
		int rc = decode_fd(d, &c, p[0]);
		if (c.failed || rc != -ENODATA)
			print_error("kind %s, seed %" PRIu64 ", rc %d\n", kind_names[kinds[ki]], seed, rc);
		assert_int_equal(rc, -ENODATA);
		close(p[0]);
		consumer_finish(&c, &before);
		sv2shm_frame_decoder_free(d);
		tb_close(&tb);
		stream_free(&s);
	}
}

/* feed() and read_fd() share the decoder's state: a frame started from
 * memory is finished from an fd, and the other way round. */
static void test_mixed_feed_and_fd(void **state)
{
	(void)state;
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		static const uint32_t lens[] = {500, 0, 70000, 3};
		struct stream s;
		stream_of(&s, lens, 4, g_seed + 500);
		struct testbuf tb;
		tb_open(&tb, kinds[ki]);
		struct sv2shm_pool_stats before;
		stats_of(&tb, &before);
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
		struct consumer c;
		consumer_init(&c, &s, &tb, 2, 1);
		int p[2];
		assert_int_equal(pipe2(p, O_NONBLOCK), 0);
		struct sv2shm_frame f;
		size_t used;

		/* Frame 0: 3 header bytes by feed, the rest through the pipe. */
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes, 3, &used, &f), 0);
		assert_int_equal(used, 3);
		write_full(p[1], s.bytes + 3, s.f[1].off - 3);
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 1);
		assert_int_equal(consumer_take(&c, &f), 0);
		/* Frame 1 (empty) wholly by feed, frame 2: header + 100 bytes by
		 * feed, then 60000 bytes through the pipe, the rest by feed. */
		size_t pos = s.f[1].off;
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &f), 1);
		assert_int_equal(used, HDR);
		assert_int_equal(consumer_take(&c, &f), 0);
		pos += used;
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, HDR + 100, &used, &f), 0);
		assert_int_equal(used, HDR + 100);
		pos += used;
		write_full(p[1], s.bytes + pos, 60000);
		pos += 60000;
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 0);
		assert_true(sv2shm_frame_decoder_in_frame(d));
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &f), 1);
		assert_int_equal(used, 70000 - 100 - 60000);
		assert_int_equal(consumer_take(&c, &f), 0);
		pos += used;
		/* Frame 3 through the pipe. */
		write_full(p[1], s.bytes + pos, s.size - pos);
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 1);
		assert_int_equal(consumer_take(&c, &f), 0);
		close(p[1]);
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -ENODATA);
		close(p[0]);
		consumer_finish(&c, &before);
		sv2shm_frame_decoder_free(d);
		tb_close(&tb);
		stream_free(&s);
	}
}

/* ------------------------------------------------------------------------- */
/* Malformed and edge streams                                                 */
/* ------------------------------------------------------------------------- */

/* A header announcing more than max_payload: -EMSGSIZE, and the decoder
 * stays in that error (feed and read_fd). Exactly max_payload is fine. */
static void test_msgsize(void **state)
{
	(void)state;
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		static const uint32_t lens[] = {1000, 0, 1001, 5};
		struct stream s;
		stream_of(&s, lens, 4, g_seed + 600);
		struct testbuf tb;
		tb_open(&tb, kinds[ki]);
		struct sv2shm_pool_stats before;
		stats_of(&tb, &before);

		/* From memory. */
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 1000, &d), 0);
		struct consumer c;
		consumer_init(&c, &s, &tb, 1, 1);
		struct sv2shm_frame f;
		size_t used, pos = 0;
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes, s.size, &used, &f), 1);
		assert_int_equal(used, HDR + 1000);
		assert_int_equal(consumer_take(&c, &f), 0);
		pos += used;
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &f), 1);
		assert_int_equal(used, HDR);
		assert_int_equal(consumer_take(&c, &f), 0);
		pos += used;
		memset(&f, 0x77, sizeof(f));
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &f), -EMSGSIZE);
		assert_true(used <= HDR);
		/* Stays in the error state, whatever comes next. */
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + s.f[3].off, HDR + 5, &used, &f), -EMSGSIZE);
		assert_int_equal(used, 0);
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes, HDR, &used, &f), -EMSGSIZE);
		assert_false(sv2shm_frame_decoder_in_frame(d));
		int p[2];
		assert_int_equal(pipe(p), 0);
		write_full(p[1], s.bytes + s.f[3].off, HDR + 5);
		close(p[1]);
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -EMSGSIZE);
		close(p[0]);
		sv2shm_frame_decoder_free(d);
		/* Nothing of the bad frame is left in the buffer. */
		assert_int_equal(sv2shm_buffer_len(tb.b), 0);

		/* From a pipe. */
		struct consumer c2;
		consumer_init(&c2, &s, &tb, 1, 2);
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 1000, &d), 0);
		assert_int_equal(pipe(p), 0);
		write_full(p[1], s.bytes, s.size);
		close(p[1]);
		assert_int_equal(decode_fd(d, &c2, p[0]), -EMSGSIZE);
		assert_int_equal(c2.next, 2);
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -EMSGSIZE);
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes, HDR, &used, &f), -EMSGSIZE);
		close(p[0]);
		sv2shm_frame_decoder_free(d);
		assert_int_equal(consumer_release_all(&c), 0);
		assert_int_equal(consumer_release_all(&c2), 0);
		assert_int_equal(c.failed + c2.failed, 0);

		/* The buffer is fine afterwards. */
		struct sv2shm_slice sl;
		assert_int_equal(sv2shm_buffer_write_all(tb.b, "ok", 2), 0);
		assert_int_equal(sv2shm_buffer_get_data_owned(tb.b, &sl), 0);
		assert_int_equal(sl.len, 2);
		assert_memory_equal(sl.data, "ok", 2);
		assert_int_equal(sv2shm_slice_release(&sl), 0);

		/* The largest max_payload is 2^24-1; more is refused. */
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, SV2SHM_FRAME_MAX_PAYLOAD + 1, &d), -EINVAL);
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, SV2SHM_FRAME_MAX_PAYLOAD, &d), 0);
		sv2shm_frame_decoder_free(d);
		tb_close(&tb);
		stream_free(&s);
	}
}

/* A stream ending inside a frame: -EPROTO (mid-header, right after the
 * header, mid-payload), and it stays. */
static void test_truncated(void **state)
{
	(void)state;
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		static const uint32_t lens[] = {40, 500};
		struct stream s;
		stream_of(&s, lens, 2, g_seed + 700);
		/* Cut points inside frame 1: in the header, at its end, in the payload,
		 * one byte short. */
		size_t cuts[] = {s.f[1].off + 1, s.f[1].off + 5, s.f[1].off + HDR, s.f[1].off + HDR + 200,
				 s.size - 1};
		for (size_t ci = 0; ci < sizeof(cuts) / sizeof(cuts[0]); ci++) {
			struct testbuf tb;
			tb_open(&tb, kinds[ki]);
			struct sv2shm_frame_decoder *d = NULL;
			assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
			struct consumer c;
			consumer_init(&c, &s, &tb, 4, 1);

			/* Blocking pipe closed after the cut. */
			int p[2];
			assert_int_equal(pipe(p), 0);
			write_full(p[1], s.bytes, cuts[ci]);
			close(p[1]);
			assert_int_equal(decode_fd(d, &c, p[0]), -EPROTO);
			assert_int_equal(c.next, 1);
			struct sv2shm_frame f;
			assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -EPROTO);
			close(p[0]);
			sv2shm_frame_decoder_free(d);

			/* Non-blocking: in_frame before the end is seen. */
			assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
			assert_int_equal(pipe2(p, O_NONBLOCK), 0);
			write_full(p[1], s.bytes + s.f[1].off, cuts[ci] - s.f[1].off);
			assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 0);
			assert_true(sv2shm_frame_decoder_in_frame(d));
			close(p[1]);
			assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -EPROTO);
			assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -EPROTO);
			close(p[0]);
			sv2shm_frame_decoder_free(d);
			assert_int_equal(sv2shm_buffer_len(tb.b), 0);

			assert_int_equal(consumer_release_all(&c), 0);
			assert_int_equal(c.failed, 0);
			tb_close(&tb);
		}
		stream_free(&s);
	}
}

/* A stream ending at a frame boundary: -ENODATA, repeatable; an empty
 * stream too. */
static void test_clean_end(void **state)
{
	(void)state;
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		struct testbuf tb;
		tb_open(&tb, kinds[ki]);
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
		struct sv2shm_frame f;

		int p[2];
		assert_int_equal(pipe(p), 0);
		close(p[1]);
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -ENODATA);
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -ENODATA);
		close(p[0]);

		static const uint32_t lens[] = {7, 0, 1234};
		struct stream s;
		stream_of(&s, lens, 3, g_seed + 800);
		struct consumer c;
		consumer_init(&c, &s, &tb, 3, 1);
		assert_int_equal(pipe(p), 0);
		write_full(p[1], s.bytes, s.size);
		close(p[1]);
		assert_int_equal(decode_fd(d, &c, p[0]), -ENODATA);
		assert_int_equal(c.next, 3);
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -ENODATA);
		close(p[0]);
		struct sv2shm_pool_stats zero;
		memset(&zero, 0, sizeof(zero));
		consumer_finish(&c, &zero);

		/* The decoder still works on a new stream after a clean end. */
		consumer_init(&c, &s, &tb, 3, 1);
		size_t used;
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes, s.size, &used, &f), 1);
		assert_int_equal(consumer_take(&c, &f), 0);
		assert_int_equal(consumer_release_all(&c), 0);
		assert_int_equal(c.failed, 0);

		sv2shm_frame_decoder_free(d);
		tb_close(&tb);
		stream_free(&s);
	}
}

/* Frames with no payload: 6-byte slices, complete as soon as the header is. */
static void test_zero_length_frames(void **state)
{
	(void)state;
	enum { N = 50 };
	uint32_t lens[N];
	memset(lens, 0, sizeof(lens));
	struct stream s;
	stream_of(&s, lens, N, g_seed + 900);
	assert_int_equal(s.size, N * HDR);

	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		struct testbuf tb;
		tb_open(&tb, kinds[ki]);
		struct sv2shm_pool_stats before;
		stats_of(&tb, &before);
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
		struct consumer c;
		consumer_init(&c, &s, &tb, 3, 1);
		size_t pos = 0;
		bool pending = false;
		while (pos < s.size || pending) {
			size_t used;
			struct sv2shm_frame f;
			int rc = sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &f);
			if (rc == -EAGAIN) {
				assert_int_equal(consumer_on_eagain(&c), 0);
				assert_int_equal(used, pending ? 0 : HDR);
				pos += used;
				pending = true;
				continue;
			}
			assert_int_equal(rc, 1);
			assert_int_equal(used, pending ? 0 : HDR);
			pending = false;
			assert_int_equal(f.msg_length, 0);
			assert_int_equal(f.slice.len, HDR);
			assert_int_equal(consumer_take(&c, &f), 0);
			pos += used;
		}
		consumer_finish(&c, &before);

		/* The same through a pipe. */
		stats_of(&tb, &before);
		consumer_init(&c, &s, &tb, 3, 2);
		int p[2];
		assert_int_equal(pipe(p), 0);
		write_full(p[1], s.bytes, s.size);
		close(p[1]);
		assert_int_equal(decode_fd(d, &c, p[0]), -ENODATA);
		close(p[0]);
		consumer_finish(&c, &before);
		sv2shm_frame_decoder_free(d);
		tb_close(&tb);
	}

	/* A 64-slot pool holds all 50 at once, each in its own slot. */
	struct testbuf tb;
	pool_open(&tb, 4096, 64, SV2SHM_POOL_FALLBACK);
	struct sv2shm_frame_decoder *d = NULL;
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	struct sv2shm_frame fr[N];
	size_t used, pos = 0;
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &fr[i]), 1);
		pos += used;
		assert_int_equal(sv2shm_slice_kind(&fr[i].slice), SV2SHM_SLICE_POOL);
		assert_int_equal(fr[i].extension_type, s.f[i].ext);
		assert_int_equal(fr[i].msg_type, s.f[i].type);
	}
	char map[65];
	assert_int_equal(sv2shm_pool_slot_map(tb.pool, map, sizeof(map)), 64);
	size_t taken = 0;
	for (size_t i = 0; i < 64; i++)
		taken += map[i] != '-';
	assert_int_equal(taken, N);
	for (size_t i = 0; i < N; i++) {
		assert_memory_equal(fr[i].slice.data, s.bytes + s.f[i].off, HDR);
		assert_int_equal(sv2shm_slice_release(&fr[i].slice), 0);
	}
	sv2shm_frame_decoder_free(d);
	tb_close(&tb);
	stream_free(&s);
}

/* A full pool under SV2SHM_POOL_FAIL: feed/read_fd return -EAGAIN, keep the
 * partial frame, and succeed once a slice is released. */
static void test_fail_policy_full_pool(void **state)
{
	(void)state;
	static const uint32_t lens[] = {10, 0, 20, 400, 400, 400, 0};
	struct stream s;
	stream_of(&s, lens, 7, g_seed + 1000);
	struct sv2shm_frame a, b, cf, f;
	size_t used;

	/* All slots taken (2 slots). */
	struct testbuf tb;
	pool_open(&tb, 4096, 2, SV2SHM_POOL_FAIL);
	struct sv2shm_frame_decoder *d = NULL;
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes, s.size, &used, &a), 1);
	assert_int_equal(used, HDR + 10);
	assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + s.f[1].off, HDR, &used, &b), 1);
	assert_int_equal(sv2shm_slice_kind(&a.slice), SV2SHM_SLICE_POOL);
	assert_int_equal(sv2shm_slice_kind(&b.slice), SV2SHM_SLICE_POOL);
	size_t pos = s.f[2].off;
	/* Header and 4 payload bytes offered: the header is taken and kept. */
	assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, HDR + 4, &used, &cf), -EAGAIN);
	assert_int_equal(used, HDR);
	pos += used;
	assert_true(sv2shm_frame_decoder_in_frame(d));
	assert_int_equal(sv2shm_buffer_last_error(tb.b), -EAGAIN);
	/* Still full: nothing more taken. */
	assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, 4, &used, &cf), -EAGAIN);
	assert_int_equal(used, 0);
	assert_true(sv2shm_frame_decoder_in_frame(d));
	/* Release one: the frame goes on where it stopped. */
	assert_memory_equal(a.slice.data, s.bytes, HDR + 10);
	assert_int_equal(sv2shm_slice_release(&a.slice), 0);
	assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, 4, &used, &cf), 0);
	assert_int_equal(used, 4);
	pos += used;
	assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &cf), 1);
	assert_int_equal(used, 16);
	assert_int_equal(cf.extension_type, s.f[2].ext);
	assert_int_equal(cf.msg_type, s.f[2].type);
	assert_int_equal(cf.msg_length, 20);
	assert_int_equal(cf.slice.len, HDR + 20);
	assert_int_equal(sv2shm_slice_kind(&cf.slice), SV2SHM_SLICE_POOL);
	assert_memory_equal(cf.slice.data, s.bytes + s.f[2].off, HDR + 20);
	assert_memory_equal(b.slice.data, s.bytes + s.f[1].off, HDR);

	/* The same through read_fd: both slots live (b, cf), frame 3 waits. */
	int p[2];
	assert_int_equal(pipe(p), 0);
	write_full(p[1], s.bytes + s.f[3].off, HDR + 400);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -EAGAIN);
	assert_true(sv2shm_frame_decoder_in_frame(d));
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -EAGAIN);
	assert_int_equal(sv2shm_slice_release(&b.slice), 0);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 1);
	assert_int_equal(f.msg_length, 400);
	assert_int_equal(f.extension_type, s.f[3].ext);
	assert_memory_equal(f.slice.data, s.bytes + s.f[3].off, HDR + 400);
	assert_int_equal(sv2shm_slice_kind(&f.slice), SV2SHM_SLICE_POOL);
	close(p[1]);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &b), -ENODATA);
	close(p[0]);
	assert_int_equal(sv2shm_slice_release(&cf.slice), 0);
	assert_int_equal(sv2shm_slice_release(&f.slice), 0);
	sv2shm_frame_decoder_free(d);
	struct sv2shm_pool_stats st;
	assert_int_equal(sv2shm_pool_stats(tb.pool, &st), 0);
	assert_int_equal(st.from_system, 0);
	assert_int_equal(st.from_pool, 4);
	tb_close(&tb);

	/* Capacity exhausted (8 slots, 1000 bytes): two 406-byte frames fit, the
	 * third waits; releasing the oldest makes room at the front. Retry with
	 * no new input (len 0; test_feed_null_empty_input does it with NULL). */
	pool_open(&tb, 1000, 8, SV2SHM_POOL_FAIL);
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	pos = s.f[3].off;
	assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &a), 1);
	pos += used;
	assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &b), 1);
	pos += used;
	assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &cf), -EAGAIN);
	assert_int_equal(used, HDR);
	pos += used;
	assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, 0, &used, &cf), -EAGAIN);
	assert_int_equal(used, 0);
	assert_int_equal(sv2shm_slice_release(&a.slice), 0);
	assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, 0, &used, &cf), 0);
	assert_int_equal(used, 0);
	assert_int_equal(sv2shm_pool_mode(tb.pool), SV2SHM_MODE_FRONT);
	assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &cf), 1);
	assert_int_equal(used, 400);
	assert_memory_equal(cf.slice.data, s.bytes + s.f[5].off, HDR + 400);
	assert_memory_equal(b.slice.data, s.bytes + s.f[4].off, HDR + 400);
	assert_int_equal(sv2shm_slice_release(&b.slice), 0);
	assert_int_equal(sv2shm_slice_release(&cf.slice), 0);
	/* A frame larger than the whole pool can never fit: -ENOBUFS, not the
	 * decoder's permanent -EMSGSIZE; the header is kept (in_frame) and the
	 * decoder is not in an error state: a retry answers the same. */
	uint8_t big[HDR];
	assert_int_equal(sv2shm_frame_header_encode(big, 1, 2, 2000), 0);
	int rc = sv2shm_frame_decoder_feed(d, big, HDR, &used, &cf);
	assert_int_equal(rc, -ENOBUFS);
	assert_true(sv2shm_frame_decoder_in_frame(d));
	assert_int_equal(sv2shm_frame_decoder_feed(d, big, 0, &used, &cf), -ENOBUFS);
	assert_true(sv2shm_frame_decoder_in_frame(d));
	assert_true(sv2shm_buffer_is_droppable(tb.b));
	sv2shm_frame_decoder_free(d);
	tb_close(&tb);
	stream_free(&s);
}

/* Header encoding and argument checks. */
static void test_header_and_arguments(void **state)
{
	(void)state;
	uint8_t h[HDR];
	assert_int_equal(sv2shm_frame_header_encode(h, 0x8001, 0x1f, 0x030201), 0);
	static const uint8_t want[HDR] = {0x01, 0x80, 0x1f, 0x01, 0x02, 0x03};
	assert_memory_equal(h, want, HDR);
	assert_int_equal(sv2shm_frame_header_encode(h, 0, 0, SV2SHM_FRAME_MAX_PAYLOAD), 0);
	static const uint8_t want2[HDR] = {0, 0, 0, 0xff, 0xff, 0xff};
	assert_memory_equal(h, want2, HDR);
	assert_int_equal(sv2shm_frame_header_encode(h, 0, 0, SV2SHM_FRAME_MAX_PAYLOAD + 1), -EMSGSIZE);
	assert_int_equal(sv2shm_frame_header_encode(NULL, 0, 0, 0), -EINVAL);

	struct testbuf tb;
	tb_open(&tb, K_SYSBUF);
	struct sv2shm_frame_decoder *d = NULL;
	assert_int_equal(sv2shm_frame_decoder_new(NULL, 0, &d), -EINVAL);
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, NULL), -EINVAL);
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	struct sv2shm_frame f;
	size_t used = 5;
	assert_int_equal(sv2shm_frame_decoder_feed(NULL, h, 1, &used, &f), -EINVAL);
	assert_int_equal(sv2shm_frame_decoder_feed(d, NULL, 1, &used, &f), -EINVAL);
	assert_int_equal(sv2shm_frame_decoder_feed(d, h, 1, NULL, &f), -EINVAL);
	assert_int_equal(sv2shm_frame_decoder_feed(d, h, 1, &used, NULL), -EINVAL);
	assert_int_equal(sv2shm_frame_decoder_feed(d, h, 0, &used, &f), 0);
	assert_int_equal(used, 0);
	assert_false(sv2shm_frame_decoder_in_frame(d));
	assert_int_equal(sv2shm_frame_decoder_read_fd(NULL, 0, &f), -EINVAL);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, -1, &f), -EINVAL);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, 0, NULL), -EINVAL);
	/* A read error is returned as -errno. */
	int p[2];
	assert_int_equal(pipe(p), 0);
	close(p[0]);
	close(p[1]);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -EBADF);
	assert_false(sv2shm_frame_decoder_in_frame(NULL));
	sv2shm_frame_decoder_free(NULL);
	sv2shm_frame_decoder_free(d);
	tb_close(&tb);
	assert_string_equal(sv2shm_strerror(-EPROTO), "protocol error (a stream ended inside a frame, or a broken channel)");
	assert_string_equal(sv2shm_strerror(-ENOBUFS), "frame larger than the pool can ever hold");
	assert_string_equal(sv2shm_strerror(-ENODATA), "end of stream");
}

/* Freeing a decoder in the middle of a frame discards the partial frame;
 * the buffer (and the pool) can be used and destroyed afterwards. */
static void test_free_mid_frame(void **state)
{
	(void)state;
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		struct testbuf tb;
		tb_open(&tb, kinds[ki]);
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
		uint8_t frame[HDR + 50];
		assert_int_equal(sv2shm_frame_header_encode(frame, 3, 4, 50), 0);
		memset(frame + HDR, 0xab, 50);
		size_t used;
		struct sv2shm_frame f;
		assert_int_equal(sv2shm_frame_decoder_feed(d, frame, HDR + 20, &used, &f), 0);
		assert_true(sv2shm_frame_decoder_in_frame(d));
		sv2shm_frame_decoder_free(d);
		assert_int_equal(sv2shm_buffer_len(tb.b), 0);
		/* A new decoder on the same buffer decodes a whole frame. */
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
		assert_int_equal(sv2shm_frame_decoder_feed(d, frame, sizeof(frame), &used, &f), 1);
		assert_int_equal(used, sizeof(frame));
		assert_int_equal(f.slice.len, sizeof(frame));
		assert_memory_equal(f.slice.data, frame, sizeof(frame));
		assert_int_equal(sv2shm_slice_release(&f.slice), 0);
		sv2shm_frame_decoder_free(d);
		tb_close(&tb);
	}
}

/*
 * feed(d, NULL, 0, ...) is documented as valid ("data may be NULL when len is
 * 0") in every state: between frames, inside a header, inside a payload, and
 * to retry a header a FAIL pool refused. It must return 0 (or 1 when the
 * retried frame has no payload), consume nothing, and be free of undefined
 * behaviour (this case is meant to run under UBSan too).
 */
static void test_feed_null_empty_input(void **state)
{
	(void)state;
	uint8_t fr[HDR + 10];
	assert_int_equal(sv2shm_frame_header_encode(fr, 0x8123, 7, 10), 0);
	for (size_t i = 0; i < 10; i++)
		fr[HDR + i] = (uint8_t)(0xc0 + i);

	struct testbuf tb;
	tb_open(&tb, K_SYSBUF);
	struct sv2shm_frame_decoder *d = NULL;
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	struct sv2shm_frame f;
	size_t used = 5;
	/* Between frames. */
	assert_int_equal(sv2shm_frame_decoder_feed(d, NULL, 0, &used, &f), 0);
	assert_int_equal(used, 0);
	assert_false(sv2shm_frame_decoder_in_frame(d));
	/* Inside the header. */
	assert_int_equal(sv2shm_frame_decoder_feed(d, fr, 3, &used, &f), 0);
	assert_int_equal(sv2shm_frame_decoder_feed(d, NULL, 0, &used, &f), 0);
	assert_int_equal(used, 0);
	assert_true(sv2shm_frame_decoder_in_frame(d));
	/* Inside the payload. */
	assert_int_equal(sv2shm_frame_decoder_feed(d, fr + 3, 7, &used, &f), 0);
	assert_int_equal(used, 7);
	assert_int_equal(sv2shm_frame_decoder_feed(d, NULL, 0, &used, &f), 0);
	assert_int_equal(used, 0);
	assert_int_equal(sv2shm_frame_decoder_feed(d, fr + 10, 6, &used, &f), 1);
	assert_int_equal(f.slice.len, sizeof(fr));
	assert_memory_equal(f.slice.data, fr, sizeof(fr));
	assert_int_equal(sv2shm_slice_release(&f.slice), 0);
	sv2shm_frame_decoder_free(d);
	tb_close(&tb);

	/* Retrying a refused header with no new input. */
	pool_open(&tb, 4096, 1, SV2SHM_POOL_FAIL);
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	struct sv2shm_frame first;
	assert_int_equal(sv2shm_frame_decoder_feed(d, fr, sizeof(fr), &used, &first), 1);
	assert_int_equal(sv2shm_frame_decoder_feed(d, fr, sizeof(fr), &used, &f), -EAGAIN);
	assert_int_equal(used, HDR);
	assert_int_equal(sv2shm_frame_decoder_feed(d, NULL, 0, &used, &f), -EAGAIN);
	assert_int_equal(used, 0);
	assert_int_equal(sv2shm_slice_release(&first.slice), 0);
	assert_int_equal(sv2shm_frame_decoder_feed(d, NULL, 0, &used, &f), 0);
	assert_int_equal(used, 0);
	assert_int_equal(sv2shm_frame_decoder_feed(d, fr + HDR, 10, &used, &f), 1);
	assert_int_equal(used, 10);
	assert_memory_equal(f.slice.data, fr, sizeof(fr));
	assert_int_equal(sv2shm_slice_release(&f.slice), 0);
	sv2shm_frame_decoder_free(d);
	tb_close(&tb);
}

/* ------------------------------------------------------------------------- */
/* Bulk reads: one read() for many frames, split off without a copy           */
/* ------------------------------------------------------------------------- */

/* n frames of plen payload bytes each (random fields and bytes). */
static void stream_uniform(struct stream *s, size_t n, uint32_t plen, uint64_t seed)
{
	struct rng r = {seed};
	memset(s, 0, sizeof(*s));
	s->n = n;
	s->f = calloc(n, sizeof(*s->f));
	s->size = n * (HDR + (size_t)plen);
	s->bytes = malloc(s->size ? s->size : 1);
	assert_non_null(s->f);
	assert_non_null(s->bytes);
	for (size_t i = 0; i < n; i++) {
		struct expect *e = &s->f[i];
		e->ext = (uint16_t)rnd(&r);
		e->type = (uint8_t)rnd(&r);
		e->len = plen;
		e->off = i * (HDR + (size_t)plen);
		assert_int_equal(sv2shm_frame_header_encode(s->bytes + e->off, e->ext, e->type, plen), 0);
		for (size_t j = 0; j < plen; j++)
			s->bytes[e->off + HDR + j] = (uint8_t)rnd(&r);
	}
}

/* A thread writing bytes in pieces of lo..hi bytes, then closing fd. */
struct chunk_writer {
	int fd;
	const uint8_t *bytes;
	size_t size;
	size_t lo, hi;
	uint64_t seed;
	bool yield;
	int err;
};

static void *chunk_writer_main(void *arg)
{
	struct chunk_writer *w = arg;
	struct rng r = {w->seed};
	size_t pos = 0;
	while (pos < w->size) {
		size_t piece = rnd_range(&r, w->lo, w->hi);
		if (piece > w->size - pos)
			piece = w->size - pos;
		ssize_t n = write(w->fd, w->bytes + pos, piece);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			w->err = -errno;
			break;
		}
		pos += (size_t)n;
		if (w->yield && rnd(&r) % 2 == 0)
			sched_yield();
	}
	close(w->fd);
	return NULL;
}

static struct sv2shm_frame_decoder_stats dstats(const struct sv2shm_frame_decoder *d)
{
	struct sv2shm_frame_decoder_stats st;
	memset(&st, 0xee, sizeof(st));
	assert_int_equal(sv2shm_frame_decoder_stats(d, &st), 0);
	return st;
}

/* What bulk_decode() saw. */
struct bulk_seen {
	size_t adjacent;   /* frames right after the previous one in memory, no read() between */
	const uint8_t *base; /* the pool region's first byte, from the first POOL frame */
};

/*
 * read_fd until the stream ends (or, non-blocking, until no data is left),
 * giving each frame to the consumer. A frame handed out with no read() since
 * the previous one was split off the same bytes: it must start right where
 * the previous one ended (no copy, nothing moved) — when both are in place:
 * on the sysbuf always, on a pool when both are POOL slices (a pool with no
 * free slot copies a frame to system memory). A POOL frame must lie in its
 * slot's range of the region.
 */
static int bulk_decode(struct sv2shm_frame_decoder *d, struct consumer *c, int fd, struct bulk_seen *seen)
{
	uint64_t last_reads = UINT64_MAX;
	const uint8_t *last_end = NULL;
	int last_kind = SV2SHM_SLICE_NONE;
	for (;;) {
		struct sv2shm_frame f;
		memset(&f, 0, sizeof(f));
		int rc = sv2shm_frame_decoder_read_fd(d, fd, &f);
		uint64_t reads = dstats(d).reads;
		if (rc == -EAGAIN) {
			if (consumer_on_eagain(c) < 0)
				return -1000;
			last_reads = UINT64_MAX;
			continue;
		}
		if (rc != 1)
			return rc;
		int kind = sv2shm_slice_kind(&f.slice);
		bool in_place = c->tb->sb || (kind == SV2SHM_SLICE_POOL && last_kind == SV2SHM_SLICE_POOL);
		if (reads == last_reads && in_place) {
			if (f.slice.data != last_end) {
				sv2shm_slice_release(&f.slice);
				return fail_at(c, c->next, "frame split off the same read is not adjacent to the previous one");
			}
			seen->adjacent++;
		}
		last_reads = reads;
		last_end = f.slice.data + f.slice.len;
		last_kind = kind;
		if (c->tb->pool && sv2shm_slice_kind(&f.slice) == SV2SHM_SLICE_POOL) {
			uint64_t off = 0, len = 0;
			if (sv2shm_pool_slot_range(c->tb->pool, f.slice._slot, &off, &len) != 1 || len != f.slice.len) {
				sv2shm_slice_release(&f.slice);
				return fail_at(c, c->next, "POOL frame's slot does not hold it");
			}
			if (!seen->base)
				seen->base = f.slice.data - off;
			if (f.slice.data - off != seen->base) {
				sv2shm_slice_release(&f.slice);
				return fail_at(c, c->next, "POOL frame is not in the pool's region");
			}
		}
		if (consumer_take(c, &f) < 0)
			return -1000;
	}
}

/* A pipe holding `size` (<= 64 KiB) bytes, written before the first read. */
static void pipe_prewritten(int p[2], const uint8_t *bytes, size_t size)
{
	assert_true(size <= 65536); /* a pipe's default capacity */
	assert_int_equal(pipe(p), 0);
	write_full(p[1], bytes, size);
	close(p[1]);
}

enum { BULK_FRAMES = 2000, PREWRITTEN_FRAMES = 1000, BULK_PAYLOAD = 40 };

/* 2000 frames of 40 bytes from a socketpair written by a thread: every frame
 * exact, adjacent to the previous one when no read() came between. */
static void bulk_socketpair_on(struct testbuf *tb, const struct stream *s, struct bulk_seen *seen,
			       struct sv2shm_frame_decoder_stats *out)
{
	struct sv2shm_pool_stats before;
	stats_of(tb, &before);
	struct sv2shm_frame_decoder *d = NULL;
	assert_int_equal(sv2shm_frame_decoder_new(tb->b, 0, &d), 0);
	struct consumer c;
	consumer_init(&c, s, tb, 0, 1);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct chunk_writer w = {sv[1], s->bytes, s->size, s->size, s->size, 1, false, 0};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, chunk_writer_main, &w), 0);
	memset(seen, 0, sizeof(*seen));
	int rc = bulk_decode(d, &c, sv[0], seen);
	close(sv[0]);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(w.err, 0);
	assert_int_equal(rc, -ENODATA);
	assert_false(sv2shm_frame_decoder_in_frame(d));
	consumer_finish(&c, &before);
	*out = dstats(d);
	assert_int_equal(out->frames, s->n);
	assert_int_equal(out->bytes, s->size);
	/* Each read() can start at most one frame that is not adjacent. */
	assert_true(seen->adjacent + out->reads >= s->n);
	if (tb->pool)
		assert_int_equal(c.n_system, 0);
	sv2shm_frame_decoder_free(d);
}

/* The same with all bytes in a pipe before the first read. */
static void bulk_prewritten_on(struct testbuf *tb, const struct stream *s, struct sv2shm_frame_decoder_stats *out)
{
	int p[2];
	pipe_prewritten(p, s->bytes, s->size);
	struct sv2shm_pool_stats before;
	stats_of(tb, &before);
	struct sv2shm_frame_decoder *d = NULL;
	assert_int_equal(sv2shm_frame_decoder_new(tb->b, 0, &d), 0);
	struct consumer c;
	consumer_init(&c, s, tb, 0, 2);
	struct bulk_seen seen;
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(bulk_decode(d, &c, p[0], &seen), -ENODATA);
	close(p[0]);
	consumer_finish(&c, &before);
	*out = dstats(d);
	assert_int_equal(out->frames, s->n);
	assert_int_equal(out->bytes, s->size);
	sv2shm_frame_decoder_free(d);
}

static void test_bulk_read_pool(void **state)
{
	(void)state;
	struct stream s;
	stream_uniform(&s, BULK_FRAMES, BULK_PAYLOAD, g_seed + 1100);
	struct testbuf tb;
	pool_open(&tb, 1u << 20, 64, SV2SHM_POOL_FALLBACK);
	struct bulk_seen seen;
	struct sv2shm_frame_decoder_stats st;
	bulk_socketpair_on(&tb, &s, &seen, &st);
	print_message("pool: %" PRIu64 " reads for %" PRIu64 " frames, %zu adjacent\n", st.reads, st.frames,
		      seen.adjacent);
	/* In bulk: at most one read() per 10 frames, the end included. */
	assert_true(st.reads * 10 <= st.frames);
	assert_true(seen.adjacent >= BULK_FRAMES - BULK_FRAMES / 10);
	assert_non_null(seen.base);
	stream_free(&s);

	/* Everything in the pipe first: one read for all, one for the end. */
	stream_uniform(&s, PREWRITTEN_FRAMES, BULK_PAYLOAD, g_seed + 1101);
	bulk_prewritten_on(&tb, &s, &st);
	assert_int_equal(st.reads, 2);
	tb_close(&tb);
	stream_free(&s);
}

/*
 * The same on the system-memory buffer: frames exact and split off without
 * a copy, and read in bulk. The default sysbuf (hint 0) last.
 */
static void test_bulk_read_sysbuf(void **state)
{
	(void)state;
	struct stream s;
	stream_uniform(&s, BULK_FRAMES, BULK_PAYLOAD, g_seed + 1200);
	struct testbuf tb;
	struct bulk_seen seen;
	struct sv2shm_frame_decoder_stats st;

	/* Through a socketpair: exact frames, adjacent within a read. */
	tb_open(&tb, K_SYSBUF);
	bulk_socketpair_on(&tb, &s, &seen, &st);
	print_message("sysbuf(0), socketpair: %" PRIu64 " reads for %" PRIu64 " frames\n", st.reads, st.frames);
	tb_close(&tb);
	uint64_t socket_reads = st.reads;
	stream_free(&s);

	/* Room given up front: one read for everything. */
	stream_uniform(&s, PREWRITTEN_FRAMES, BULK_PAYLOAD, g_seed + 1201);
	memset(&tb, 0, sizeof(tb));
	tb.kind = K_SYSBUF;
	assert_int_equal(sv2shm_sysbuf_new(256 * 1024, &tb.sb), 0);
	tb.b = sv2shm_sysbuf_buffer(tb.sb);
	bulk_prewritten_on(&tb, &s, &st);
	assert_int_equal(st.reads, 2);
	tb_close(&tb);

	/* The default sysbuf, everything in the pipe before the first read. */
	tb_open(&tb, K_SYSBUF);
	bulk_prewritten_on(&tb, &s, &st);
	print_message("sysbuf(0), pre-written: %" PRIu64 " reads for %" PRIu64 " frames\n", st.reads, st.frames);
	tb_close(&tb);
	stream_free(&s);
	assert_true(st.reads * 10 <= st.frames);
	assert_true(socket_reads * 10 <= BULK_FRAMES);
}

/*
 * The sysbuf under a consumer that holds the last frame while the next is
 * read: the buffer's block must stay about the size of what is in flight
 * (one frame held, reads of at most 256 KiB): at most 512 KiB, however many
 * bytes stream through (16 MB of 1006-byte frames, 4.6 MB of 46-byte ones).
 */
static size_t sysbuf_max_room(size_t nframes, uint32_t plen, uint64_t seed)
{
	struct stream s;
	stream_uniform(&s, nframes, plen, seed);
	struct testbuf tb;
	tb_open(&tb, K_SYSBUF);
	struct sv2shm_pool_stats before;
	stats_of(&tb, &before);
	struct sv2shm_frame_decoder *d = NULL;
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	struct consumer c;
	consumer_init(&c, &s, &tb, 1, seed);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct chunk_writer w = {sv[1], s.bytes, s.size, 65536, 65536, 1, false, 0};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, chunk_writer_main, &w), 0);
	size_t max_room = 0;
	int rc;
	for (;;) {
		struct sv2shm_frame f;
		memset(&f, 0, sizeof(f));
		rc = sv2shm_frame_decoder_read_fd(d, sv[0], &f);
		if (tb.b->_room > max_room)
			max_room = tb.b->_room;
		if (rc != 1 || consumer_take(&c, &f) < 0)
			break;
	}
	close(sv[0]);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(w.err, 0);
	assert_int_equal(rc, -ENODATA);
	consumer_finish(&c, &before);
	print_message("sysbuf: %" PRIu64 " reads for %zu frames (%zu bytes), room up to %zu bytes\n", dstats(d).reads,
		      s.n, s.size, max_room);
	sv2shm_frame_decoder_free(d);
	tb_close(&tb);
	stream_free(&s);
	return max_room;
}

static void test_bulk_sysbuf_memory_bounded(void **state)
{
	(void)state;
	size_t big = sysbuf_max_room(16000, 1000, g_seed + 1230);
	size_t small = sysbuf_max_room(100000, BULK_PAYLOAD, g_seed + 1231);
	assert_true(big <= 512u * 1024);
	assert_true(small <= 512u * 1024);
}

/*
 * A FALLBACK pool whose only slot is held when a read starts serves that
 * read from system memory (alloc mode). Once the slot is free again, the
 * frames that follow must come from the region again and be read in bulk:
 * the pool leaves alloc mode as soon as a request fits again. Small frames
 * (40 bytes, a share submission's size), 1.8 MB of them; judged from 8000
 * frames on (more than one 256 KiB read after the release).
 */
static void test_bulk_leaves_alloc_mode(void **state)
{
	(void)state;
	enum { NF = 40000, LATE = 8000 };
	struct stream s;
	stream_uniform(&s, NF, BULK_PAYLOAD, g_seed + 1250);
	struct testbuf tb;
	pool_open(&tb, 1u << 20, 1, SV2SHM_POOL_FALLBACK);
	struct sv2shm_pool_stats before;
	stats_of(&tb, &before);
	struct sv2shm_frame_decoder *d = NULL;
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	struct consumer c;
	consumer_init(&c, &s, &tb, 0, 3);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	const size_t fl = HDR + BULK_PAYLOAD;
	write_full(sv[1], s.bytes, fl);
	struct sv2shm_frame f0, f1;
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, sv[0], &f0), 1);
	assert_int_equal(sv2shm_slice_kind(&f0.slice), SV2SHM_SLICE_POOL);
	assert_memory_equal(f0.slice.data, s.bytes, fl);
	/* The rest of the stream while frame 0 holds the only slot. */
	struct chunk_writer w = {sv[1], s.bytes + fl, s.size - fl, 65536, 65536, 1, false, 0};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, chunk_writer_main, &w), 0);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, sv[0], &f1), 1);
	assert_int_equal(sv2shm_slice_kind(&f1.slice), SV2SHM_SLICE_SYSTEM);
	assert_memory_equal(f1.slice.data, s.bytes + fl, fl);
	assert_int_equal(sv2shm_slice_release(&f0.slice), 0);
	assert_int_equal(sv2shm_slice_release(&f1.slice), 0);
	c.next = 2;
	c.n_pool = 1;
	c.n_system = 1;
	/* The pool is empty from now on. */
	size_t late_pool = 0;
	int rc;
	for (;;) {
		struct sv2shm_frame f;
		memset(&f, 0, sizeof(f));
		rc = sv2shm_frame_decoder_read_fd(d, sv[0], &f);
		if (rc != 1)
			break;
		if (c.next >= LATE && sv2shm_slice_kind(&f.slice) == SV2SHM_SLICE_POOL)
			late_pool++;
		if (consumer_take(&c, &f) < 0)
			break;
	}
	close(sv[0]);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(w.err, 0);
	assert_int_equal(rc, -ENODATA);
	struct sv2shm_frame_decoder_stats st = dstats(d);
	print_message("frames %d.. from the pool: %zu of %d; %" PRIu64 " reads for %d frames\n", LATE, late_pool,
		      NF - LATE, st.reads, NF);
	consumer_finish(&c, &before);
	sv2shm_frame_decoder_free(d);
	tb_close(&tb);
	stream_free(&s);
	assert_true(late_pool * 10 >= (size_t)(NF - LATE) * 9);
	assert_true(st.reads * 10 <= NF);
}

/* --- the real Sv2 frames ------------------------------------------------- */

#ifndef SV2_FRAMES_DIR
#define SV2_FRAMES_DIR "../shared/sv2-frames"
#endif

/* The frames of SV2_FRAMES_DIR as one stream, in the order of frames.tsv,
 * with the header fields the table gives. False when the folder is missing. */
static bool real_frames(struct stream *s)
{
	memset(s, 0, sizeof(*s));
	char path[4096];
	snprintf(path, sizeof(path), "%s/frames.tsv", SV2_FRAMES_DIR);
	FILE *tsv = fopen(path, "r");
	if (!tsv) {
		print_message("no real frames at %s\n", SV2_FRAMES_DIR);
		return false;
	}
	char line[4096];
	size_t cap_f = 0, cap_b = 0, rows = 0;
	assert_non_null(fgets(line, sizeof(line), tsv));
	assert_int_equal(strncmp(line, "name\t", 5), 0);
	while (fgets(line, sizeof(line), tsv)) {
		char *field[12];
		size_t nf = 0;
		for (char *save = NULL, *t = strtok_r(line, "\t\n", &save); t && nf < 12; t = strtok_r(NULL, "\t\n", &save))
			field[nf++] = t;
		assert_true(nf >= 10);
		rows++;
		uint16_t ext = (uint16_t)strtoul(field[5], NULL, 16);
		unsigned chan = (unsigned)strtoul(field[6], NULL, 10);
		uint8_t type = (uint8_t)strtoul(field[7], NULL, 16);
		uint32_t len = (uint32_t)strtoul(field[8], NULL, 10);
		size_t flen = (size_t)strtoul(field[9], NULL, 10);
		assert_int_equal(flen, HDR + (size_t)len);
		assert_int_equal(chan, (ext & SV2SHM_FRAME_CHANNEL_BIT) != 0);
		if (s->n == cap_f) {
			cap_f = cap_f ? 2 * cap_f : 64;
			s->f = realloc(s->f, cap_f * sizeof(*s->f));
			assert_non_null(s->f);
		}
		if (s->size + flen > cap_b) {
			cap_b = 2 * (s->size + flen);
			s->bytes = realloc(s->bytes, cap_b);
			assert_non_null(s->bytes);
		}
		snprintf(path, sizeof(path), "%s/frames/%s.bin", SV2_FRAMES_DIR, field[0]);
		FILE *bin = fopen(path, "rb");
		if (!bin)
			print_error("cannot open %s\n", path);
		assert_non_null(bin);
		size_t got = fread(s->bytes + s->size, 1, flen + 1, bin);
		fclose(bin);
		assert_int_equal(got, flen); /* exactly one frame in the file */
		struct expect *e = &s->f[s->n++];
		e->ext = ext;
		e->type = type;
		e->len = len;
		e->off = s->size;
		s->size += flen;
	}
	fclose(tsv);
	assert_int_equal(rows, s->n);
	assert_true(s->n >= 30); /* the folder's README: 36 frames */
	return true;
}

/* The real frames as one stream, all in the pipe before the first read:
 * byte for byte, every field as the table says, one read (and the end). */
static void test_real_frames_bulk(void **state)
{
	(void)state;
	struct stream s;
	if (!real_frames(&s))
		skip();
	print_message("%zu real frames, %zu bytes\n", s.n, s.size);
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		struct testbuf tb;
		tb_open(&tb, kinds[ki]);
		struct sv2shm_pool_stats before;
		stats_of(&tb, &before);
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
		struct consumer c;
		consumer_init(&c, &s, &tb, 0, 7); /* released at once: no copies */
		int p[2];
		assert_int_equal(pipe(p), 0);
		write_full(p[1], s.bytes, s.size);
		close(p[1]);
		struct bulk_seen seen;
		memset(&seen, 0, sizeof(seen));
		int rc = bulk_decode(d, &c, p[0], &seen);
		close(p[0]);
		if (c.failed || rc != -ENODATA)
			print_error("kind %s, rc %d\n", kind_names[kinds[ki]], rc);
		assert_int_equal(rc, -ENODATA);
		consumer_finish(&c, &before);
		struct sv2shm_frame_decoder_stats st = dstats(d);
		assert_int_equal(st.frames, s.n);
		assert_int_equal(st.bytes, s.size);
		if (tb.pool) {
			/* Room for all of it: one read, then the end. */
			assert_int_equal(st.reads, 2);
			assert_int_equal(seen.adjacent, s.n - 1);
		}
		sv2shm_frame_decoder_free(d);
		tb_close(&tb);
	}
	stream_free(&s);
}

/* The real frames cut in two at every byte: the frames before the cut come
 * out, in_frame() tells a cut inside a frame, the rest comes after. */
static void test_real_frames_every_cut(void **state)
{
	(void)state;
	struct stream s;
	if (!real_frames(&s))
		skip();
	struct testbuf tbs[4];
	for (size_t ki = 0; ki < 4; ki++)
		tb_open(&tbs[ki], kinds[ki]);
	size_t fi = 0; /* frames complete before the cut */
	for (size_t cut = 1; cut < s.size; cut++) {
		while (fi < s.n && s.f[fi].off + HDR + s.f[fi].len <= cut)
			fi++;
		bool boundary = fi < s.n && s.f[fi].off == cut;
		struct testbuf *tb = &tbs[cut % 4];
		struct sv2shm_pool_stats before;
		stats_of(tb, &before);
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb->b, 0, &d), 0);
		struct consumer c;
		consumer_init(&c, &s, tb, 3, cut);
		int p[2];
		assert_int_equal(pipe2(p, O_NONBLOCK), 0);
		write_full(p[1], s.bytes, cut);
		struct bulk_seen seen;
		memset(&seen, 0, sizeof(seen));
		int rc = bulk_decode(d, &c, p[0], &seen);
		if (rc != 0 || c.next != fi || sv2shm_frame_decoder_in_frame(d) == boundary)
			print_error("cut at %zu (%s): rc %d, %zu frames out, %zu expected, in_frame %d\n", cut,
				    kind_names[tb->kind], rc, c.next, fi, sv2shm_frame_decoder_in_frame(d));
		assert_int_equal(rc, 0);
		assert_int_equal(c.next, fi);
		assert_int_equal(sv2shm_frame_decoder_in_frame(d), !boundary);
		write_full(p[1], s.bytes + cut, s.size - cut);
		close(p[1]);
		rc = bulk_decode(d, &c, p[0], &seen);
		close(p[0]);
		if (rc != -ENODATA || c.failed)
			print_error("cut at %zu (%s): rc %d after the rest\n", cut, kind_names[tb->kind], rc);
		assert_int_equal(rc, -ENODATA);
		consumer_finish(&c, &before);
		assert_int_equal(dstats(d).frames, s.n);
		assert_int_equal(dstats(d).bytes, s.size);
		sv2shm_frame_decoder_free(d);
	}
	for (size_t ki = 0; ki < 4; ki++)
		tb_close(&tbs[ki]);
	stream_free(&s);
}

/* The real frames arriving 1..7 bytes at a time: by hand on a non-blocking
 * pipe (after each piece, exactly the frames complete so far are out), and
 * from a writer thread on a blocking pipe. */
static void test_real_frames_small_pieces(void **state)
{
	(void)state;
	struct stream s;
	if (!real_frames(&s))
		skip();
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		struct testbuf tb;
		tb_open(&tb, kinds[ki]);
		struct sv2shm_pool_stats before;
		stats_of(&tb, &before);
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
		struct consumer c;
		consumer_init(&c, &s, &tb, 3, ki);
		int p[2];
		assert_int_equal(pipe2(p, O_NONBLOCK), 0);
		struct rng r = {g_seed + 1300 + ki};
		size_t pos = 0, fi = 0, pieces = 0;
		while (pos < s.size && !c.failed) {
			size_t piece = rnd_range(&r, 1, 7);
			if (piece > s.size - pos)
				piece = s.size - pos;
			write_full(p[1], s.bytes + pos, piece);
			pos += piece;
			pieces++;
			while (fi < s.n && s.f[fi].off + HDR + s.f[fi].len <= pos)
				fi++;
			struct bulk_seen seen;
			memset(&seen, 0, sizeof(seen));
			assert_int_equal(bulk_decode(d, &c, p[0], &seen), 0);
			assert_int_equal(c.next, fi);
			assert_int_equal(sv2shm_frame_decoder_in_frame(d), !(fi < s.n ? s.f[fi].off == pos : true));
		}
		close(p[1]);
		struct bulk_seen seen;
		memset(&seen, 0, sizeof(seen));
		assert_int_equal(bulk_decode(d, &c, p[0], &seen), -ENODATA);
		close(p[0]);
		consumer_finish(&c, &before);
		struct sv2shm_frame_decoder_stats st = dstats(d);
		assert_int_equal(st.frames, s.n);
		assert_int_equal(st.bytes, s.size);
		/* Each piece took a read (at least) and a drained one (EAGAIN);
		 * then the end. */
		assert_true(st.reads >= 2 * pieces + 1);
		sv2shm_frame_decoder_free(d);

		/* A writer thread, 1..7 bytes per write(), blocking reads. */
		stats_of(&tb, &before);
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
		consumer_init(&c, &s, &tb, 3, ki + 10);
		assert_int_equal(pipe(p), 0);
		struct chunk_writer w = {p[1], s.bytes, s.size, 1, 7, g_seed + ki, true, 0};
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, chunk_writer_main, &w), 0);
		memset(&seen, 0, sizeof(seen));
		int rc = bulk_decode(d, &c, p[0], &seen);
		close(p[0]);
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(w.err, 0);
		assert_int_equal(rc, -ENODATA);
		consumer_finish(&c, &before);
		assert_int_equal(dstats(d).frames, s.n);
		assert_int_equal(dstats(d).bytes, s.size);
		sv2shm_frame_decoder_free(d);
		tb_close(&tb);
	}
	stream_free(&s);
}

/* The real frames cut short, all in one read: the complete frames come out,
 * then -EPROTO for good (read_fd and feed); before the end, in_frame(). */
static void test_bulk_truncated(void **state)
{
	(void)state;
	struct stream s;
	if (!real_frames(&s))
		skip();
	size_t picks[] = {1, s.n / 2, s.n - 1};
	for (size_t pi = 0; pi < 3; pi++) {
		const struct expect *e = &s.f[picks[pi]];
		size_t cuts[] = {e->off + 1, e->off + 5, e->off + HDR, e->off + HDR + e->len / 2,
				 e->off + HDR + e->len - 1};
		for (size_t ci = 0; ci < sizeof(cuts) / sizeof(cuts[0]); ci++) {
			size_t cut = cuts[ci];
			if (cut <= e->off || cut >= e->off + HDR + e->len)
				continue; /* an empty payload has no middle */
			struct testbuf tb;
			tb_open(&tb, kinds[(pi + ci) % 4]);
			struct sv2shm_frame_decoder *d = NULL;
			assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
			struct consumer c;
			consumer_init(&c, &s, &tb, 2, cut);
			int p[2];
			assert_int_equal(pipe2(p, O_NONBLOCK), 0);
			write_full(p[1], s.bytes, cut);
			struct bulk_seen seen;
			memset(&seen, 0, sizeof(seen));
			assert_int_equal(bulk_decode(d, &c, p[0], &seen), 0);
			assert_int_equal(c.next, picks[pi]);
			assert_true(sv2shm_frame_decoder_in_frame(d));
			close(p[1]);
			struct sv2shm_frame f;
			assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -EPROTO);
			assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -EPROTO);
			size_t used = 99;
			assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes, s.size, &used, &f), -EPROTO);
			assert_int_equal(used, 0);
			assert_int_equal(dstats(d).frames, picks[pi]);
			assert_int_equal(dstats(d).bytes, cut);
			close(p[0]);
			sv2shm_frame_decoder_free(d);
			assert_int_equal(sv2shm_buffer_len(tb.b), 0);
			assert_int_equal(consumer_release_all(&c), 0);
			assert_int_equal(c.failed, 0);
			tb_close(&tb);
		}
	}
	stream_free(&s);
}

/* A header over max_payload after good frames in the same read: the good
 * frames first (no further read), then -EMSGSIZE for good; also with the
 * bad header split across two reads. */
static void test_bulk_msgsize_midstream(void **state)
{
	(void)state;
	enum { GOOD = 50, AFTER = 10 };
	uint32_t lens[GOOD + 1 + AFTER];
	for (size_t i = 0; i < GOOD + 1 + AFTER; i++)
		lens[i] = (uint32_t)((i * 37u) % 1001u);
	lens[GOOD] = 1001; /* max_payload is 1000 */
	struct stream s;
	stream_of(&s, lens, GOOD + 1 + AFTER, g_seed + 1400);
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		for (int split_header = 0; split_header < 2; split_header++) {
			struct testbuf tb;
			tb_open(&tb, kinds[ki]);
			struct sv2shm_frame_decoder *d = NULL;
			assert_int_equal(sv2shm_frame_decoder_new(tb.b, 1000, &d), 0);
			struct consumer c;
			consumer_init(&c, &s, &tb, 3, ki);
			int p[2];
			assert_int_equal(pipe2(p, O_NONBLOCK), 0);
			size_t first = split_header ? s.f[GOOD].off + 3 : s.size;
			write_full(p[1], s.bytes, first);
			struct bulk_seen seen;
			memset(&seen, 0, sizeof(seen));
			int rc = bulk_decode(d, &c, p[0], &seen);
			if (split_header) {
				assert_int_equal(rc, 0);
				assert_true(sv2shm_frame_decoder_in_frame(d));
				write_full(p[1], s.bytes + first, s.size - first);
				rc = bulk_decode(d, &c, p[0], &seen);
			}
			assert_int_equal(rc, -EMSGSIZE);
			assert_int_equal(c.next, GOOD);
			struct sv2shm_frame_decoder_stats st = dstats(d);
			assert_int_equal(st.frames, GOOD);
			if (tb.pool && !split_header)
				assert_int_equal(st.reads, 1); /* all good frames from the one read */
			/* Permanent, whatever comes next. */
			struct sv2shm_frame f;
			assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -EMSGSIZE);
			size_t used = 99;
			assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes, s.size, &used, &f), -EMSGSIZE);
			assert_int_equal(used, 0);
			assert_false(sv2shm_frame_decoder_in_frame(d));
			assert_int_equal(dstats(d).frames, GOOD);
			assert_int_equal(dstats(d).reads, st.reads);
			close(p[0]);
			close(p[1]);
			sv2shm_frame_decoder_free(d);
			assert_int_equal(consumer_release_all(&c), 0);
			assert_int_equal(c.failed, 0);
			/* The buffer is fine afterwards. */
			struct sv2shm_slice sl;
			assert_int_equal(sv2shm_buffer_write_all(tb.b, "ok", 2), 0);
			assert_int_equal(sv2shm_buffer_get_data_owned(tb.b, &sl), 0);
			assert_int_equal(sl.len, 2);
			assert_memory_equal(sl.data, "ok", 2);
			assert_int_equal(sv2shm_slice_release(&sl), 0);
			tb_close(&tb);
		}
	}
	stream_free(&s);
}

static int64_t ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (int64_t)(t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Frames read in bulk but no slot for the next one: FAIL says -EAGAIN and
 * reads nothing more; WAIT times out; FALLBACK copies that frame to system
 * memory. The pending bytes stay where they were read. */
static void test_bulk_no_slot(void **state)
{
	(void)state;
	static const uint32_t lens[] = {10, 0, 33, 7, 100, 1};
	struct stream s;
	stream_of(&s, lens, 6, g_seed + 1500);
	struct sv2shm_frame f[6];
	int p[2];

	/* FAIL, 2 slots. */
	struct testbuf tb;
	pool_open(&tb, 4096, 2, SV2SHM_POOL_FAIL);
	struct sv2shm_frame_decoder *d = NULL;
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	assert_int_equal(pipe(p), 0);
	write_full(p[1], s.bytes, s.size);
	close(p[1]);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f[0]), 1);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f[1]), 1);
	assert_ptr_equal(f[1].slice.data, f[0].slice.data + HDR + 10);
	assert_int_equal(dstats(d).reads, 1);
	struct sv2shm_frame g;
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -EAGAIN);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -EAGAIN);
	assert_true(sv2shm_frame_decoder_in_frame(d));
	assert_int_equal(dstats(d).reads, 1);
	assert_int_equal(dstats(d).frames, 2);
	size_t used = 99;
	/* feed() is refused the same way, and consumes nothing. */
	assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes, 1, &used, &g), -EAGAIN);
	assert_int_equal(used, 0);
	assert_memory_equal(f[0].slice.data, s.bytes, HDR + 10);
	assert_int_equal(sv2shm_slice_release(&f[0].slice), 0);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f[2]), 1);
	assert_int_equal(f[2].msg_length, 33);
	assert_int_equal(sv2shm_slice_kind(&f[2].slice), SV2SHM_SLICE_POOL);
	assert_ptr_equal(f[2].slice.data, f[1].slice.data + HDR);
	assert_memory_equal(f[2].slice.data, s.bytes + s.f[2].off, HDR + 33);
	assert_memory_equal(f[1].slice.data, s.bytes + s.f[1].off, HDR);
	assert_int_equal(sv2shm_slice_release(&f[1].slice), 0);
	for (size_t i = 3; i < 6; i++) {
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f[i]), 1);
		assert_memory_equal(f[i].slice.data, s.bytes + s.f[i].off, HDR + lens[i]);
		assert_ptr_equal(f[i].slice.data, f[i - 1].slice.data + HDR + lens[i - 1]);
		assert_int_equal(sv2shm_slice_release(&f[i - 1].slice), 0);
	}
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -ENODATA);
	assert_int_equal(dstats(d).reads, 2);
	assert_int_equal(sv2shm_slice_release(&f[5].slice), 0);
	close(p[0]);
	sv2shm_frame_decoder_free(d);
	tb_close(&tb);

	/* WAIT, 1 slot, 30 ms. */
	memset(&tb, 0, sizeof(tb));
	tb.kind = K_POOL_BIG;
	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	o.capacity = 4096;
	o.slots = 1;
	o.policy = SV2SHM_POOL_WAIT;
	o.wait_timeout_ms = 30;
	o.wait_spin_us = SV2SHM_SPIN_NONE;
	assert_int_equal(sv2shm_pool_new(&o, &tb.pool), 0);
	tb.b = sv2shm_pool_buffer(tb.pool);
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	assert_int_equal(pipe(p), 0);
	write_full(p[1], s.bytes, s.size);
	close(p[1]);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f[0]), 1);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -ETIMEDOUT);
	int64_t ms = ms_since(&t0);
	assert_true(ms >= 29 && ms < 2000);
	assert_int_equal(dstats(d).reads, 1);
	assert_int_equal(sv2shm_slice_release(&f[0].slice), 0);
	for (size_t i = 1; i < 6; i++) {
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f[i]), 1);
		assert_memory_equal(f[i].slice.data, s.bytes + s.f[i].off, HDR + lens[i]);
		assert_int_equal(sv2shm_slice_release(&f[i].slice), 0);
	}
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -ENODATA);
	close(p[0]);
	sv2shm_frame_decoder_free(d);
	tb_close(&tb);

	/* FALLBACK, 1 slot: frames 1 and 2 are copies; frame 3 is in the region
	 * again, where it was read. */
	pool_open(&tb, 4096, 1, SV2SHM_POOL_FALLBACK);
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	assert_int_equal(pipe(p), 0);
	write_full(p[1], s.bytes, s.size);
	close(p[1]);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f[i]), 1);
		assert_int_equal(sv2shm_slice_kind(&f[i].slice), i == 0 ? SV2SHM_SLICE_POOL : SV2SHM_SLICE_SYSTEM);
		assert_int_equal(f[i].slice.len, HDR + lens[i]);
		assert_memory_equal(f[i].slice.data, s.bytes + s.f[i].off, HDR + lens[i]);
	}
	const uint8_t *region0 = f[0].slice.data;
	assert_int_equal(sv2shm_slice_release(&f[0].slice), 0);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f[3]), 1);
	assert_int_equal(sv2shm_slice_kind(&f[3].slice), SV2SHM_SLICE_POOL);
	assert_ptr_equal(f[3].slice.data, region0 + s.f[3].off);
	assert_memory_equal(f[3].slice.data, s.bytes + s.f[3].off, HDR + lens[3]);
	assert_memory_equal(f[1].slice.data, s.bytes + s.f[1].off, HDR + lens[1]);
	assert_memory_equal(f[2].slice.data, s.bytes + s.f[2].off, HDR + lens[2]);
	assert_int_equal(sv2shm_slice_release(&f[3].slice), 0);
	for (size_t i = 4; i < 6; i++) {
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f[i]), 1);
		assert_memory_equal(f[i].slice.data, s.bytes + s.f[i].off, HDR + lens[i]);
		assert_int_equal(sv2shm_slice_release(&f[i].slice), 0);
	}
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -ENODATA);
	assert_int_equal(dstats(d).reads, 2);
	struct sv2shm_pool_stats st;
	assert_int_equal(sv2shm_pool_stats(tb.pool, &st), 0);
	assert_int_equal(st.from_system, 2);
	assert_int_equal(st.from_pool, 4);
	assert_int_equal(sv2shm_slice_release(&f[1].slice), 0);
	assert_int_equal(sv2shm_slice_release(&f[2].slice), 0);
	close(p[0]);
	sv2shm_frame_decoder_free(d);
	tb_close(&tb);
	stream_free(&s);
}

/* A full pool with nothing pending: read_fd reads only the next header (6
 * bytes) into the decoder, so that the end of the stream is still seen; a
 * frame larger than the whole pool is -ENOBUFS, not permanent. */
static void test_bulk_full_pool_header_only(void **state)
{
	(void)state;
	static const uint32_t lens[] = {20, 50, 3};
	struct stream s;
	stream_of(&s, lens, 3, g_seed + 1600);
	struct testbuf tb;
	pool_open(&tb, 4096, 1, SV2SHM_POOL_FAIL);
	struct sv2shm_frame_decoder *d = NULL;
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	struct sv2shm_frame a, b, g;
	write_full(p[1], s.bytes, s.f[1].off);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &a), 1);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), 0); /* drained */
	write_full(p[1], s.bytes + s.f[1].off, s.size - s.f[1].off);
	struct sv2shm_frame_decoder_stats st0 = dstats(d);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -EAGAIN);
	struct sv2shm_frame_decoder_stats st1 = dstats(d);
	assert_int_equal(st1.reads, st0.reads + 1);
	assert_int_equal(st1.bytes, st0.bytes + HDR); /* the header only */
	assert_true(sv2shm_frame_decoder_in_frame(d));
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -EAGAIN);
	assert_int_equal(dstats(d).reads, st1.reads); /* nothing more read */
	assert_int_equal(sv2shm_slice_release(&a.slice), 0);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &b), 1);
	assert_int_equal(b.msg_length, 50);
	assert_int_equal(b.extension_type, s.f[1].ext);
	assert_int_equal(b.msg_type, s.f[1].type);
	assert_memory_equal(b.slice.data, s.bytes + s.f[1].off, HDR + 50);
	assert_int_equal(sv2shm_slice_release(&b.slice), 0);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &b), 1);
	assert_memory_equal(b.slice.data, s.bytes + s.f[2].off, HDR + 3);
	/* Full again (b is live), nothing pending: the end is seen. */
	close(p[1]);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -ENODATA);
	assert_false(sv2shm_frame_decoder_in_frame(d));
	close(p[0]);
	sv2shm_frame_decoder_free(d);

	/* Full, and the stream ends 3 bytes into a header: with no room the
	 * header is read into the decoder (as feed() stages it), so the
	 * truncation is seen at once, room or not — and for good. */
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	assert_int_equal(pipe(p), 0);
	write_full(p[1], s.bytes, 3);
	close(p[1]);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -EPROTO);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -EPROTO);
	assert_int_equal(sv2shm_slice_release(&b.slice), 0);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -EPROTO);
	close(p[0]);
	sv2shm_frame_decoder_free(d);
	tb_close(&tb);

	/* Larger than the whole pool, in the middle of a bulk read. */
	static const uint32_t big_lens[] = {5, 2000};
	struct stream bs;
	stream_of(&bs, big_lens, 2, g_seed + 1700);
	pool_open(&tb, 1000, 4, SV2SHM_POOL_FAIL);
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	assert_int_equal(pipe(p), 0);
	write_full(p[1], bs.bytes, bs.size);
	close(p[1]);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &a), 1);
	assert_memory_equal(a.slice.data, bs.bytes, HDR + 5);
	assert_int_equal(sv2shm_slice_release(&a.slice), 0);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -ENOBUFS);
	assert_true(sv2shm_frame_decoder_in_frame(d));
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &g), -ENOBUFS);
	close(p[0]);
	sv2shm_frame_decoder_free(d);
	tb_close(&tb);
	stream_free(&bs);
	stream_free(&s);
}

/* read_fd() leaves frames pending; feed() hands them out first (consuming
 * nothing), then goes on with its own input — whatever the pending tail is:
 * nothing, part of a header, a whole header, part of a payload. */
static void test_bulk_then_feed(void **state)
{
	(void)state;
	static const uint32_t lens[] = {12, 0, 40, 7, 300, 25, 0, 9};
	enum { NF = 8, TAIL_FRAME = 5 };
	struct stream s;
	stream_of(&s, lens, NF, g_seed + 1800);
	const struct expect *et = &s.f[TAIL_FRAME];
	size_t tails[] = {0, 3, HDR, HDR + 10, HDR + et->len - 1};
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		for (size_t ti = 0; ti < sizeof(tails) / sizeof(tails[0]); ti++) {
			struct testbuf tb;
			tb_open(&tb, kinds[ki]);
			struct sv2shm_pool_stats before;
			stats_of(&tb, &before);
			struct sv2shm_frame_decoder *d = NULL;
			assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
			struct consumer c;
			consumer_init(&c, &s, &tb, 3, ti);
			int p[2];
			assert_int_equal(pipe2(p, O_NONBLOCK), 0);
			size_t split = et->off + tails[ti];
			write_full(p[1], s.bytes, split);
			struct sv2shm_frame f;
			assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 1);
			/* What the read took from the pipe: all of it on a pool (room
			 * for it); the stream goes on from there, by feed(). */
			size_t pos = (size_t)dstats(d).bytes, read_bytes = pos;
			if (tb.pool)
				assert_int_equal(pos, split);
			size_t complete = 0;
			while (complete < NF && s.f[complete].off + HDR + s.f[complete].len <= pos)
				complete++;
			assert_true(complete >= 1);
			if (tb.pool)
				assert_int_equal(complete, TAIL_FRAME);
			const uint8_t *prev_end = f.slice.data + f.slice.len;
			int prev_kind = sv2shm_slice_kind(&f.slice);
			assert_int_equal(consumer_take(&c, &f), 0);
			if (complete < NF && pos > s.f[complete].off)
				assert_true(sv2shm_frame_decoder_in_frame(d)); /* a partial frame is pending */
			/* feed(): the pending complete frames, consuming nothing, split
			 * off right after each other. */
			size_t used;
			while (c.next < complete) {
				used = 99;
				memset(&f, 0, sizeof(f));
				int rc = sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &f);
				if (rc == -EAGAIN) {
					assert_int_equal(used, 0);
					assert_int_equal(consumer_on_eagain(&c), 0);
					prev_kind = SV2SHM_SLICE_NONE;
					continue;
				}
				if (rc != 1 || used != 0)
					print_error("kind %s, tail %zu: pending frame %zu: feed returned %d, consumed %zu\n",
						    kind_names[kinds[ki]], tails[ti], c.next, rc, used);
				assert_int_equal(rc, 1);
				assert_int_equal(used, 0);
				int k = sv2shm_slice_kind(&f.slice);
				if (tb.sb || (k == SV2SHM_SLICE_POOL && prev_kind == SV2SHM_SLICE_POOL))
					assert_ptr_equal(f.slice.data, prev_end);
				prev_end = f.slice.data + f.slice.len;
				prev_kind = k;
				assert_int_equal(consumer_take(&c, &f), 0);
			}
			/* Then the frame in the pending tail, completed from feed()'s
			 * input, and the rest: each call consumes up to its frame's end. */
			while (c.next < NF) {
				used = 99;
				memset(&f, 0, sizeof(f));
				int rc = sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &f);
				assert_true(used <= s.size - pos);
				pos += used;
				if (rc == -EAGAIN) {
					assert_int_equal(consumer_on_eagain(&c), 0);
					continue;
				}
				if (rc != 1)
					print_error("kind %s, tail %zu: frame %zu: feed returned %d\n", kind_names[kinds[ki]],
						    tails[ti], c.next, rc);
				assert_int_equal(rc, 1);
				assert_int_equal(pos, s.f[c.next].off + HDR + s.f[c.next].len);
				assert_int_equal(consumer_take(&c, &f), 0);
			}
			assert_int_equal(pos, s.size);
			assert_false(sv2shm_frame_decoder_in_frame(d));
			close(p[1]);
			if (read_bytes == split)
				assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -ENODATA);
			close(p[0]);
			struct sv2shm_frame_decoder_stats st = dstats(d);
			assert_int_equal(st.frames, NF);
			assert_int_equal(st.bytes, read_bytes);
			if (c.failed)
				print_error("kind %s, tail %zu\n", kind_names[kinds[ki]], tails[ti]);
			consumer_finish(&c, &before);
			sv2shm_frame_decoder_free(d);
			tb_close(&tb);
		}
	}
	stream_free(&s);
}

/* feed() staged part of a header, or a header and part of a payload; then
 * read_fd() reads the rest and many more frames at once. */
static void test_feed_then_bulk(void **state)
{
	(void)state;
	enum { NF = 40 };
	uint32_t lens[NF];
	for (size_t i = 0; i < NF; i++)
		lens[i] = (uint32_t)((i * 53u) % 200u);
	lens[0] = 60;
	lens[20] = 80;
	struct stream s;
	stream_of(&s, lens, NF, g_seed + 1900);
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		struct testbuf tb;
		tb_open(&tb, kinds[ki]);
		struct sv2shm_pool_stats before;
		stats_of(&tb, &before);
		struct sv2shm_frame_decoder *d = NULL;
		assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
		struct consumer c;
		consumer_init(&c, &s, &tb, 0, 1);
		int p[2];
		assert_int_equal(pipe2(p, O_NONBLOCK), 0);
		struct sv2shm_frame f;
		size_t used;

		/* 3 header bytes by feed, frames 0..19 through the pipe. */
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes, 3, &used, &f), 0);
		assert_int_equal(used, 3);
		write_full(p[1], s.bytes + 3, s.f[20].off - 3);
		struct bulk_seen seen;
		memset(&seen, 0, sizeof(seen));
		assert_int_equal(bulk_decode(d, &c, p[0], &seen), 0);
		assert_int_equal(c.next, 20);
		assert_false(sv2shm_frame_decoder_in_frame(d));
		if (tb.pool)
			assert_int_equal(seen.adjacent, 19); /* one read for all of them */

		/* Header and 30 payload bytes of frame 20 by feed, the rest of the
		 * stream through the pipe. */
		size_t pos = s.f[20].off;
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, HDR + 30, &used, &f), 0);
		assert_int_equal(used, HDR + 30);
		assert_true(sv2shm_frame_decoder_in_frame(d));
		pos += used;
		write_full(p[1], s.bytes + pos, s.size - pos);
		close(p[1]);
		memset(&seen, 0, sizeof(seen));
		assert_int_equal(bulk_decode(d, &c, p[0], &seen), -ENODATA);
		close(p[0]);
		if (tb.pool)
			assert_int_equal(seen.adjacent, NF - 21);
		struct sv2shm_frame_decoder_stats st = dstats(d);
		assert_int_equal(st.frames, NF);
		assert_int_equal(st.bytes, s.size - 3 - HDR - 30);
		if (tb.pool)
			assert_int_equal(st.reads, 4); /* data, EAGAIN; data, end */
		consumer_finish(&c, &before);
		sv2shm_frame_decoder_free(d);
		tb_close(&tb);
	}
	stream_free(&s);
}

/* The decoder's counts, and its argument checks. */
static void test_decoder_stats(void **state)
{
	(void)state;
	struct testbuf tb;
	tb_open(&tb, K_POOL_BIG);
	struct sv2shm_frame_decoder *d = NULL;
	assert_int_equal(sv2shm_frame_decoder_new(tb.b, 0, &d), 0);
	struct sv2shm_frame_decoder_stats st;
	assert_int_equal(sv2shm_frame_decoder_stats(NULL, &st), -EINVAL);
	assert_int_equal(sv2shm_frame_decoder_stats(d, NULL), -EINVAL);
	st = dstats(d);
	assert_int_equal(st.reads, 0);
	assert_int_equal(st.bytes, 0);
	assert_int_equal(st.frames, 0);
	static const uint32_t lens[] = {4, 0, 9};
	struct stream s;
	stream_of(&s, lens, 3, g_seed + 2000);
	struct sv2shm_frame f;
	size_t used, pos = 0;
	/* feed() counts frames, not reads. */
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(sv2shm_frame_decoder_feed(d, s.bytes + pos, s.size - pos, &used, &f), 1);
		pos += used;
		assert_int_equal(sv2shm_slice_release(&f.slice), 0);
	}
	st = dstats(d);
	assert_int_equal(st.frames, 3);
	assert_int_equal(st.reads, 0);
	assert_int_equal(st.bytes, 0);
	/* read_fd(): an EAGAIN read counts, and so does the end. */
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 0);
	assert_int_equal(dstats(d).reads, 1);
	write_full(p[1], s.bytes, s.size);
	close(p[1]);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), 1);
		assert_int_equal(sv2shm_slice_release(&f.slice), 0);
	}
	assert_int_equal(sv2shm_frame_decoder_read_fd(d, p[0], &f), -ENODATA);
	close(p[0]);
	st = dstats(d);
	assert_int_equal(st.frames, 6);
	assert_int_equal(st.reads, 3);
	assert_int_equal(st.bytes, s.size);
	sv2shm_frame_decoder_free(d);
	tb_close(&tb);
	stream_free(&s);
}

int main(void)
{
	const char *env = getenv("SV2SHM_TEST_SEED");
	if (env && *env)
		g_seed = strtoull(env, NULL, 0);
	printf("# test_frame seed %" PRIu64 " (SV2SHM_TEST_SEED to replay)\n", g_seed);
	signal(SIGPIPE, SIG_IGN);

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_and_arguments),
		cmocka_unit_test(test_stream_memory_chunks),
		cmocka_unit_test(test_stream_memory_bytewise),
		cmocka_unit_test(test_stream_pipe_thread),
		cmocka_unit_test(test_stream_socketpair_fork),
		cmocka_unit_test(test_stream_nonblocking),
		cmocka_unit_test(test_mixed_feed_and_fd),
		cmocka_unit_test(test_msgsize),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_clean_end),
		cmocka_unit_test(test_zero_length_frames),
		cmocka_unit_test(test_fail_policy_full_pool),
		cmocka_unit_test(test_free_mid_frame),
		cmocka_unit_test(test_decoder_stats),
		cmocka_unit_test(test_bulk_read_pool),
		cmocka_unit_test(test_bulk_read_sysbuf),
		cmocka_unit_test(test_bulk_sysbuf_memory_bounded),
		cmocka_unit_test(test_bulk_leaves_alloc_mode),
		cmocka_unit_test(test_real_frames_bulk),
		cmocka_unit_test(test_real_frames_every_cut),
		cmocka_unit_test(test_real_frames_small_pieces),
		cmocka_unit_test(test_bulk_truncated),
		cmocka_unit_test(test_bulk_msgsize_midstream),
		cmocka_unit_test(test_bulk_no_slot),
		cmocka_unit_test(test_bulk_full_pool_header_only),
		cmocka_unit_test(test_bulk_then_feed),
		cmocka_unit_test(test_feed_then_bulk),
		/* Last: it trips UBSan while frame.c memcpy()s from a NULL source. */
		cmocka_unit_test(test_feed_null_empty_input),
	};
	return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
