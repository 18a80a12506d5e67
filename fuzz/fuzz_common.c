/* Helpers shared by the fuzz targets (see fuzz_common.h). */
#include "fuzz_common.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t fz_range(struct fz *f, uint64_t lo, uint64_t hi)
{
	if (hi <= lo)
		return lo;
	uint64_t span = hi - lo, v = 0;
	unsigned bits = 0;
	while (bits < 64 && (span >> bits) != 0) {
		v = (v << 8) | fz_u8(f);
		bits += 8;
	}
	if (span == UINT64_MAX)
		return lo + v;
	return lo + v % (span + 1u);
}

void fz_bytes(struct fz *f, void *dst, size_t n)
{
	size_t k = n < f->n ? n : f->n;
	memcpy(dst, f->p, k);
	memset((uint8_t *)dst + k, 0, n - k);
	f->p += k;
	f->n -= k;
}

/* --- message bytes -------------------------------------------------------- */

#define PAT_PERIOD 65521u /* prime */
#define PAT_STRIDE 7919u

static uint8_t pattern[PAT_PERIOD];
static pthread_once_t pattern_once = PTHREAD_ONCE_INIT;

static void pattern_init(void)
{
	uint64_t s = UINT64_C(0x5eed5eed2024);
	for (unsigned i = 0; i < PAT_PERIOD; i++) {
		s = s * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
		pattern[i] = (uint8_t)(s >> 56);
	}
}

static size_t pattern_pos(uint64_t seq, uint64_t index)
{
	return (size_t)(((seq % PAT_PERIOD) * PAT_STRIDE + index % PAT_PERIOD) % PAT_PERIOD);
}

void fz_pattern_fill(uint8_t *dst, uint64_t seq, uint64_t index, size_t n)
{
	pthread_once(&pattern_once, pattern_init);
	size_t pos = pattern_pos(seq, index);
	while (n) {
		size_t k = PAT_PERIOD - pos;
		if (k > n)
			k = n;
		memcpy(dst, pattern + pos, k);
		dst += k;
		n -= k;
		pos = 0;
	}
}

long fz_pattern_check(const uint8_t *src, uint64_t seq, uint64_t index, size_t n)
{
	pthread_once(&pattern_once, pattern_init);
	size_t pos = pattern_pos(seq, index), done = 0;
	while (done < n) {
		size_t k = PAT_PERIOD - pos;
		if (k > n - done)
			k = n - done;
		if (memcmp(src + done, pattern + pos, k) != 0) {
			for (size_t i = 0; i < k; i++)
				if (src[done + i] != pattern[pos + i])
					return (long)(done + i);
		}
		done += k;
		pos = 0;
	}
	return -1;
}

/* --- misc ----------------------------------------------------------------- */

uint64_t fz_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void fz_sleep_us(unsigned us)
{
	struct timespec ts = {.tv_sec = us / 1000000u, .tv_nsec = (long)(us % 1000000u) * 1000L};
	while (nanosleep(&ts, &ts) != 0) {
	}
}

uint64_t fz_hash(const uint8_t *data, size_t size)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);
	for (size_t i = 0; i < size; i++) {
		h ^= data[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

void fz_fail(const char *file, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n==%d== sv2shm fuzz: %s:%d: %s\n", (int)getpid(), file, line, msg);
	fflush(stderr);
	/* libFuzzer's -fork mode keeps only the last lines of a job's output:
	 * run.sh asks for the message in a file too. */
	const char *log = getenv("SV2SHM_FUZZ_FAIL_LOG");
	FILE *f = log && *log ? fopen(log, "a") : NULL;
	if (f) {
		fprintf(f, "%d %s:%d: %s\n", (int)getpid(), file, line, msg);
		fclose(f);
	}
	abort();
}
