/*
 * The Sv2 frame decoder, on the buffer interface, the way the seed's codec
 * uses a Buffer: 6 header bytes (extension_type u16 LE, msg_type u8,
 * msg_length u24 LE), then msg_length payload bytes read straight into the
 * buffer's writable area, then the whole frame out with get_data_owned().
 *
 * feed() stages the header in the decoder until all 6 bytes are in, so a
 * stream that ends between frames leaves nothing half-written in the buffer.
 *
 * read_fd() reads in bulk instead: as much as the fd has (up to the room the
 * buffer gives, at most READ_MAX) straight into the buffer, then hands out
 * every complete frame in it with split_owned() — no copy, one read() for
 * many small frames — and leaves a partial frame at the end in place for the
 * next read. While it has bytes pending ("bulk"), the buffer's written bytes
 * are the raw stream; feed() turns them back into its own state first.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

enum { ST_HEADER, ST_PAYLOAD, ST_ERROR };

struct sv2shm_frame_decoder {
	struct sv2shm_buffer *buf;
	uint32_t max_payload;
	int state;
	int error;              /* ST_ERROR: what to keep returning */
	uint8_t hdr[SV2SHM_FRAME_HEADER_SIZE];
	size_t hdr_filled;
	uint8_t *payload;       /* ST_PAYLOAD: the writable area */
	size_t payload_filled;
	uint32_t msg_length;
	bool bulk;              /* the buffer's written bytes are unparsed stream bytes */
	struct sv2shm_frame_decoder_stats stats;
};

/* The most read_fd() asks one read() for. */
#define READ_MAX ((size_t)256 * 1024)
/* The room read_fd() asks a system-memory buffer for (a pool's room is the
 * rest of its run already). Every frame split off keeps its block alive, so
 * this is also what one small frame held for long can keep allocated. */
#define SYSBUF_READ_ROOM ((size_t)16 * 1024)

SV2SHM_API int sv2shm_frame_decoder_new(struct sv2shm_buffer *buf, uint32_t max_payload,
					struct sv2shm_frame_decoder **out)
{
	if (!buf || !out || max_payload > SV2SHM_FRAME_MAX_PAYLOAD)
		return -EINVAL;
	struct sv2shm_frame_decoder *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->buf = buf;
	d->max_payload = max_payload ? max_payload : SV2SHM_FRAME_MAX_PAYLOAD;
	d->state = ST_HEADER;
	*out = d;
	return 0;
}

SV2SHM_API void sv2shm_frame_decoder_free(struct sv2shm_frame_decoder *d)
{
	if (!d)
		return;
	/* Drop a partial frame: what was written to the buffer is not a slice. */
	d->buf->_len = 0;
	d->buf->_start = 0;
	free(d);
}

SV2SHM_API bool sv2shm_frame_decoder_in_frame(const struct sv2shm_frame_decoder *d)
{
	return d && (d->state == ST_PAYLOAD || (d->state == ST_HEADER && d->hdr_filled > 0) ||
		     (d->state == ST_HEADER && d->bulk && d->buf->_len > 0));
}

SV2SHM_API int sv2shm_frame_decoder_stats(const struct sv2shm_frame_decoder *d,
					  struct sv2shm_frame_decoder_stats *out)
{
	if (!d || !out)
		return -EINVAL;
	*out = d->stats;
	return 0;
}

SV2SHM_API int sv2shm_frame_header_encode(uint8_t hdr[SV2SHM_FRAME_HEADER_SIZE], uint16_t extension_type,
					  uint8_t msg_type, uint32_t msg_length)
{
	if (!hdr)
		return -EINVAL;
	if (msg_length > SV2SHM_FRAME_MAX_PAYLOAD)
		return -EMSGSIZE;
	hdr[0] = (uint8_t)extension_type;
	hdr[1] = (uint8_t)(extension_type >> 8);
	hdr[2] = msg_type;
	hdr[3] = (uint8_t)msg_length;
	hdr[4] = (uint8_t)(msg_length >> 8);
	hdr[5] = (uint8_t)(msg_length >> 16);
	return 0;
}

