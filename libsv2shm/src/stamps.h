/*
 * Round-trip stamps (meson -Dstamps=true, x86-64 only): the time stamp
 * counter at four instants of a spinning round trip, for `sv2shm-bench
 * stamps`, which splits the round trip into the producer's path, the
 * consumer's path and the two hand-offs between them. Compiled out (no
 * code, no data) in every other build.
 *
 * Each stamp is written by one process about its own step, into its own
 * copy of sv2shm_stamps_ (the array is process-private); the bench reads
 * it right after the call that wrote it.
 */
#ifndef SV2SHM_STAMPS_H
#define SV2SHM_STAMPS_H

#include <stdint.h>

enum {
	STAMP_P_SEES_RELEASE, /* the producer latched a consumer's release (slots.h: slot_latch) */
	STAMP_P_ENTRY_OUT,    /* the producer stored a ring entry's sequence word */
	STAMP_C_SEES_ENTRY,   /* the consumer's spin saw its next entry filled */
	STAMP_C_RELEASED,     /* the consumer stored a release record */
	STAMP_N
};

#if SV2SHM_STAMPS
#include <x86intrin.h>
extern uint64_t sv2shm_stamps_[STAMP_N];
/* Relaxed atomic: releases may stamp from any thread. */
#define STAMP(i) __atomic_store_n(&sv2shm_stamps_[(i)], __rdtsc(), __ATOMIC_RELAXED)
#else
#define STAMP(i) ((void)0)
#endif

#endif /* SV2SHM_STAMPS_H */
