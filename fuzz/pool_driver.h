/*
 * The in-process pool property (the seed crate's `faster` and `slower`
 * targets): one producer thread writes messages chosen by the input into a
 * pool, hands the slices to worker threads pinned to different cores that
 * hold them for a chosen time and check their bytes, or keeps some itself and
 * releases them in the order the input says; the pool's invariants are
 * checked after every step. See pool_driver.c.
 */
#ifndef SV2SHM_FUZZ_POOL_DRIVER_H
#define SV2SHM_FUZZ_POOL_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "fuzz_common.h"

struct pool_fuzz_params {
	uint64_t capacity;   /* 0 .. 2^32 */
	unsigned slots;      /* 1 .. 64 */
	int policy;          /* enum sv2shm_pool_policy */
	int wait_timeout_ms; /* SV2SHM_POOL_WAIT */
	bool faster;         /* map lengths and hold times to the likely values */
};

/* Run the rest of the input as a sequence of operations on a fresh pool.
 * Aborts on a broken property. */
void pool_fuzz_run(const struct pool_fuzz_params *pp, struct fz *in);

#endif /* SV2SHM_FUZZ_POOL_DRIVER_H */
