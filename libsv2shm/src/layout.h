/*
 * The pool's control block: the one layout both the in-process pool (on the
 * heap) and the shared pool (in a control memfd every process maps) use.
 *
 * Who writes what:
 *   - in-process pool (heap): the allocator (one thread) writes everything
 *     except holder bits; a holder (any thread) clears its own holder bit
 *     with a CAS on the slot's state word (slots.c) and, when the producer
 *     waits, bumps release_seq;
 *   - shared pool (memfd): only the producer's process writes it. Consumers
 *     map it read-only (the memfd is sealed F_SEAL_FUTURE_WRITE) and record
 *     their releases in their own ring instead (wire.h, slots.c), so no
 *     consumer can change what another one, or the producer, sees here.
 *
 * The state words and the mask of a shared pool are views the producer
 * writes as absolute values from its private truth; the allocator never
 * reads them back as truth. Consumers validate what they read.
 */
#ifndef SV2SHM_LAYOUT_H
#define SV2SHM_LAYOUT_H

#include <assert.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

#define SV2SHM_CACHE_LINE 64

#define SV2SHM_CTL_MAGIC UINT32_C(0x32767368) /* "hsv2" read little-endian: 'h','s','v','2' */
#define SV2SHM_CTL_VERSION 2u

/* A slot state word: generation in the high 32 bits, holder bits in the low
 * 32. Bit 0 is the producer's own hold (the slice returned by
 * get_data_owned); bits 1..31 are consumers. */
#define SV2SHM_STATE_GEN(s) ((uint32_t)((s) >> 32))
#define SV2SHM_STATE_HOLDERS(s) ((uint32_t)(s))
#define SV2SHM_STATE(gen, holders) (((uint64_t)(gen) << 32) | (uint32_t)(holders))
#define SV2SHM_MAX_HOLDERS 32

/* The pool's counters: written by the producer only (relaxed stores), read
 * by tools (the broker's STATUS). Two cache lines after the slot records. */
struct sv2shm_ctl_counters {
	_Atomic uint64_t published;     /* slices published (or handed out, in-process) */
	_Atomic uint64_t bytes;         /* their bytes */
	_Atomic uint64_t releases;      /* slots freed (seen free by the allocator) */
	_Atomic uint64_t reclaimed;     /* holds reclaimed from removed consumers */
	_Atomic uint64_t fallbacks;     /* slices from system memory (alloc mode) */
	_Atomic uint64_t waits;         /* sleeps for a free slot */
	_Atomic uint64_t wait_ns;       /* time spent in them */
	_Atomic uint64_t mode_switches;
	_Atomic uint64_t hw_slots;      /* most slots in use at once */
	_Atomic uint64_t hw_bytes;      /* most region bytes in use at once */
	_Atomic uint64_t live;          /* slots in use now (referenced by a run) */
	_Atomic uint64_t bytes_in_use;  /* region bytes they span */
	_Atomic uint32_t mode;          /* SV2SHM_MODE_* */
	_Atomic uint32_t policy;        /* SV2SHM_POOL_* */
	uint8_t reserved[128 - 12 * 8 - 8];
};

/* One slot record: 32 bytes, two per cache line. */
struct sv2shm_ctl_slot {
	_Atomic uint64_t state; /* generation | holders, see above */
	uint64_t offset;        /* byte offset of the live slice in the data area */
	uint64_t length;        /* its length in bytes */
	uint64_t claim;         /* claim number (the n-th slice of the pool), for the slot map */
};

struct sv2shm_ctl {
	/* line 0: identity, written once before anyone else sees the block */
	uint32_t magic;        /* SV2SHM_CTL_MAGIC */
	uint32_t version;      /* SV2SHM_CTL_VERSION */
	uint64_t capacity;     /* data area size in bytes, <= 2^32 */
	uint32_t nslots;       /* 1 .. 64 */
	uint32_t ctl_size;     /* sizeof(struct sv2shm_ctl) */
	uint64_t region_id;    /* random id a descriptor must name */
	uint8_t reserved0[SV2SHM_CACHE_LINE - 32];

	/* line 1: the slot mask: a view of the slots in use (slot map, tools) */
	alignas(SV2SHM_CACHE_LINE) _Atomic uint64_t mask;
	uint8_t reserved1[SV2SHM_CACHE_LINE - 8];

	/* line 2: release sequence (futex word) and the producer's wait epoch
	 * (odd: waiting). Written as absolute values by the producer; holders of
	 * an in-process pool bump release_seq. */
	alignas(SV2SHM_CACHE_LINE) _Atomic uint32_t release_seq;
	_Atomic uint32_t producer_waiting;
	uint8_t reserved2[SV2SHM_CACHE_LINE - 8];

	/* lines 3..34: one record per slot */
	alignas(SV2SHM_CACHE_LINE) struct sv2shm_ctl_slot slots[64];

	/* lines 35..36: counters */
	alignas(SV2SHM_CACHE_LINE) struct sv2shm_ctl_counters counters;
};

static_assert(sizeof(struct sv2shm_ctl_slot) == 32, "slot record is 32 bytes");
static_assert(offsetof(struct sv2shm_ctl, mask) == 64, "mask on its own cache line");
static_assert(offsetof(struct sv2shm_ctl, release_seq) == 128, "release word on its own line");
static_assert(offsetof(struct sv2shm_ctl, slots) == 192, "slot records after the header lines");
static_assert(sizeof(struct sv2shm_ctl_counters) == 128, "counters: two cache lines");
static_assert(offsetof(struct sv2shm_ctl, counters) == 192 + 64 * 32, "counters after the slot records");
static_assert(sizeof(struct sv2shm_ctl) == 192 + 64 * 32 + 128, "control block size");
static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4, "lock-free sizes");

#endif /* SV2SHM_LAYOUT_H */
