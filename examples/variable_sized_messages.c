/*
 * variable_sized_messages — the seed's variable_sized_messages.rs in C.
 *
 * Messages of different sizes go through one pool. Each line says where the
 * message landed — a pool slot (with its byte range) or system memory — and
 * shows the slot map.
 *
 * Part 1 is the seed's example: a 32-byte pool; "Hello" and "Rust
 * programming" fit, a 63-byte message does not (system memory, ALLOC MODE);
 * once everything is released, "Hi" is back in the pool (BACK MODE).
 * Part 2 streams a dozen sizes through a 128-byte pool, keeping the last
 * three messages alive, like a decoder with a few frames in flight.
 *
 * Every placement is checked; the program exits 1 on any mismatch.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sv2shm/sv2shm.h"

static int failures;

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                                      \
		}                                                                        \
	} while (0)

/* Where a message is expected to land. */
struct place {
	int slot;     /* -1: system memory */
	uint64_t off; /* offset in the pool when slot >= 0 */
	int mode;     /* pool mode after the message was taken */
	const char *map; /* slot map after the message was taken */
};

static struct sv2shm_pool *new_pool(uint64_t capacity)
{
	struct sv2shm_pool_options o;
	memset(&o, 0, sizeof(o));
	o.capacity = capacity;
	o.slots = 8;
	struct sv2shm_pool *p = NULL;
	int r = sv2shm_pool_new(&o, &p);
	if (r < 0) {
		fprintf(stderr, "sv2shm_pool_new: %s\n", sv2shm_strerror(r));
		return NULL;
	}
	return p;
}

/*
 * Write msg (len bytes) to the pool, take it into *out, print where it went
 * and check that against `want`. The slot is found by comparing the slot map
 * before and after the take.
 */
static void write_message(struct sv2shm_pool *p, const uint8_t *msg, size_t len, const char *label,
			  struct sv2shm_slice *out, struct place want)
{
	struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
	char before[SV2SHM_MAX_SLOTS + 1], after[SV2SHM_MAX_SLOTS + 1];
	CHECK(sv2shm_pool_slot_map(p, before, sizeof(before)) == 8);

	uint8_t *w = sv2shm_buffer_get_writable(b, len);
	CHECK(w != NULL);
	if (!w)
		return;
	memcpy(w, msg, len);
	CHECK(sv2shm_buffer_get_data_owned(b, out) == 0);
	CHECK(out->len == len && memcmp(out->data, msg, len) == 0);

	CHECK(sv2shm_pool_slot_map(p, after, sizeof(after)) == 8);
	int slot = -1;
	for (int i = 0; i < 8; i++)
		if (after[i] != before[i] && after[i] != '-')
			slot = i;
	int mode = sv2shm_pool_mode(p);

	char where[96];
	if (sv2shm_slice_kind(out) == SV2SHM_SLICE_POOL) {
		uint64_t off = 0, slen = 0;
		CHECK(slot >= 0 && sv2shm_pool_slot_range(p, (unsigned)slot, &off, &slen) == 1);
		CHECK(slen == len);
		snprintf(where, sizeof(where), "pool slot %d, bytes %" PRIu64 "..%" PRIu64, slot, off, off + slen - 1);
		if (want.slot != slot || want.off != off) {
			fprintf(stderr, "    expected %s%d at offset %" PRIu64 "\n", want.slot < 0 ? "system memory " : "slot ",
				want.slot, want.off);
			failures++;
		}
	} else {
		CHECK(sv2shm_slice_kind(out) == SV2SHM_SLICE_SYSTEM);
		CHECK(slot == -1); /* the slot map did not change */
		snprintf(where, sizeof(where), "system memory");
		if (want.slot != -1) {
			fprintf(stderr, "    expected slot %d, got system memory\n", want.slot);
			failures++;
		}
	}
	if (strcmp(after, want.map) != 0) {
		fprintf(stderr, "    expected map %s\n", want.map);
		failures++;
	}
	if (mode != want.mode) {
		fprintf(stderr, "    expected %s\n", sv2shm_pool_mode_name(want.mode));
		failures++;
	}
	printf("  %-22s %3zu bytes -> %-28s  %s  %s\n", label, len, where, after, sv2shm_pool_mode_name(mode));
}

static void release(struct sv2shm_slice *s, const uint8_t *msg)
{
	CHECK(s->len == 0 || memcmp(s->data, msg, s->len) == 0); /* unchanged while live */
	CHECK(sv2shm_slice_release(s) == 0);
}

