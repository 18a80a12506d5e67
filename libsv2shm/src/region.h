/* Shared regions: the memfds behind a shared pool, from both sides. */
#ifndef SV2SHM_REGION_H
#define SV2SHM_REGION_H

#include "internal.h"
#include "sv2shm/ipc.h"

/* Seals every region memfd carries before another process sees it. */
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
/* Both memfds are write-sealed: only the producer's own mapping, made before
 * the seal, can write them (consumers write only their own ring). */
#define REGION_CTL_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL | F_SEAL_FUTURE_WRITE)
#define REGION_DATA_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL | F_SEAL_FUTURE_WRITE)

/* The producer's side: both memfds, mapped read-write. */
struct region_mem {
	int ctl_fd;
	int data_fd;
	struct sv2shm_ctl *ctl;
	uint8_t *data;
	uint64_t cap;
};

int region_create(uint64_t cap, unsigned nslots, struct region_mem *out);
void region_mem_free(struct region_mem *m);

/* A sealed memfd holding a copy of `len` bytes (alloc-mode slices). */
int region_overflow_memfd(const uint8_t *bytes, size_t len);

/* Create a sealed memfd of `size` zero bytes, mapped read-write at *map. */
int region_memfd(const char *name, size_t size, unsigned seals, void **map);

/* The consumer's side. */
struct sv2shm_region {
	int ctl_fd;
	int data_fd;
	const struct sv2shm_ctl *ctl; /* read-only: the producer's view */
	const uint8_t *data;    /* read-only */
	uint64_t cap;           /* private copies, checked at attach */
	unsigned nslots;
	uint64_t id;
	/* Per slot: (generation << 1) | 1 while this process holds an opened
	 * slice of it, 0 otherwise. The local truth for double releases and
	 * duplicate descriptors, whatever the shared state says. */
	_Atomic uint64_t held[64]; /* a slot held, or a release of it still running: busy */
	/* Per slot, with a ring: the last generation this process recorded as
	 * released in it (region_record_release()). The ring's own copy is
	 * what the producer reads, and its spin keeps pulling that line over:
	 * the open checks this one, which never leaves our cache. */
	_Atomic uint32_t released[64];
	/* A consumer's ring (NULL for a region attached by hand): where its
	 * releases are recorded and the producer's wait epoch is read. */
	struct sv2shm_ring *ring;
	/* Called after a release while the producer waits. */
	void (*wake_producer)(struct sv2shm_region *r);
	void *wake_user;
	_Atomic uint32_t signaled_epoch; /* the producer wait epoch already signalled */
};

/* sv2shm_region_open() of a descriptor already decoded (holder 1..31).
 * from_ring: it came from our own ring (the producer's word): the slot
 * record in the control block is not read, see region.c. */
int region_open_desc(struct sv2shm_region *r, const struct sv2shm_desc *d, unsigned holder, bool from_ring,
		     struct sv2shm_slice *out);
/* The ring's common case, a descriptor every check passes, opened straight
 * from the entry's words (ring_get_words()) by the thread that pops the ring:
 * 0, or 1 when it is not that case — the caller then takes the general way
 * (sv2shm_desc_decode(), region_open_desc()), which decides it and its error
 * from scratch. */
int region_open_ring(struct sv2shm_region *r, const uint64_t w[4], unsigned holder, struct sv2shm_slice *out);
/* Is a SHARED slice of r opened and not released (or its release still
 * running)? Then the region must not be detached. */
bool region_busy(const struct sv2shm_region *r);
/* Release a SHARED slice (sv2shm_slice_release dispatches here): 0, or
 * -EINVAL / -EALREADY / -ESTALE from this process's own records. */
int region_release_slice(struct sv2shm_region *r, unsigned slot, uint32_t gen);

/* A ring entry stands for one hold the producer gave us: when its
 * descriptor is refused, give that hold back (if it names one we have and
 * have not opened), so that a bad descriptor leaks no slot. */
void region_drop_hold(struct sv2shm_region *r, const uint8_t raw[SV2SHM_DESC_SIZE]);


#endif /* SV2SHM_REGION_H */
