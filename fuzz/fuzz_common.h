/*
 * Helpers shared by the fuzz targets: an input reader (a small
 * FuzzedDataProvider), the message byte pattern the targets write and check,
 * a monotonic clock, and FZ_CHECK, which reports a broken property and
 * aborts so that libFuzzer (or the regression test) sees a crash.
 *
 * Every target is a plain function `int sv2shm_fuzz_<name>(data, size)`
 * (targets.h); the libFuzzer entry points in fuzz_<name>.c and the cmocka
 * regression runner tests/test_fuzz_regress.c both call it.
 */
#ifndef SV2SHM_FUZZ_COMMON_H
#define SV2SHM_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- input reader --------------------------------------------------------- */

/* Reads bytes from the front; once the input is used up every read is 0. */
struct fz {
	const uint8_t *p;
	size_t n;
};

static inline void fz_init(struct fz *f, const uint8_t *data, size_t size)
{
	f->p = data;
	f->n = size;
}

static inline bool fz_empty(const struct fz *f)
{
	return f->n == 0;
}

static inline uint8_t fz_u8(struct fz *f)
{
	if (!f->n)
		return 0;
	f->n--;
	return *f->p++;
}

static inline uint16_t fz_u16(struct fz *f)
{
	uint16_t lo = fz_u8(f);
	return (uint16_t)(lo | (uint16_t)(fz_u8(f) << 8));
}

static inline uint32_t fz_u32(struct fz *f)
{
	uint32_t lo = fz_u16(f);
	return lo | ((uint32_t)fz_u16(f) << 16);
}

static inline uint64_t fz_u64(struct fz *f)
{
	uint64_t lo = fz_u32(f);
	return lo | ((uint64_t)fz_u32(f) << 32);
}

static inline bool fz_bool(struct fz *f)
{
	return fz_u8(f) & 1u;
}

/* A value in [lo, hi], reading only as many bytes as the span needs. */
uint64_t fz_range(struct fz *f, uint64_t lo, uint64_t hi);

/* Copy up to n bytes (zero-fill what the input lacks). */
void fz_bytes(struct fz *f, void *dst, size_t n);

/* --- message bytes -------------------------------------------------------- */

/* Byte i of message `seq` is pattern[(seq * stride + i) mod period]: a fixed
 * pseudo-random table, so filling and checking are memcpy/memcmp, and two
 * different messages disagree almost everywhere. */
void fz_pattern_fill(uint8_t *dst, uint64_t seq, uint64_t index, size_t n);
/* -1 when src holds bytes [index, index+n) of message seq, else the first
 * differing position (relative to src). */
long fz_pattern_check(const uint8_t *src, uint64_t seq, uint64_t index, size_t n);

/* --- misc ----------------------------------------------------------------- */

uint64_t fz_now_ns(void);
void fz_sleep_us(unsigned us);
uint64_t fz_hash(const uint8_t *data, size_t size);

/* Report a broken property and abort (every process: producer, worker,
 * consumer child). The message goes to stderr, and is also appended to the
 * file $SV2SHM_FUZZ_FAIL_LOG names, if any (run.sh sets it). */
_Noreturn void fz_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define FZ_CHECK(cond, ...)                                                                                        \
	do {                                                                                                       \
		if (!(cond))                                                                                       \
			fz_fail(__FILE__, __LINE__, "check failed: " #cond ": " __VA_ARGS__);                     \
	} while (0)

#endif /* SV2SHM_FUZZ_COMMON_H */
