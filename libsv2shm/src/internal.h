/* Private declarations shared by the library's modules. */
#ifndef SV2SHM_INTERNAL_H
#define SV2SHM_INTERNAL_H

#include "sv2shm/sv2shm.h"
#include "layout.h"

#include <time.h>

#define SV2SHM_API SV2SHM_EXPORT

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* A valid address for zero-length writables before any memory is assigned. */
extern uint8_t sv2shm_empty_area[1];

/* Give the buffer an empty slice with no memory behind it. */
static inline void buffer_clear(struct sv2shm_buffer *b)
{
	b->_base = sv2shm_empty_area;
	b->_len = 0;
	b->_room = 0;
	b->_start = 0;
}

/* Fill *out as an EMPTY slice. */
void slice_empty(struct sv2shm_slice *out);

/* pool.c: release of a POOL slice; the dispatcher in buffer.c calls it. */
int pool_release_slice(struct sv2shm_pool *p, unsigned slot, uint32_t gen);

/*
 * System memory behind a buffer (the system-memory buffer, and a pool's
 * alloc mode): one heap block with a reference count in front of its bytes.
 * The buffer holds one reference while it writes into the block; every
 * slice handed out from it holds one more, so split_owned() can give away
 * the first bytes and keep writing after them without a copy. The block is
 * freed with its last reference (the buffer's, or a slice's release).
 * b->_base points into the block; b->_room counts from b->_base.
 */
struct sys_area {
	uint8_t *block; /* first byte after the header, or NULL */
	size_t cap;     /* bytes after the header */
};
/* The slow path of get_writable on an area: room for b->_len + len bytes.
 * Returns the writable pointer for the len new bytes, or NULL with
 * b->_error set (-EOVERFLOW, -ENOMEM). */
void *sys_area_grow(struct sv2shm_buffer *b, struct sys_area *a, size_t len);
/* Start an area holding a copy of `n` bytes of `src` and room for `need`
 * in all; the buffer's cursor is moved to it. Returns 0 or -ENOMEM. */
int sys_area_start(struct sv2shm_buffer *b, struct sys_area *a, const uint8_t *src, size_t n, size_t need);
/* get_data_owned: hand the written bytes out (the area's reference goes to
 * the slice) and clear the buffer. */
void sys_area_take(struct sv2shm_buffer *b, struct sys_area *a, struct sv2shm_slice *out);
/* split_owned: the first n bytes after b->_start out as a slice sharing the
 * block; the rest stays as the buffer's current bytes. */
void sys_area_split(struct sv2shm_buffer *b, struct sys_area *a, size_t n, struct sv2shm_slice *out);
/* A slice of system memory holding a copy of n bytes (its own block). */
int slice_copy_to_system(struct sv2shm_slice *out, const uint8_t *src, size_t n);
/* Drop the area's reference. */
void sys_area_drop(struct sys_area *a);
/* sysbuf.c: is b the system-memory buffer? */
bool buffer_is_sysbuf(const struct sv2shm_buffer *b);

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Tell the CPU we are spinning (frees the sibling hyperthread). */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* trace.c */
void trace_emit(const struct sv2shm_pool *p, sv2shm_trace_fn fn, void *user, int event, int slot, uint64_t a,
		uint64_t b);

#endif /* SV2SHM_INTERNAL_H */
