/* The system-memory buffer (the seed's BufferFromSystemMemory): a growable
 * heap block; every get_data_owned() gives the block away. */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

struct sv2shm_sysbuf {
	struct sv2shm_buffer buf; /* first: the interface */
	uint8_t *block;
	size_t cap;
};

static void *sysbuf_get_writable_slow(struct sv2shm_buffer *b, size_t len)
{
	struct sv2shm_sysbuf *sb = container_of(b, struct sv2shm_sysbuf, buf);
	size_t need;
	if (__builtin_add_overflow(b->_len, len, &need)) {
		b->_error = -EOVERFLOW;
		return NULL;
	}
	int r = heap_grow(&sb->block, &sb->cap, need);
	if (r < 0) {
		b->_error = r;
		return NULL;
	}
	b->_base = sb->block;
	b->_room = sb->cap;
	uint8_t *p = b->_base + b->_len;
	b->_len = need;
	return p;
}

static int sysbuf_get_data_owned(struct sv2shm_buffer *b, struct sv2shm_slice *out)
{
	struct sv2shm_sysbuf *sb = container_of(b, struct sv2shm_sysbuf, buf);
	if (b->_len == b->_start) {
		slice_empty(out);
		b->_len = b->_start = 0;
		return 0;
	}
	slice_from_system(out, sb->block, b->_start, b->_len);
	sb->block = NULL;
	sb->cap = 0;
	buffer_clear(b);
	return 0;
}

static bool sysbuf_is_droppable(const struct sv2shm_buffer *b)
{
	(void)b;
	return true;
}

static const struct sv2shm_buffer_ops sysbuf_ops = {
	.get_writable_slow = sysbuf_get_writable_slow,
	.get_data_owned = sysbuf_get_data_owned,
	.is_droppable = sysbuf_is_droppable,
};

SV2SHM_API int sv2shm_sysbuf_new(size_t hint, struct sv2shm_sysbuf **out)
{
	if (!out)
		return -EINVAL;
	struct sv2shm_sysbuf *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return -ENOMEM;
	sb->buf._ops = &sysbuf_ops;
	buffer_clear(&sb->buf);
	if (hint) {
		if (heap_grow(&sb->block, &sb->cap, hint) < 0) {
			free(sb);
			return -ENOMEM;
		}
		sb->buf._base = sb->block;
		sb->buf._room = sb->cap;
	}
	*out = sb;
	return 0;
}

SV2SHM_API void sv2shm_sysbuf_free(struct sv2shm_sysbuf *sb)
{
	if (!sb)
		return;
	free(sb->block);
	free(sb);
}

SV2SHM_API struct sv2shm_buffer *sv2shm_sysbuf_buffer(struct sv2shm_sysbuf *sb)
{
	return sb ? &sb->buf : NULL;
}
