/* sv2shm-bench: the seed's workload and the library's contenders. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "workload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *g_data;

const uint8_t *seed_data(void)
{
	if (g_data)
		return g_data;
	uint8_t *d = malloc(SEED_DATA_LEN);
	if (!d) {
		fprintf(stderr, "sv2shm-bench: out of memory for the %zu-byte input\n", SEED_DATA_LEN);
		exit(1);
	}
	uint64_t s = UINT64_C(0x5eed5eed5eed5eed);
	for (size_t i = 0; i < SEED_DATA_LEN; i += 8) {
		uint64_t v = seed_rng(&s);
		memcpy(d + i, &v, 8); /* SEED_DATA_LEN is a multiple of 8 */
	}
	g_data = d;
	return d;
}

int sv2_buf_new(struct sv2_buf *sb, int kind, unsigned slots, uint64_t capacity, char *err, size_t errlen)
{
	memset(sb, 0, sizeof(*sb));
	sb->kind = kind;
	int r;
	switch (kind) {
	case SV2_POOL: {
		struct sv2shm_pool_options o;
		memset(&o, 0, sizeof(o));
		o.capacity = capacity;
		o.slots = slots;
		o.policy = SV2SHM_POOL_FALLBACK;
		r = sv2shm_pool_new(&o, &sb->pool);
		if (r < 0) {
			snprintf(err, errlen, "sv2shm_pool_new(capacity %llu, slots %u) returned %d (%s)",
				 (unsigned long long)capacity, slots, r, sv2shm_strerror(r));
			return r;
		}
		sb->b = sv2shm_pool_buffer(sb->pool);
		return 0;
	}
	case SV2_SYSMEM:
		r = sv2shm_sysbuf_new(0, &sb->sys);
		if (r < 0) {
			snprintf(err, errlen, "sv2shm_sysbuf_new() returned %d (%s)", r, sv2shm_strerror(r));
			return r;
		}
		sb->b = sv2shm_sysbuf_buffer(sb->sys);
		return 0;
	case SV2_SHARED: {
		struct sv2shm_producer_options o;
		memset(&o, 0, sizeof(o));
		o.pool.capacity = capacity;
		o.pool.slots = slots;
		o.pool.policy = SV2SHM_POOL_FALLBACK;
		r = sv2shm_producer_new(&o, &sb->prod);
		if (r < 0) {
			snprintf(err, errlen, "sv2shm_producer_new(capacity %llu, slots %u) returned %d (%s)",
				 (unsigned long long)capacity, slots, r, sv2shm_strerror(r));
			return r;
		}
		sb->pool = sv2shm_producer_pool(sb->prod);
		sb->b = sv2shm_producer_buffer(sb->prod);
		return 0;
	}
	}
	snprintf(err, errlen, "unknown contender kind %d", kind);
	return -EINVAL;
}

void sv2_buf_counts(const struct sv2_buf *sb, uint64_t taken, uint64_t *from_pool, uint64_t *from_system)
{
	*from_pool = 0;
	*from_system = 0;
	if (sb->kind == SV2_SYSMEM) {
		*from_system = taken;
		return;
	}
	struct sv2shm_pool_stats st;
	if (sb->pool && sv2shm_pool_stats(sb->pool, &st) == 0) {
		*from_pool = st.from_pool;
		*from_system = st.from_system;
	}
}

int sv2_buf_free(struct sv2_buf *sb, char *err, size_t errlen)
{
	int r = 0;
	switch (sb->kind) {
	case SV2_POOL:
		r = sv2shm_pool_destroy(sb->pool);
		if (r < 0)
			snprintf(err, errlen, "sv2shm_pool_destroy() returned %d (%s)", r, sv2shm_strerror(r));
		break;
	case SV2_SYSMEM:
		sv2shm_sysbuf_free(sb->sys);
		break;
	case SV2_SHARED:
		r = sv2shm_producer_destroy(sb->prod);
		if (r < 0)
			snprintf(err, errlen, "sv2shm_producer_destroy() returned %d (%s)", r, sv2shm_strerror(r));
		break;
	default:
		break;
	}
	if (r == 0)
		memset(sb, 0, sizeof(*sb));
	return r;
}
