/*
 * `frame_decoder`: arbitrary byte streams through the Sv2 frame decoder.
 *
 * The stream is decoded twice — by a decoder on a pool (capacity, slots and
 * policy chosen by the input) and by one on a system-memory buffer — each
 * either fed from memory in input-chosen chunk sizes (including empty feeds)
 * or read from a non-blocking pipe the chunks are written into. Every frame
 * is checked against an independent parse of the same stream (header fields,
 * length, the slice's bytes), may be held for a while (so the pool fills and
 * changes mode) and is released; held frames are checked again before their
 * release. Errors must be the documented ones at the right place: -EMSGSIZE
 * exactly for a frame longer than max_payload (permanent: sticky); -ENOBUFS
 * exactly for a frame longer than a FAIL or WAIT pool (retryable: the header
 * is kept, in_frame() stays true, a retry says -ENOBUFS again);
 * -EAGAIN/-ETIMEDOUT only while frames are held, and retrying after
 * releasing them works; at the end of a pipe, -ENODATA at
 * a frame boundary and -EPROTO inside a frame. Afterwards a new decoder on the
 * same pool buffer decodes one more frame, every slice is released and the
 * pool is destroyed (0).
 *
 * Input: [capacity] [slots] [policy] [max_payload class (+ bytes)] [hold]
 *        [modes] [chunk multiplier] [4 chunk sizes] stream...
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sv2shm/sv2shm.h>

#include "fuzz_common.h"
#include "targets.h"

#define MAX_HOLD 8u

struct ref_frame {
	size_t pos; /* header offset in the stream */
	uint32_t len;
	uint16_t ext;
	uint8_t type;
};

struct ref {
	struct ref_frame *f;
	size_t n;
	size_t end;      /* where the last complete frame ends */
	bool too_big;    /* the frame at `end` announces more than max_payload */
};

/* The independent parse: 6-byte headers, u24 little-endian lengths. */
static void ref_parse(const uint8_t *s, size_t n, uint32_t maxp, struct ref *r)
{
	r->f = malloc((n / 6 + 1) * sizeof(*r->f));
	FZ_CHECK(r->f != NULL, "malloc");
	r->n = 0;
	size_t pos = 0;
	r->too_big = false;
	while (n - pos >= 6) {
		uint32_t len = (uint32_t)s[pos + 3] | (uint32_t)s[pos + 4] << 8 | (uint32_t)s[pos + 5] << 16;
		if (len > maxp) {
			r->too_big = true;
			break;
		}
		if (n - pos - 6 < len)
			break;
		r->f[r->n++] = (struct ref_frame){pos, len, (uint16_t)(s[pos] | s[pos + 1] << 8), s[pos + 2]};
		pos += 6u + len;
	}
	r->end = pos;
}

struct dec {
	const char *name;
	struct sv2shm_buffer *buf;
	struct sv2shm_pool *pool; /* NULL for the system buffer */
	int policy;
	uint64_t cap;
	struct sv2shm_frame_decoder *d;
	const uint8_t *stream;
	size_t n;
	const struct ref *ref;
	size_t next;     /* next expected frame */
	bool stopped;    /* the decoder cannot go on (an expected error) */
	unsigned hold;   /* frames kept before releasing the oldest */
	struct sv2shm_frame held[MAX_HOLD];
	const struct ref_frame *held_ref[MAX_HOLD];
	unsigned nheld;
	uint64_t frames;
};

static void check_held_bytes(const struct dec *x, unsigned i)
{
	const struct ref_frame *rf = x->held_ref[i];
	FZ_CHECK(memcmp(x->held[i].slice.data, x->stream + rf->pos, 6u + rf->len) == 0,
		 "%s: held frame at stream offset %zu (%u bytes) changed before its release", x->name, rf->pos,
		 6u + rf->len);
}

static void release_oldest(struct dec *x)
{
	check_held_bytes(x, 0);
	int r = sv2shm_slice_release(&x->held[0].slice);
	FZ_CHECK(r == 0, "%s: frame release: %d (%s)", x->name, r, sv2shm_strerror(r));
	memmove(&x->held[0], &x->held[1], (x->nheld - 1u) * sizeof(x->held[0]));
	memmove(&x->held_ref[0], &x->held_ref[1], (x->nheld - 1u) * sizeof(x->held_ref[0]));
	x->nheld--;
}

