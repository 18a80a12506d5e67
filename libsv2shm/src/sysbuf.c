/* The system-memory buffer (the seed's BufferFromSystemMemory): a growable
 * heap block; get_data_owned() gives the block away, split_owned() shares it
 * with the slice it hands out (reference-counted, buffer.c). */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

struct sv2shm_sysbuf {
	struct sv2shm_buffer buf; /* first: the interface */
	struct sys_area area;
};

static void *sysbuf_get_writable_slow(struct sv2shm_buffer *b, size_t len)
{
	struct sv2shm_sysbuf *sb = container_of(b, struct sv2shm_sysbuf, buf);
	return sys_area_grow(b, &sb->area, len);
}

static int sysbuf_get_data_owned(struct sv2shm_buffer *b, struct sv2shm_slice *out)
{
	struct sv2shm_sysbuf *sb = container_of(b, struct sv2shm_sysbuf, buf);
	if (b->_len == b->_start) {
		slice_empty(out);
		b->_len = b->_start = 0;
		return 0;
	}
	sys_area_take(b, &sb->area, out);
	return 0;
}

static int sysbuf_split_owned(struct sv2shm_buffer *b, size_t n, struct sv2shm_slice *out)
{
	struct sv2shm_sysbuf *sb = container_of(b, struct sv2shm_sysbuf, buf);
	sys_area_split(b, &sb->area, n, out);
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
	.split_owned = sysbuf_split_owned,
};

bool buffer_is_sysbuf(const struct sv2shm_buffer *b)
{
	return b->_ops == &sysbuf_ops;
}

SV2SHM_API int sv2shm_sysbuf_new(size_t hint, struct sv2shm_sysbuf **out)
{
	if (!out)
		return -EINVAL;
	struct sv2shm_sysbuf *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return -ENOMEM;
	sb->buf._ops = &sysbuf_ops;
	buffer_clear(&sb->buf);
	if (hint && sys_area_start(&sb->buf, &sb->area, NULL, 0, hint) < 0) {
		free(sb);
		return -ENOMEM;
	}
	*out = sb;
	return 0;
}

SV2SHM_API void sv2shm_sysbuf_free(struct sv2shm_sysbuf *sb)
{
	if (!sb)
		return;
	sys_area_drop(&sb->area); /* slices split off keep the block alive */
	free(sb);
}

SV2SHM_API struct sv2shm_buffer *sv2shm_sysbuf_buffer(struct sv2shm_sysbuf *sb)
{
	return sb ? &sb->buf : NULL;
}
