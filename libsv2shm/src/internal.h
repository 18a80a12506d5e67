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

/* Fill *out as a slice of system memory `block`, bytes [start, len). */
void slice_from_system(struct sv2shm_slice *out, uint8_t *block, size_t start, size_t len);
/* Fill *out as an EMPTY slice. */
void slice_empty(struct sv2shm_slice *out);

/* pool.c: release of a POOL slice; the dispatcher in buffer.c calls it. */
int pool_release_slice(struct sv2shm_pool *p, unsigned slot, uint32_t gen);

/* Grow a heap block to hold at least `need` bytes (geometric), keeping `keep`. */
int heap_grow(uint8_t **block, size_t *cap, size_t need);

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
