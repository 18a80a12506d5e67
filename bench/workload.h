/*
 * sv2shm-bench: the seed crate's workload, shared by the `seed` and `lag`
 * modes, and the contenders built on the library's buffer interface.
 *
 * The seed (buffer_sv2, utils/buffer/benches/control_struct.rs and
 * pool_benchmark.rs) writes messages of 2^14 - rand(0..12000) bytes
 * (4385..16384) in get_writable(10) calls, each copying 10 bytes of a 5 MiB
 * random file, into buffers of capacity 2^16 * 5 = 327,680 bytes.
 */
#ifndef SV2SHM_BENCH_WORKLOAD_H
#define SV2SHM_BENCH_WORKLOAD_H

#include <sv2shm/ipc.h>
#include <sv2shm/sv2shm.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The seed's pool capacity: 2^16 * 5 bytes. */
#define SEED_CAPACITY (UINT64_C(5) << 16)
/** The seed's random input file (fuzz/random): 5 MiB. */
#define SEED_DATA_LEN ((size_t)5242880)
/** Message lengths: 2^14 - rand(0..12000). */
#define SEED_MAX_LEN ((size_t)16384)
#define SEED_LEN_SPREAD 12000u
/** Bytes per get_writable() call. */
#define SEED_CHUNK ((size_t)10)

#if defined(__GNUC__)
#define BENCH_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define BENCH_NOINLINE __attribute__((noinline))
#else
#define BENCH_UNLIKELY(x) (x)
#define BENCH_NOINLINE
#endif

/** The 5 MiB of random input (generated once, deterministic). */
const uint8_t *seed_data(void);

/** xorshift64*: the lengths' random numbers (seeded per sample, so every
 * contender of a sample writes the same lengths). */
static inline uint64_t seed_rng(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(0x2545F4914F6CDD1D);
}

/** A seed message length: 2^14 - rand(0..12000). */
static inline size_t seed_msg_len(uint64_t *s)
{
	return SEED_MAX_LEN - (size_t)(seed_rng(s) % SEED_LEN_SPREAD);
}

/** A non-zero rng state for sample `k` of a run. */
static inline uint64_t seed_rng_init(uint64_t k)
{
	uint64_t s = (k + 1) * UINT64_C(0x9E3779B97F4A7C15);
	return s ? s : 1;
}

/*
 * Write one message of `len` bytes the seed's way: len / 10 calls of
 * get_writable(10), each copying 10 bytes of `src` at the call's index
 * (input[i..i + 10], as add_random_bytes does). GETW(b, n) is the
 * contender's get_writable; on NULL, `on_fail` runs.
 */
#define SEED_WRITE_MSG(GETW, b, len, src, on_fail)                                                                 \
	do {                                                                                                       \
		const size_t rounds_ = (len) / SEED_CHUNK;                                                         \
		const uint8_t *src_ = (src);                                                                       \
		for (size_t r_ = 0; r_ < rounds_; r_++) {                                                          \
			uint8_t *w_ = (uint8_t *)GETW((b), SEED_CHUNK);                                            \
			if (BENCH_UNLIKELY(!w_)) {                                                                 \
				on_fail;                                                                           \
			}                                                                                          \
			memcpy(w_, src_ + r_, SEED_CHUNK);                                                         \
		}                                                                                                  \
	} while (0)

/* ------------------------------------------------------------------------- */
/* Contenders on the library's buffer interface                               */
/* ------------------------------------------------------------------------- */

enum sv2_kind {
	SV2_POOL,   /* sv2shm_pool_new(), policy FALLBACK */
	SV2_SYSMEM, /* sv2shm_sysbuf_new(0) */
	SV2_SHARED, /* sv2shm_producer_new(): the producer's pool, policy FALLBACK */
};

struct sv2_buf {
	int kind;
	struct sv2shm_pool *pool;
	struct sv2shm_sysbuf *sys;
	struct sv2shm_producer *prod;
	struct sv2shm_buffer *b;
};

/** Create a contender. Returns 0, or a negative errno with err set. */
int sv2_buf_new(struct sv2_buf *sb, int kind, unsigned slots, uint64_t capacity, char *err, size_t errlen);

/** Counters: slices from the pool and from system memory (a system-memory
 * buffer counts every slice as from system memory: pass `taken`). */
void sv2_buf_counts(const struct sv2_buf *sb, uint64_t taken, uint64_t *from_pool, uint64_t *from_system);

/** Destroy. Returns 0, or a negative errno with err set (-EBUSY: live slices). */
int sv2_buf_free(struct sv2_buf *sb, char *err, size_t errlen);

#endif /* SV2SHM_BENCH_WORKLOAD_H */