static void part1(void)
{
	printf("Part 1 (the seed's example): a 32-byte pool\n");
	struct sv2shm_pool *p = new_pool(32);
	if (!p) {
		failures++;
		return;
	}
	static const char small[] = "Hello";
	static const char medium[] = "Rust programming";
	static const char large[] = "This message is larger than the remaining buffer pool capacity.";
	static const char hi[] = "Hi";
	struct sv2shm_slice s[4];

	write_message(p, (const uint8_t *)small, strlen(small), "\"Hello\"", &s[0],
		      (struct place){0, 0, SV2SHM_MODE_BACK, "1-------"});
	write_message(p, (const uint8_t *)medium, strlen(medium), "\"Rust programming\"", &s[1],
		      (struct place){1, 5, SV2SHM_MODE_BACK, "12------"});
	write_message(p, (const uint8_t *)large, strlen(large), "the large message", &s[2],
		      (struct place){-1, 0, SV2SHM_MODE_ALLOC, "12------"});
	CHECK(strlen(large) == 63);

	release(&s[0], (const uint8_t *)small);
	release(&s[1], (const uint8_t *)medium);
	release(&s[2], (const uint8_t *)large);
	printf("  (all three released)\n");

	write_message(p, (const uint8_t *)hi, strlen(hi), "\"Hi\"", &s[3],
		      (struct place){0, 0, SV2SHM_MODE_BACK, "3-------"});
	release(&s[3], (const uint8_t *)hi);

	struct sv2shm_pool_stats st;
	CHECK(sv2shm_pool_stats(p, &st) == 0);
	printf("  stats: %" PRIu64 " from the pool, %" PRIu64 " from system memory, %" PRIu64 " resets\n",
	       st.from_pool, st.from_system, st.resets);
	CHECK(st.from_pool == 3 && st.from_system == 1 && st.live == 0);
	CHECK(sv2shm_pool_destroy(p) == 0);
}

static void part2(void)
{
	printf("\nPart 2: a 128-byte pool, the last 3 messages kept alive\n");
	struct sv2shm_pool *p = new_pool(128);
	if (!p) {
		failures++;
		return;
	}
	/* Sizes and where each must land, given the 3 kept before it. */
	static const struct {
		size_t len;
		struct place want;
	} steps[] = {
		{10, {0, 0, SV2SHM_MODE_BACK, "1-------"}},     /* back run: bytes 0..9 */
		{40, {1, 10, SV2SHM_MODE_BACK, "12------"}},    /* 10..49 */
		{70, {2, 50, SV2SHM_MODE_BACK, "123-----"}},    /* 50..119; 8 bytes left at the back */
		{5, {0, 120, SV2SHM_MODE_BACK, "423-----"}},    /* 120..124; slot 0 was freed: the lowest free slot */
		{9, {1, 0, SV2SHM_MODE_FRONT, "453-----"}},     /* 3 bytes left at the back: front, below 50..119 */
		{30, {2, 9, SV2SHM_MODE_FRONT, "456-----"}},    /* front 9..38, below the 5-byte slice at 120 */
		{100, {-1, 0, SV2SHM_MODE_ALLOC, "-56-----"}},  /* back run gone, the front run (0..38) becomes it:
						       39..127 is too small -> system memory */
		{12, {0, 39, SV2SHM_MODE_BACK, "7-6-----"}},    /* back again, after the newest slice: 39..50 */
		{128, {-1, 0, SV2SHM_MODE_ALLOC, "7-------"}},  /* the whole pool is never free here */
		{1, {1, 51, SV2SHM_MODE_BACK, "78------"}},     /* 51 */
		{64, {0, 52, SV2SHM_MODE_BACK, "98------"}},    /* 52..115 */
		{0, {-1, 0, SV2SHM_MODE_BACK, ""}},     /* nothing written: an EMPTY slice */
	};
	enum { NSTEPS = sizeof(steps) / sizeof(steps[0]), KEEP = 3 };
	static uint8_t msgs[NSTEPS][128];
	struct sv2shm_slice s[NSTEPS];
	for (size_t i = 0; i < NSTEPS; i++) {
		memset(msgs[i], (int)('a' + i), sizeof(msgs[i]));
		if (i >= KEEP)
			release(&s[i - KEEP], msgs[i - KEEP]);
		char label[32];
		snprintf(label, sizeof(label), "message %zu ('%c' x %zu)", i + 1, (char)('a' + i), steps[i].len);
		if (steps[i].len == 0) {
			struct sv2shm_buffer *b = sv2shm_pool_buffer(p);
			CHECK(sv2shm_buffer_get_data_owned(b, &s[i]) == 0);
			CHECK(sv2shm_slice_kind(&s[i]) == SV2SHM_SLICE_EMPTY && s[i].len == 0);
			printf("  %-22s %3d bytes -> nothing (an EMPTY slice)\n", label, 0);
			continue;
		}
		write_message(p, msgs[i], steps[i].len, label, &s[i], steps[i].want);
	}
	for (size_t i = NSTEPS - KEEP; i < NSTEPS; i++)
		release(&s[i], msgs[i]);
	CHECK(sv2shm_buffer_is_droppable(sv2shm_pool_buffer(p)));
	struct sv2shm_pool_stats st;
	CHECK(sv2shm_pool_stats(p, &st) == 0);
	printf("  stats: %" PRIu64 " from the pool, %" PRIu64 " from system memory, %" PRIu64 " mode switches\n",
	       st.from_pool, st.from_system, st.mode_switches);
	CHECK(st.from_pool == 9 && st.from_system == 2 && st.live == 0);
	CHECK(sv2shm_pool_destroy(p) == 0);
}

int main(void)
{
	printf("variable_sized_messages: where messages of different sizes land\n\n");
	part1();
	part2();
	if (failures) {
		fprintf(stderr, "variable_sized_messages: %d check(s) failed\n", failures);
		return 1;
	}
	printf("\nvariable_sized_messages: all checks passed\n");
	return 0;
}