static void release_all(struct dec *x)
{
	while (x->nheld)
		release_oldest(x);
}

static void got_frame(struct dec *x, struct sv2shm_frame *fr)
{
	FZ_CHECK(x->next < x->ref->n, "%s: frame %zu decoded, the stream has only %zu", x->name, x->next, x->ref->n);
	const struct ref_frame *rf = &x->ref->f[x->next++];
	FZ_CHECK(fr->extension_type == rf->ext && fr->msg_type == rf->type && fr->msg_length == rf->len &&
			 fr->channel_msg == ((rf->ext & SV2SHM_FRAME_CHANNEL_BIT) != 0),
		 "%s: frame %zu: ext %#x type %u len %u, the stream says ext %#x type %u len %u", x->name,
		 x->next - 1, fr->extension_type, fr->msg_type, fr->msg_length, rf->ext, rf->type, rf->len);
	FZ_CHECK(fr->slice.len == 6u + rf->len, "%s: frame slice of %zu bytes for a %u-byte payload", x->name,
		 fr->slice.len, rf->len);
	FZ_CHECK(memcmp(fr->slice.data, x->stream + rf->pos, fr->slice.len) == 0,
		 "%s: frame at stream offset %zu differs from the stream", x->name, rf->pos);
	uint8_t hdr[SV2SHM_FRAME_HEADER_SIZE];
	FZ_CHECK(sv2shm_frame_header_encode(hdr, rf->ext, rf->type, rf->len) == 0 &&
			 memcmp(hdr, x->stream + rf->pos, sizeof(hdr)) == 0,
		 "header_encode does not give the stream's header back");
	int kind = sv2shm_slice_kind(&fr->slice);
	if (!x->pool)
		FZ_CHECK(kind == SV2SHM_SLICE_SYSTEM, "%s: frame slice kind %d", x->name, kind);
	else if (x->policy != SV2SHM_POOL_FALLBACK)
		FZ_CHECK(kind == SV2SHM_SLICE_POOL, "%s: frame slice kind %d", x->name, kind);
	else
		FZ_CHECK(kind == SV2SHM_SLICE_POOL || kind == SV2SHM_SLICE_SYSTEM, "%s: kind %d", x->name, kind);
	x->frames++;
	if (x->hold == 0) {
		FZ_CHECK(sv2shm_slice_release(&fr->slice) == 0, "release");
		return;
	}
	if (x->nheld == x->hold)
		release_oldest(x);
	x->held[x->nheld] = *fr;
	x->held_ref[x->nheld++] = rf;
}

/* The frame the decoder is working on when it reports an error. */
static const char *explain_error(struct dec *x, int r)
{
	const struct ref *ref = x->ref;
	bool at_end = x->next == ref->n;
	uint32_t len = 0;
	if (!at_end) {
		len = ref->f[x->next].len;
	} else {
		/* The last, incomplete or too long, frame: its header is complete
		 * (the decoder only asks the buffer for room after 6 bytes). */
		FZ_CHECK(x->n - ref->end >= 6, "%s: error %d (%s) with no complete header pending", x->name, r,
			 sv2shm_strerror(r));
		const uint8_t *h = x->stream + ref->end;
		len = (uint32_t)h[3] | (uint32_t)h[4] << 8 | (uint32_t)h[5] << 16;
	}
	bool pool_limited = x->pool && x->policy != SV2SHM_POOL_FALLBACK && 6u + (uint64_t)len > x->cap;
	if (r == -EMSGSIZE) {
		FZ_CHECK(at_end && ref->too_big, "%s: -EMSGSIZE at frame %zu (len %u, pool %llu, policy %d), not past max_payload",
			 x->name, x->next, len, (unsigned long long)x->cap, x->policy);
		return "max_payload";
	}
	if (r == -ENOBUFS) {
		FZ_CHECK(pool_limited && !(at_end && ref->too_big),
			 "%s: -ENOBUFS at frame %zu (len %u, pool %llu, policy %d)", x->name, x->next, len,
			 (unsigned long long)x->cap, x->policy);
		return "pool";
	}
	if (r == -EAGAIN || r == -ETIMEDOUT) {
		FZ_CHECK(x->pool && x->policy == (r == -EAGAIN ? SV2SHM_POOL_FAIL : SV2SHM_POOL_WAIT),
			 "%s: %d (%s) from a buffer that should not refuse", x->name, r, sv2shm_strerror(r));
		FZ_CHECK(x->nheld > 0, "%s: an empty pool (capacity %llu) refused a %u-byte frame: %d (%s)", x->name,
			 (unsigned long long)x->cap, 6u + len, r, sv2shm_strerror(r));
		return "full";
	}
	FZ_CHECK(0, "%s: unexpected error %d (%s) at frame %zu", x->name, r, sv2shm_strerror(r), x->next);
	return "";
}

