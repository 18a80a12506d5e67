/* The protocol on slot state: see slots.h. */
#include <errno.h>
#include <stdatomic.h>

#include "slots.h"

int slot_release_bit(struct sv2shm_ctl *ctl, unsigned nslots, unsigned slot, uint32_t gen, unsigned holder)
{
	if (slot >= nslots || holder >= SV2SHM_MAX_HOLDERS)
		return -EINVAL;
	_Atomic uint64_t *w = &ctl->slots[slot].state;
	uint32_t hbit = UINT32_C(1) << holder;
	uint64_t st = atomic_load_explicit(w, memory_order_acquire);
	uint64_t next;
	do {
		if (SV2SHM_STATE_GEN(st) != gen)
			return -ESTALE;
		if (!(SV2SHM_STATE_HOLDERS(st) & hbit))
			return -EALREADY;
		next = st & ~(uint64_t)hbit;
	} while (!atomic_compare_exchange_weak_explicit(w, &st, next, memory_order_seq_cst, memory_order_acquire));
	return SV2SHM_STATE_HOLDERS(next) ? 0 : 1;
}

bool slot_free_inproc(const struct sv2shm_ctl *ctl, unsigned s, uint32_t gen)
{
	uint64_t st = atomic_load_explicit(&((struct sv2shm_ctl *)ctl)->slots[s].state, memory_order_seq_cst);
	(void)gen; /* the allocator's private generation; only holder bits move here */
	return SV2SHM_STATE_HOLDERS(st) == 0;
}

unsigned slot_count_held(struct slot_peers *pe, unsigned bit, uint64_t slots, const uint32_t *gen)
{
	unsigned n = 0;
	if (!pe->released[bit])
		return 0;
	while (slots) {
		unsigned s = (unsigned)__builtin_ctzll(slots);
		slots &= slots - 1u;
		if ((pe->pub[s] & (UINT32_C(1) << bit)) && !slot_latch(pe, bit, s, gen[s]))
			n++;
	}
	return n;
}
