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

/* --- system-memory blocks ---------------------------------------------------- */

/* The header in front of a block's bytes: keeps them 16-byte aligned. */
#define SYS_HDR 16u

static _Atomic uint32_t *sys_refs(uint8_t *block)
{
	return (_Atomic uint32_t *)(void *)(block - SYS_HDR);
}

/* A fresh block of at least `need` bytes (geometric from `old_cap`),
 * one reference. */
static uint8_t *sys_alloc(size_t old_cap, size_t need, size_t *cap)
{
	size_t ncap = old_cap > SIZE_MAX / 2 ? SIZE_MAX : old_cap * 2;
	if (ncap < need)
		ncap = need;
	if (ncap < 64)
		ncap = 64;
	if (ncap > SIZE_MAX - SYS_HDR)
		return NULL;
	uint8_t *raw = malloc(ncap + SYS_HDR);
	if (!raw)
		return NULL;
	atomic_init((_Atomic uint32_t *)(void *)raw, 1u);
	*cap = ncap;
	return raw + SYS_HDR;
}

static void sys_put(uint8_t *block)
{
	if (block && atomic_fetch_sub_explicit(sys_refs(block), 1u, memory_order_acq_rel) == 1u)
		free(block - SYS_HDR);
}

static void slice_from_block(struct sv2shm_slice *out, uint8_t *block, uint8_t *data, size_t len)
{
	memset(out, 0, sizeof(*out));
	out->data = data;
	out->len = len;
	out->_owner = block;
	out->_kind = SV2SHM_SLICE_SYSTEM;
}

void *sys_area_grow(struct sv2shm_buffer *b, struct sys_area *a, size_t len)
{
	size_t need;
	if (__builtin_add_overflow(b->_len, len, &need)) {
		b->_error = -EOVERFLOW;
		return NULL;
	}
	bool shared = a->block && atomic_load_explicit(sys_refs(a->block), memory_order_acquire) != 1u;
	if (!a->block || shared) {
		/* Slices still use the block: the written bytes move to a new one,
		 * sized for them (twice what is needed now), not from the old
		 * block's size — a piece held for long would otherwise double
		 * every next block. */
		size_t cap;
		uint8_t *nb = sys_alloc(need, need, &cap);
		if (!nb) {
			b->_error = -ENOMEM;
			return NULL;
		}
		if (b->_len)
			memcpy(nb, b->_base, b->_len);
		sys_put(a->block);
		a->block = nb;
		a->cap = cap;
	} else {
		/* Ours alone: bytes left after earlier splits go to the front,
		 * then the block grows in place. */
		if (b->_base != a->block && b->_len)
			memmove(a->block, b->_base, b->_len);
		if (need > a->cap) {
			size_t ncap = a->cap > SIZE_MAX / 2 ? SIZE_MAX : a->cap * 2;
			if (ncap < need)
				ncap = need;
			if (ncap > SIZE_MAX - SYS_HDR) {
				b->_error = -ENOMEM;
				return NULL;
			}
			uint8_t *raw = realloc(a->block - SYS_HDR, ncap + SYS_HDR);
			if (!raw) {
				b->_base = a->block; /* the bytes were moved to the front */
				b->_room = a->cap;
				b->_error = -ENOMEM;
				return NULL;
			}
			a->block = raw + SYS_HDR;
			a->cap = ncap;
		}
	}
	b->_base = a->block;
	b->_room = a->cap;
	uint8_t *w = b->_base + b->_len;
	b->_len = need;
	return w;
}

int sys_area_start(struct sv2shm_buffer *b, struct sys_area *a, const uint8_t *src, size_t n, size_t need)
{
	size_t cap;
	uint8_t *nb = sys_alloc(0, need, &cap);
	if (!nb)
		return -ENOMEM;
	if (n)
		memcpy(nb, src, n);
	sys_put(a->block);
	a->block = nb;
	a->cap = cap;
	b->_base = nb;
	b->_room = cap;
	return 0;
}

void sys_area_take(struct sv2shm_buffer *b, struct sys_area *a, struct sv2shm_slice *out)
{
	slice_from_block(out, a->block, b->_base + b->_start, b->_len - b->_start);
	a->block = NULL;
	a->cap = 0;
	buffer_clear(b);
}

void sys_area_split(struct sv2shm_buffer *b, struct sys_area *a, size_t n, struct sv2shm_slice *out)
{
	atomic_fetch_add_explicit(sys_refs(a->block), 1u, memory_order_relaxed);
	slice_from_block(out, a->block, b->_base + b->_start, n);
	size_t used = b->_start + n;
	b->_base += used;
	b->_room -= used;
	b->_len -= used;
	b->_start = 0;
}

int slice_copy_to_system(struct sv2shm_slice *out, const uint8_t *src, size_t n)
{
	size_t cap;
	uint8_t *nb = sys_alloc(0, n, &cap);
	if (!nb)
		return -ENOMEM;
	memcpy(nb, src, n);
	slice_from_block(out, nb, nb, n);
	return 0;
}

void sys_area_drop(struct sys_area *a)
{
	sys_put(a->block);
	a->block = NULL;
	a->cap = 0;
}

SV2SHM_API int sv2shm_buffer_get_data_owned(struct sv2shm_buffer *b, struct sv2shm_slice *out)
{
	if (!b || !out)
		return -EINVAL;
	return b->_ops->get_data_owned(b, out);
}

SV2SHM_API int sv2shm_buffer_split_owned(struct sv2shm_buffer *b, size_t n, struct sv2shm_slice *out)
{
	if (!b || !out)
		return -EINVAL;
	size_t avail = b->_len - b->_start;
	if (n == 0 || n > avail)
		return b->_error = -EINVAL;
	int r = n == avail ? b->_ops->get_data_owned(b, out) : b->_ops->split_owned(b, n, out);
	if (r < 0)
		b->_error = r;
	return r;
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
		if (!s->_owner)
			return -EINVAL;
		sys_put(s->_owner);
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