/* Handle a negative return: true to retry, false when the decoder stopped. */
static bool on_error(struct dec *x, int r)
{
	const char *why = explain_error(x, r);
	if (strcmp(why, "full") == 0) {
		release_all(x);
		return true;
	}
	if (strcmp(why, "max_payload") == 0) {
		/* Sticky: the decoder stays in its error state. */
		size_t consumed = 1;
		struct sv2shm_frame fr;
		uint8_t b = 0;
		int again = sv2shm_frame_decoder_feed(x->d, &b, 1, &consumed, &fr);
		FZ_CHECK(again == -EMSGSIZE && consumed == 0, "%s: after -EMSGSIZE, feed returned %d consumed %zu",
			 x->name, again, consumed);
	} else if (strcmp(why, "pool") == 0) {
		/* Retryable: the header is kept; the pool is no larger now. */
		FZ_CHECK(sv2shm_frame_decoder_in_frame(x->d), "%s: -ENOBUFS, but in_frame() is false", x->name);
		size_t consumed = 1;
		struct sv2shm_frame fr;
		int again = sv2shm_frame_decoder_feed(x->d, NULL, 0, &consumed, &fr);
		FZ_CHECK(again == -ENOBUFS && consumed == 0, "%s: after -ENOBUFS, a retry returned %d consumed %zu",
			 x->name, again, consumed);
	}
	x->stopped = true;
	return false;
}

static size_t chunk_len(const uint8_t *chunks, unsigned mult, unsigned i)
{
	return (size_t)chunks[i % 4u] * mult;
}

static void run_memory(struct dec *x, const uint8_t *s, size_t n, const uint8_t *chunks, unsigned mult)
{
	size_t pos = 0;
	for (unsigned ci = 0; pos < n && !x->stopped; ci++) {
		size_t clen = chunk_len(chunks, mult, ci);
		if (clen == 0) {
			/* An empty feed (NULL data): consumes nothing, completes nothing. */
			size_t consumed = 1;
			struct sv2shm_frame fr;
			int r = sv2shm_frame_decoder_feed(x->d, NULL, 0, &consumed, &fr);
			FZ_CHECK(r == 0 && consumed == 0, "%s: empty feed returned %d consumed %zu", x->name, r,
				 consumed);
			clen = 1;
		}
		if (clen > n - pos)
			clen = n - pos;
		size_t off = 0;
		unsigned retries = 0;
		bool retry = false; /* a refused header is retried by an empty feed */
		while ((off < clen || retry) && !x->stopped) {
			size_t consumed = SIZE_MAX;
			struct sv2shm_frame fr;
			retry = false;
			int r = sv2shm_frame_decoder_feed(x->d, off < clen ? s + pos + off : NULL, clen - off, &consumed,
							  &fr);
			FZ_CHECK(consumed <= clen - off, "%s: consumed %zu of %zu", x->name, consumed, clen - off);
			off += consumed;
			if (r == 1) {
				got_frame(x, &fr);
				retries = 0;
			} else if (r == 0) {
				FZ_CHECK(off == clen, "%s: feed returned 0 with %zu bytes left", x->name, clen - off);
			} else {
				FZ_CHECK(++retries < 4, "%s: retrying does not help", x->name);
				retry = on_error(x, r);
			}
		}
		pos += clen;
	}
	if (x->stopped)
		return;
	const struct ref *ref = x->ref;
	FZ_CHECK(x->next == ref->n, "%s: %zu frames decoded, the stream has %zu", x->name, x->next, ref->n);
	if (ref->too_big) {
		/* All bytes were fed: the decoder must have hit the long header. */
		FZ_CHECK(0, "%s: the frame at %zu announces more than max_payload, no -EMSGSIZE", x->name, ref->end);
	}
	FZ_CHECK(sv2shm_frame_decoder_in_frame(x->d) == (ref->end < n),
		 "%s: in_frame %d, but %zu bytes of a frame are pending", x->name, sv2shm_frame_decoder_in_frame(x->d),
		 n - ref->end);
}

