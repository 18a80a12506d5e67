/*
 * The Sv2 frame decoder, on the buffer interface, the way the seed's codec
 * uses a Buffer: 6 header bytes (extension_type u16 LE, msg_type u8,
 * msg_length u24 LE), then msg_length payload bytes read straight into the
 * buffer's writable area, then the whole frame out with get_data_owned().
 *
 * The header is staged in the decoder until all 6 bytes are in, so a stream
 * that ends between frames leaves nothing half-written in the buffer.
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
};

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
	return d && (d->state == ST_PAYLOAD || (d->state == ST_HEADER && d->hdr_filled > 0));
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
	if (!w) {
		/* The header is kept and in_frame() stays true. -EMSGSIZE from the
		 * buffer (a frame larger than the whole pool) is reported as
		 * -ENOBUFS, so that it cannot be taken for the decoder's own
		 * permanent -EMSGSIZE (a malformed stream). */
		int e = sv2shm_buffer_last_error(d->buf);
		return e == -EMSGSIZE ? -ENOBUFS : e;
	}
	memcpy(w, d->hdr, SV2SHM_FRAME_HEADER_SIZE);
	d->msg_length = len;
	d->payload = w + SV2SHM_FRAME_HEADER_SIZE;
	d->payload_filled = 0;
	d->state = ST_PAYLOAD;
	return len == 0 ? 1 : 0;
}

SV2SHM_API int sv2shm_frame_decoder_feed(struct sv2shm_frame_decoder *d, const void *data, size_t len,
					 size_t *consumed, struct sv2shm_frame *out)
{
	if (!d || !consumed || !out || (!data && len))
		return -EINVAL;
	*consumed = 0;
	if (d->state == ST_ERROR)
		return d->error;
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

SV2SHM_API int sv2shm_frame_decoder_read_fd(struct sv2shm_frame_decoder *d, int fd, struct sv2shm_frame *out)
{
	if (!d || !out || fd < 0)
		return -EINVAL;
	if (d->state == ST_ERROR)
		return d->error;
	for (;;) {
		uint8_t *dst;
		size_t want;
		if (d->state == ST_HEADER && d->hdr_filled == SV2SHM_FRAME_HEADER_SIZE) {
			/* A header whose room was refused earlier (-EAGAIN): retry. */
			int r = header_done(d);
			if (r < 0)
				return r;
			if (r == 1)
				return finish(d, out);
		}
		if (d->state == ST_HEADER) {
			dst = d->hdr + d->hdr_filled;
			want = SV2SHM_FRAME_HEADER_SIZE - d->hdr_filled;
		} else {
			dst = d->payload + d->payload_filled;
			want = d->msg_length - d->payload_filled;
		}
		ssize_t n = read(fd, dst, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		if (n == 0)
			return sv2shm_frame_decoder_in_frame(d) ? fail(d, -EPROTO) : -ENODATA;
		if (d->state == ST_HEADER) {
			d->hdr_filled += (size_t)n;
			continue; /* complete headers are handled at the top */
		}
		d->payload_filled += (size_t)n;
		if (d->payload_filled == d->msg_length)
			return finish(d, out);
	}
}