/* The buffer refused room: its error, with -EMSGSIZE (a frame larger than
 * the whole pool) reported as -ENOBUFS, so that it cannot be taken for the
 * decoder's own permanent -EMSGSIZE (a malformed stream). Retryable. */
static int room_error(const struct sv2shm_frame_decoder *d)
{
	int e = sv2shm_buffer_last_error(d->buf);
	return e == -EMSGSIZE ? -ENOBUFS : e;
}

static int fail(struct sv2shm_frame_decoder *d, int err)
{
	d->state = ST_ERROR;
	d->error = err;
	return err;
}

/* Take the finished frame out of the buffer. */
static int finish(struct sv2shm_frame_decoder *d, struct sv2shm_frame *out)
{
	uint16_t ext = (uint16_t)(d->hdr[0] | (d->hdr[1] << 8));
	int r = sv2shm_buffer_get_data_owned(d->buf, &out->slice);
	if (r < 0)
		return r;
	out->extension_type = ext;
	out->channel_msg = (ext & SV2SHM_FRAME_CHANNEL_BIT) != 0;
	out->msg_type = d->hdr[2];
	out->msg_length = d->msg_length;
	d->stats.frames++;
	d->state = ST_HEADER;
	d->hdr_filled = 0;
	d->payload = NULL;
	d->payload_filled = 0;
	return 1;
}

/* The 6 header bytes are in: check them, put them in the buffer, and make
 * room for the payload. Returns 1 when the frame is complete (empty
 * payload), 0 when the payload is awaited, or a negative errno. */
static int header_done(struct sv2shm_frame_decoder *d)
{
	uint32_t len = (uint32_t)d->hdr[3] | ((uint32_t)d->hdr[4] << 8) | ((uint32_t)d->hdr[5] << 16);
	if (len > d->max_payload)
		return fail(d, -EMSGSIZE);
	/* Header and payload in one call, so that a pool places the frame once. */
	uint8_t *w = sv2shm_buffer_get_writable(d->buf, SV2SHM_FRAME_HEADER_SIZE + (size_t)len);
	if (!w)
		return room_error(d); /* the header is kept and in_frame() stays true */
	memcpy(w, d->hdr, SV2SHM_FRAME_HEADER_SIZE);
	d->msg_length = len;
	d->payload = w + SV2SHM_FRAME_HEADER_SIZE;
	d->payload_filled = 0;
	d->state = ST_PAYLOAD;
	return len == 0 ? 1 : 0;
}

static int leave_bulk(struct sv2shm_frame_decoder *d, struct sv2shm_frame *out);

SV2SHM_API int sv2shm_frame_decoder_feed(struct sv2shm_frame_decoder *d, const void *data, size_t len,
					 size_t *consumed, struct sv2shm_frame *out)
{
	if (!d || !consumed || !out || (!data && len))
		return -EINVAL;
	*consumed = 0;
	if (d->state == ST_ERROR)
		return d->error;
	if (d->bulk) {
		int r = leave_bulk(d, out);
		if (r != 0)
			return r; /* a frame read_fd() had read already, or an error */
	}
	/* A complete frame whose take-out failed earlier (a pool whose slice
	 * being written has no slot after a split: -EAGAIN, -ETIMEDOUT): retry. */
	if (d->state == ST_PAYLOAD && d->payload_filled == d->msg_length)
		return finish(d, out);
	const uint8_t *src = data;
	size_t used = 0;
	if (len == 0 && !(d->state == ST_HEADER && d->hdr_filled == SV2SHM_FRAME_HEADER_SIZE))
		return 0; /* nothing to consume (and src may be NULL) */
	for (;;) {
		if (d->state == ST_HEADER) {
			size_t take = SV2SHM_FRAME_HEADER_SIZE - d->hdr_filled;
			if (take > len - used)
				take = len - used;
			if (take)
				memcpy(d->hdr + d->hdr_filled, src + used, take);
			d->hdr_filled += take;
			used += take;
			*consumed = used;
			if (d->hdr_filled < SV2SHM_FRAME_HEADER_SIZE)
				return 0;
			int r = header_done(d);
			if (r < 0)
				return r;
			if (r == 1)
				return finish(d, out);
		}
		size_t take = d->msg_length - d->payload_filled;
		if (take > len - used)
			take = len - used;
		if (take)
			memcpy(d->payload + d->payload_filled, src + used, take);
		d->payload_filled += take;
		used += take;
		*consumed = used;
		if (d->payload_filled < d->msg_length)
			return 0;
		return finish(d, out);
	}
}