static void run_pipe(struct dec *x, const uint8_t *s, size_t n, const uint8_t *chunks, unsigned mult)
{
	int p[2];
	FZ_CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
	size_t pos = 0;
	bool closed = false;
	for (unsigned ci = 0; !x->stopped; ci++) {
		if (pos < n) {
			size_t clen = chunk_len(chunks, mult, ci);
			if (clen == 0)
				clen = 1;
			if (clen > n - pos)
				clen = n - pos;
			ssize_t w = write(p[1], s + pos, clen);
			FZ_CHECK(w == (ssize_t)clen, "pipe write %zd of %zu", w, clen);
			pos += clen;
		} else if (!closed) {
			close(p[1]);
			closed = true;
		}
		unsigned retries = 0;
		for (;;) {
			struct sv2shm_frame fr;
			int r = sv2shm_frame_decoder_read_fd(x->d, p[0], &fr);
			if (r == 1) {
				got_frame(x, &fr);
				retries = 0;
				continue;
			}
			if (r == 0) {
				FZ_CHECK(!closed, "%s: read_fd returned 0 at the end of the pipe", x->name);
				break;
			}
			if (closed && (r == -ENODATA || r == -EPROTO)) {
				const struct ref *ref = x->ref;
				FZ_CHECK(x->next == ref->n && !ref->too_big, "%s: end of stream after %zu of %zu frames%s",
					 x->name, x->next, ref->n, ref->too_big ? " (a too long frame was missed)" : "");
				bool partial = ref->end < n;
				FZ_CHECK(r == (partial ? -EPROTO : -ENODATA),
					 "%s: read_fd at the end returned %d (%s), %zu bytes of a frame pending", x->name, r,
					 sv2shm_strerror(r), n - ref->end);
				int again = sv2shm_frame_decoder_read_fd(x->d, p[0], &fr);
				FZ_CHECK(again == r, "%s: read_fd after the end returned %d, then %d", x->name, r, again);
				x->stopped = true;
				break;
			}
			FZ_CHECK(++retries < 4, "%s: retrying does not help", x->name);
			if (!on_error(x, r))
				break;
		}
		if (closed)
			break;
	}
	close(p[0]);
	if (!closed)
		close(p[1]);
}

