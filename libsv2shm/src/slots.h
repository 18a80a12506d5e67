/*
 * The protocol on slot state, in one place: who may free a slot, how a
 * release is recorded, and when a waiting producer is woken. The allocator
 * (pool.c), the producer (producer.c) and the consumer's region code
 * (region.c) call these and nothing else touches the words involved.
 *
 * In-process pool (one process, threads): a slot's state word holds its
 * generation and holder bits; a holder clears its bit with a CAS that checks
 * the generation. The slot is free when the state is (generation, 0).
 *
 * Shared pool (processes): nothing a consumer can write is shared with
 * another consumer. The producer keeps, per slot, the generation and the set
 * of consumers it published that generation to (pub); each consumer records
 * in its own ring the last generation of each slot it let go of (released).
 * Slot s at generation g is free when the producer does not hold it and
 * every consumer in pub[s] has released[s] == g. Removing a consumer drops
 * it from every pub[s]: its holds vanish at once, with no write to shared
 * memory that could race with a late release. A release is one store into
 * memory only that consumer and the producer map, so there is no "two-step"
 * release and no interleaving in which a late step hits a reused slot.
 *
 * Wake-ups (both kinds): the waiter stores an odd epoch in a word only it
 * writes, then re-checks for a free slot, then sleeps; a releaser records
 * its release, then reads the epoch and, if odd and not yet signalled by it,
 * wakes the waiter. Both sides use seq_cst, so either the waiter sees the
 * release or the releaser sees the waiter.
 */
#ifndef SV2SHM_SLOTS_H
#define SV2SHM_SLOTS_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "stamps.h"
#include "wire.h"

/* In-process: release holder bit `holder` of `slot` at `gen`. Returns 1 when
 * that was the last holder (the slot is free), 0 when others still hold it,
 * or -EINVAL / -ESTALE (other generation) / -EALREADY (bit not set). */
int slot_release_bit(struct sv2shm_ctl *ctl, unsigned nslots, unsigned slot, uint32_t gen, unsigned holder);

/* In-process: is slot s, claimed at generation gen, free? */
bool slot_free_inproc(const struct sv2shm_ctl *ctl, unsigned s, uint32_t gen);

/* Shared: the producer's private record of who may hold what. */
struct slot_peers {
	uint32_t pub[64]; /* per slot: consumer bits the current generation went to */
	/* per consumer bit: its ring's release records (NULL: no consumer) */
	_Atomic uint32_t *released[SV2SHM_MAX_HOLDERS];
	/* per consumer bit: slots published to it whose release the producer
	 * has not seen yet — an upper bound of what it holds, kept without
	 * reading its records (publish adds, a latched release subtracts); the
	 * exact count (slot_count_held) is taken only at the limit. */
	unsigned held_hint[SV2SHM_MAX_HOLDERS];
};

/* Shared: slots consumer `bit` holds among `slots` (a mask), given the
 * producer's generations (latching what it released, as above). */
unsigned slot_count_held(struct slot_peers *pe, unsigned bit, uint64_t slots, const uint32_t *gen);

/* Shared, consumer side: record that this consumer let go of (s, gen). */
static inline void slot_record_release(struct sv2shm_ring *ring, unsigned s, uint32_t gen)
{
	atomic_store_explicit(&ring->released[s & 63u], gen, memory_order_seq_cst);
}

/* After a release: must the waiter whose epoch word is `waiting` be woken?
 * True at most once per wait epoch per `signaled` (kept by the releaser). */
static inline bool slot_waiter_needs_wake(_Atomic uint32_t *waiting, _Atomic uint32_t *signaled)
{
	uint32_t epoch = atomic_load_explicit(waiting, memory_order_seq_cst);
	if (!(epoch & 1u))
		return false;
	return atomic_exchange_explicit(signaled, epoch, memory_order_relaxed) != epoch;
}

/* Shared: has consumer b released slot s at gen? Latch it if so. (Inline:
 * the allocator asks this for every slot it may reuse, on the path from a
 * release to the next slice.) */
static inline bool slot_latch(struct slot_peers *pe, unsigned b, unsigned s, uint32_t gen)
{
	_Atomic uint32_t *rel = pe->released[b];
	if (rel && atomic_load_explicit(&rel[s], memory_order_seq_cst) != gen)
		return false;
	STAMP(STAMP_P_SEES_RELEASE);
	pe->pub[s] &= ~(UINT32_C(1) << b);
	if (pe->held_hint[b])
		pe->held_hint[b]--;
	return true;
}

/* Shared: the consumer bits that still hold slot s at generation gen (bit 0:
 * the producer itself, from own_gen). 0 means free. A release seen here is
 * latched: the consumer leaves pub[s] for good, so writing its record back
 * later (an "un-release") cannot make it hold the slot again. Producer
 * thread only (it writes pub). */
static inline uint32_t slot_holders_shared(struct slot_peers *pe, _Atomic uint32_t *own_gen, unsigned s, uint32_t gen)
{
	uint32_t held = atomic_load_explicit(&own_gen[s], memory_order_seq_cst) ? 1u : 0u;
	uint32_t pub = pe->pub[s];
	while (pub) {
		unsigned b = (unsigned)__builtin_ctz(pub);
		pub &= pub - 1u;
		if (!slot_latch(pe, b, s, gen))
			held |= UINT32_C(1) << b;
	}
	return held;
}

#endif /* SV2SHM_SLOTS_H */