/* The length of the frame starting at `p` (6 bytes there), or fail. */
static int frame_total(struct sv2shm_frame_decoder *d, const uint8_t *p, size_t *total)
{
	uint32_t len = (uint32_t)p[3] | ((uint32_t)p[4] << 8) | ((uint32_t)p[5] << 16);
	if (len > d->max_payload)
		return fail(d, -EMSGSIZE);
	*total = SV2SHM_FRAME_HEADER_SIZE + (size_t)len;
	return 0;
}

/* Bulk: hand out the first frame of the pending bytes if it is complete
 * (1), else say how many bytes it needs in all (0), or a negative errno
 * (malformed: permanent; no slot for it: retryable, nothing changes). */
static int bulk_next(struct sv2shm_frame_decoder *d, struct sv2shm_frame *out, size_t *need)
{
	struct sv2shm_buffer *b = d->buf;
	size_t have = b->_len;
	*need = SV2SHM_FRAME_HEADER_SIZE;
	if (have < SV2SHM_FRAME_HEADER_SIZE)
		return 0;
	int r = frame_total(d, b->_base, need);
	if (r < 0)
		return r;
	if (have < *need)
		return 0;
	const uint8_t *h = b->_base;
	uint16_t ext = (uint16_t)(h[0] | (h[1] << 8));
	uint8_t type = h[2];
	uint32_t len = (uint32_t)(*need - SV2SHM_FRAME_HEADER_SIZE);
	r = sv2shm_buffer_split_owned(b, *need, &out->slice);
	if (r < 0)
		return r;
	out->extension_type = ext;
	out->channel_msg = (ext & SV2SHM_FRAME_CHANNEL_BIT) != 0;
	out->msg_type = type;
	out->msg_length = len;
	d->stats.frames++;
	if (b->_len == 0)
		d->bulk = false;
	return 1;
}

/* Into bulk mode: what feed() staged goes to the buffer as stream bytes. */
static int enter_bulk(struct sv2shm_frame_decoder *d)
{
	struct sv2shm_buffer *b = d->buf;
	if (d->bulk)
		return 0;
	if (d->state == ST_PAYLOAD) {
		/* The header and payload_filled bytes are in the buffer already. */
		b->_len = SV2SHM_FRAME_HEADER_SIZE + d->payload_filled;
	} else if (d->hdr_filled) {
		uint8_t *w = sv2shm_buffer_get_writable(b, d->hdr_filled);
		if (!w)
			return room_error(d);
		memcpy(w, d->hdr, d->hdr_filled);
	}
	d->state = ST_HEADER;
	d->hdr_filled = 0;
	d->payload = NULL;
	d->payload_filled = 0;
	d->bulk = true;
	return 0;
}

/* Out of bulk mode, for feed(): a complete pending frame is handed out (1);
 * otherwise the pending bytes become feed()'s staged header or its partial
 * payload (0), or a negative errno (retryable: nothing changes). */
static int leave_bulk(struct sv2shm_frame_decoder *d, struct sv2shm_frame *out)
{
	struct sv2shm_buffer *b = d->buf;
	size_t need;
	int r = bulk_next(d, out, &need);
	if (r != 0 || !d->bulk)
		return r;
	size_t have = b->_len;
	if (have < SV2SHM_FRAME_HEADER_SIZE) {
		memcpy(d->hdr, b->_base, have);
		d->hdr_filled = have;
		b->_len = 0;
		d->bulk = false;
		return 0;
	}
	/* Room for the whole frame: the pending bytes may move. */
	if (!sv2shm_buffer_get_writable(b, need - have))
		return room_error(d);
	memcpy(d->hdr, b->_base, SV2SHM_FRAME_HEADER_SIZE);
	d->hdr_filled = SV2SHM_FRAME_HEADER_SIZE;
	d->msg_length = (uint32_t)(need - SV2SHM_FRAME_HEADER_SIZE);
	d->payload = b->_base + SV2SHM_FRAME_HEADER_SIZE;
	d->payload_filled = have - SV2SHM_FRAME_HEADER_SIZE;
	d->state = ST_PAYLOAD;
	d->bulk = false;
	return 0;
}

