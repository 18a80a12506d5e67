/*
 * `slower`: the seed crate's slower target. The input covers the whole
 * space: any capacity 0 .. 2^32, any slot count 1 .. 64, any policy, message
 * lengths up to 1 MiB in up to 8 chunks, hold times up to 1 ms on workers
 * pinned to different cores (pool_driver.c).
 *
 * Input: [capacity class] [capacity bytes...] [slots] [policy] [wait ms]
 * operations...
 */
#include <sv2shm/sv2shm.h>

#include "pool_driver.h"
#include "targets.h"

int sv2shm_fuzz_slower(const uint8_t *data, size_t size)
{
	struct fz in;
	fz_init(&in, data, size);
	struct pool_fuzz_params pp;
	switch (fz_u8(&in) % 5u) {
	case 0:
		pp.capacity = fz_u8(&in);
		break;
	case 1:
		pp.capacity = fz_u16(&in);
		break;
	case 2:
		pp.capacity = fz_u32(&in); /* 0 .. 2^32-1 */
		break;
	case 3: /* just below, at and (refused) above the limit */
		pp.capacity = (UINT64_C(1) << 32) - fz_u8(&in);
		break;
	default: /* 2^32, the largest accepted */
		pp.capacity = UINT64_C(1) << 32;
		break;
	}
	pp.slots = 1u + fz_u8(&in) % 64u;
	pp.policy = fz_u8(&in) % 3u;
	pp.wait_timeout_ms = fz_u8(&in) % 4u;
	pp.faster = false;
	pool_fuzz_run(&pp, &in);
	return 0;
}
