/*
 * `faster`: the seed crate's faster target. The input picks the pool's
 * capacity, slot count and policy from small tables of likely values (around
 * the seed's 8 slots, powers of two, the 2^32 limit), then a sequence of
 * messages, hold times and releases (pool_driver.c).
 *
 * Input: [capacity index] [slots index] [policy] [wait ms] operations...
 */
#include <sv2shm/sv2shm.h>

#include "pool_driver.h"
#include "targets.h"

static const uint64_t caps[] = {
	0,     1,     2,     6,     7,     8,      15,     16,      31,      32,      63,
	64,    65,    100,   127,   128,   255,    256,    257,     512,     1000,    1024,
	2048,  4095,  4096,  4097,  8192,  16384,  65535,  65536,   65537,   1u << 20,
	UINT64_C(0xffffffff), UINT64_C(1) << 32,
};
static const unsigned slot_counts[] = {1, 2, 3, 4, 7, 8, 8, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64};

int sv2shm_fuzz_faster(const uint8_t *data, size_t size)
{
	struct fz in;
	fz_init(&in, data, size);
	struct pool_fuzz_params pp;
	pp.capacity = caps[fz_u8(&in) % (sizeof(caps) / sizeof(caps[0]))];
	pp.slots = slot_counts[fz_u8(&in) % (sizeof(slot_counts) / sizeof(slot_counts[0]))];
	uint8_t pol = fz_u8(&in) % 8u;
	pp.policy = pol < 6 ? SV2SHM_POOL_FALLBACK : pol == 6 ? SV2SHM_POOL_FAIL : SV2SHM_POOL_WAIT;
	pp.wait_timeout_ms = fz_u8(&in) % 3u;
	pp.faster = true;
	pool_fuzz_run(&pp, &in);
	return 0;
}