/*
 * No room in the buffer for the rest of a header: go on as feed() does, with
 * the header staged in the decoder — the pending bytes (fewer than 6) move
 * there, the rest of the header is read there — so that the end of the
 * stream is still seen and the header is kept for when room comes. Then the
 * header's room is asked for as feed() asks: its errors (retryable, or
 * -ENOBUFS, with the whole header pending) are returned. Returns 2 when the
 * payload is awaited (go on in bulk), 1 (an empty frame is in *out), 0 (no
 * data on a non-blocking fd), or a negative errno.
 */
static int read_staged(struct sv2shm_frame_decoder *d, int fd, struct sv2shm_frame *out)
{
	struct sv2shm_buffer *b = d->buf;
	/* Either bytes pending in the buffer (bulk) or a header feed() staged,
	 * never both; together fewer than 6. */
	memcpy(d->hdr + d->hdr_filled, b->_base, b->_len);
	d->hdr_filled += b->_len;
	b->_len = 0;
	d->bulk = false;
	while (d->hdr_filled < SV2SHM_FRAME_HEADER_SIZE) {
		ssize_t n = read(fd, d->hdr + d->hdr_filled, SV2SHM_FRAME_HEADER_SIZE - d->hdr_filled);
		d->stats.reads++;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		}
		if (n == 0)
			return d->hdr_filled ? fail(d, -EPROTO) : -ENODATA;
		d->stats.bytes += (uint64_t)n;
		d->hdr_filled += (size_t)n;
	}
	int r = header_done(d);
	if (r < 0)
		return r;
	return r == 1 ? finish(d, out) : 2;
}

SV2SHM_API int sv2shm_frame_decoder_read_fd(struct sv2shm_frame_decoder *d, int fd, struct sv2shm_frame *out)
{
	if (!d || !out || fd < 0)
		return -EINVAL;
	if (d->state == ST_ERROR)
		return d->error;
	int r = enter_bulk(d);
	if (r < 0) {
		/* No room for a partial header feed() staged: read the rest of
		 * it where it is. (A whole header without room: its error.) */
		if (d->state != ST_HEADER || d->hdr_filled >= SV2SHM_FRAME_HEADER_SIZE)
			return r;
		r = read_staged(d, fd, out);
		if (r != 2)
			return r;
		r = enter_bulk(d);
		if (r < 0)
			return r;
	}
	struct sv2shm_buffer *b = d->buf;
	for (;;) {
		size_t need;
		r = bulk_next(d, out, &need);
		if (r != 0)
			return r;
		size_t have = b->_len;
		size_t ask = need - have;
		if (ask < SYSBUF_READ_ROOM && buffer_is_sysbuf(b))
			ask = SYSBUF_READ_ROOM;
		if (b->_room - have < ask) {
			/* Room for the rest of this frame at least (a pool may move
			 * the pending bytes, or wait, or fail: retryable). */
			if (!sv2shm_buffer_get_writable(b, ask)) {
				if (have < SV2SHM_FRAME_HEADER_SIZE) {
					r = read_staged(d, fd, out);
					if (r != 2)
						return r;
					r = enter_bulk(d);
					if (r < 0)
						return r;
					continue;
				}
				return room_error(d);
			}
			b->_len = have;
		}
		size_t want = b->_room - have;
		if (want > READ_MAX)
			want = need - have > READ_MAX ? need - have : READ_MAX;
		ssize_t n = read(fd, b->_base + have, want);
		d->stats.reads++;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		if (n == 0)
			return have ? fail(d, -EPROTO) : -ENODATA;
		d->stats.bytes += (uint64_t)n;
		b->_len = have + (size_t)n;
		d->bulk = true;
	}
}
