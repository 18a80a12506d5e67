/* The buffer interface: what every buffer kind shares, and slice release. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "region.h"
#include <sys/mman.h>

uint8_t sv2shm_empty_area[1];

void slice_empty(struct sv2shm_slice *out)
{
	memset(out, 0, sizeof(*out));
	out->_kind = SV2SHM_SLICE_EMPTY;
}

void slice_from_system(struct sv2shm_slice *out, uint8_t *block, size_t start, size_t len)
{
	memset(out, 0, sizeof(*out));
	out->data = block + start;
	out->len = len - start;
	out->_owner = block;
	out->_kind = SV2SHM_SLICE_SYSTEM;
}

/* Geometric growth: at least `need`, at least double, at least 64 bytes, so a
 * slice written in many small get_writable() calls costs O(log n) reallocs. */
int heap_grow(uint8_t **block, size_t *cap, size_t need)
{
	size_t ncap = *cap > SIZE_MAX / 2 ? SIZE_MAX : *cap * 2;
	if (ncap < need)
		ncap = need;
	if (ncap < 64)
		ncap = 64;
	uint8_t *nb = realloc(*block, ncap);
	if (!nb)
		return -ENOMEM;
	*block = nb;
	*cap = ncap;
	return 0;
}

SV2SHM_API int sv2shm_buffer_get_data_owned(struct sv2shm_buffer *b, struct sv2shm_slice *out)
{
	if (!b || !out)
		return -EINVAL;
	return b->_ops->get_data_owned(b, out);
}

SV2SHM_API uint8_t *sv2shm_buffer_get_data_by_ref(struct sv2shm_buffer *b, size_t len, size_t *out_len)
{
	if (!b)
		return NULL;
	size_t avail = b->_len - b->_start;
	if (out_len)
		*out_len = len < avail ? len : avail;
	return b->_base + b->_start;
}

SV2SHM_API int sv2shm_buffer_danger_set_start(struct sv2shm_buffer *b, size_t index)
{
	if (!b)
		return -EINVAL;
	if (index > b->_len)
		return b->_error = -EINVAL;
	b->_start = index;
	return 0;
}

SV2SHM_API bool sv2shm_buffer_is_droppable(const struct sv2shm_buffer *b)
{
	return b && b->_ops->is_droppable(b);
}

SV2SHM_API ssize_t sv2shm_buffer_write(struct sv2shm_buffer *b, const void *src, size_t n)
{
	if (!b)
		return -EINVAL;
	if (n == 0)
		return 0;
	if (!src)
		return b->_error = -EINVAL;
	if (n > (size_t)SSIZE_MAX)
		return b->_error = -EOVERFLOW;
	void *dst = sv2shm_buffer_get_writable(b, n);
	if (!dst)
		return b->_error;
	memcpy(dst, src, n);
	return (ssize_t)n;
}

SV2SHM_API int sv2shm_buffer_write_all(struct sv2shm_buffer *b, const void *src, size_t n)
{
	ssize_t r = sv2shm_buffer_write(b, src, n);
	return r < 0 ? (int)r : 0;
}

SV2SHM_API int sv2shm_buffer_last_error(const struct sv2shm_buffer *b)
{
	return b ? b->_error : -EINVAL;
}

SV2SHM_API int sv2shm_slice_kind(const struct sv2shm_slice *s)
{
	return s ? s->_kind : SV2SHM_SLICE_NONE;
}

SV2SHM_API int sv2shm_slice_release(struct sv2shm_slice *s)
{
	if (!s)
		return -EINVAL;
	switch (s->_kind) {
	case SV2SHM_SLICE_NONE:
		return -EALREADY;
	case SV2SHM_SLICE_EMPTY:
		break;
	case SV2SHM_SLICE_SYSTEM:
		free(s->_owner);
		break;
	case SV2SHM_SLICE_POOL: {
		if (!s->_owner)
			return -EINVAL;
		int r = pool_release_slice(s->_owner, s->_slot, s->_gen);
		if (r < 0)
			return r;
		break;
	}
	case SV2SHM_SLICE_SHARED: {
		if (!s->_owner)
			return -EINVAL;
		int r = region_release_slice(s->_owner, s->_slot, s->_gen);
		if (r < 0)
			return r;
		break;
	}
	case SV2SHM_SLICE_MAPPED:
		if (!s->_owner || s->data != s->_owner)
			return -EINVAL;
		munmap(s->_owner, s->len);
		break;
	default:
		return -EINVAL;
	}
	memset(s, 0, sizeof(*s));
	return 0;
}

SV2SHM_API const char *sv2shm_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -EALREADY:
		return "slice already released";
	case -ESTALE:
		return "stale slice: its slot was reused";
	case -EBUSY:
		return "slices still live";
	case -EAGAIN:
		return "pool full (or no data yet)";
	case -EMSGSIZE:
		return "message too long (for the pool, the frame limit, or max_overflow)";
	case -EPROTO:
		return "protocol error (a stream ended inside a frame, or a broken channel)";
	case -ENOBUFS:
		return "frame larger than the pool can ever hold";
	case -ESRCH:
		return "no such consumer: it was removed";
	case -EMFILE:
		return "too many: a pool has at most 31 consumers (or out of file descriptors)";
	case -EBADMSG:
		return "bad descriptor or message (dropped)";
	case -ENODATA:
		return "end of stream";
	default:
		return strerror(err < 0 ? -err : err);
	}
}