int sv2shm_fuzz_frame_decoder(const uint8_t *data, size_t size)
{
	static const uint64_t caps[] = {0, 6, 7, 64, 256, 4096, 65536, 0};
	struct fz in;
	fz_init(&in, data, size);
	uint8_t cb = fz_u8(&in);
	uint64_t cap = (cb & 7u) == 7u ? fz_u16(&in) : caps[cb & 7u];
	unsigned slots = 1u + fz_u8(&in) % 64u;
	uint8_t pb = fz_u8(&in);
	int policy = pb % 3u;
	int wait_ms = (pb >> 2) & 1u;
	uint8_t mb = fz_u8(&in);
	uint32_t maxp_raw;
	switch (mb & 3u) {
	case 0:
		maxp_raw = 0;
		break;
	case 1:
		maxp_raw = mb >> 2;
		break;
	case 2:
		maxp_raw = fz_u16(&in);
		break;
	default:
		maxp_raw = fz_u32(&in) >> (mb >> 3 & 7u);
		break;
	}
	unsigned hold = fz_u8(&in) % (MAX_HOLD + 1u);
	uint8_t modes = fz_u8(&in);
	static const unsigned mults[] = {1, 1, 4, 64};
	unsigned mult = mults[fz_u8(&in) & 3u];
	uint8_t chunks[4];
	fz_bytes(&in, chunks, sizeof(chunks));
	const uint8_t *s = in.p;
	size_t n = in.n;

	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	o.capacity = cap;
	o.slots = slots;
	o.policy = policy;
	o.wait_timeout_ms = wait_ms;
	struct sv2shm_pool *pool;
	FZ_CHECK(sv2shm_pool_new(&o, &pool) == 0, "pool_new");
	struct sv2shm_sysbuf *sb;
	FZ_CHECK(sv2shm_sysbuf_new(modes >> 4, &sb) == 0, "sysbuf_new");

	struct sv2shm_frame_decoder *probe = NULL;
	int r = sv2shm_frame_decoder_new(sv2shm_pool_buffer(pool), maxp_raw, &probe);
	uint32_t maxp = maxp_raw;
	if (maxp_raw > SV2SHM_FRAME_MAX_PAYLOAD) {
		FZ_CHECK(r == -EINVAL, "decoder_new(max_payload %u) returned %d", maxp_raw, r);
		maxp = maxp_raw & SV2SHM_FRAME_MAX_PAYLOAD;
	} else {
		FZ_CHECK(r == 0, "decoder_new(max_payload %u) returned %d", maxp_raw, r);
		sv2shm_frame_decoder_free(probe);
	}
	struct ref ref;
	ref_parse(s, n, maxp ? maxp : SV2SHM_FRAME_MAX_PAYLOAD, &ref);

	struct dec x[2];
	memset(x, 0, sizeof(x));
	x[0].name = "pool decoder";
	x[0].buf = sv2shm_pool_buffer(pool);
	x[0].pool = pool;
	x[0].policy = policy;
	x[0].cap = cap;
	x[1].name = "system-memory decoder";
	x[1].buf = sv2shm_sysbuf_buffer(sb);
	x[1].policy = SV2SHM_POOL_FALLBACK;
	for (int i = 0; i < 2; i++) {
		x[i].stream = s;
		x[i].n = n;
		x[i].ref = &ref;
		x[i].hold = hold;
		FZ_CHECK(sv2shm_frame_decoder_new(x[i].buf, maxp, &x[i].d) == 0, "decoder_new");
		if (modes & (1u << i))
			run_pipe(&x[i], s, n, chunks, mult);
		else
			run_memory(&x[i], s, n, chunks, mult);
		sv2shm_frame_decoder_free(x[i].d);
	}

	/* A new decoder on the same pool buffer starts clean, whatever the last
	 * one left half-written. */
	struct sv2shm_frame_decoder *d2;
	FZ_CHECK(sv2shm_frame_decoder_new(x[0].buf, 0, &d2) == 0, "decoder_new");
	uint8_t frame[6 + 5] = {0, 0, 0, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'};
	sv2shm_frame_header_encode(frame, 0x8001, 7, 5);
	size_t consumed = 0;
	struct sv2shm_frame fr;
	r = sv2shm_frame_decoder_feed(d2, frame, sizeof(frame), &consumed, &fr);
	if (r == -EAGAIN || r == -ETIMEDOUT) {
		release_all(&x[0]);
		r = sv2shm_frame_decoder_feed(d2, frame + consumed, sizeof(frame) - consumed, &consumed, &fr);
	}
	if (r == -ENOBUFS) {
		FZ_CHECK(policy != SV2SHM_POOL_FALLBACK && cap < sizeof(frame), "-ENOBUFS for an 11-byte frame");
	} else {
		FZ_CHECK(r == 1 && fr.extension_type == 0x8001 && fr.channel_msg && fr.msg_type == 7 &&
				 fr.msg_length == 5 && fr.slice.len == sizeof(frame) &&
				 memcmp(fr.slice.data, frame, sizeof(frame)) == 0,
			 "a fresh decoder on the used pool buffer: %d", r);
		x[0].frames++;
		FZ_CHECK(sv2shm_slice_release(&fr.slice) == 0, "release");
	}
	sv2shm_frame_decoder_free(d2);

	release_all(&x[0]);
	release_all(&x[1]);
	struct sv2shm_pool_stats st;
	sv2shm_pool_stats(pool, &st);
	FZ_CHECK(st.from_pool + st.from_system == x[0].frames, "pool served %llu + %llu slices for %llu frames",
		 (unsigned long long)st.from_pool, (unsigned long long)st.from_system,
		 (unsigned long long)x[0].frames);
	FZ_CHECK(st.mask == 0, "mask %#llx after releasing every frame", (unsigned long long)st.mask);
	r = sv2shm_pool_destroy(pool);
	FZ_CHECK(r == 0, "pool_destroy: %d", r);
	sv2shm_sysbuf_free(sb);
	free(ref.f);
	return 0;
}
